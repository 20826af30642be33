{% snapshot snp_loyalty__produtos %}

select * from {{ ref('bronze_loyalty__produtos') }}

{% endsnapshot %}
