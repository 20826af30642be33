{% snapshot snp_loyalty__clientes %}

select * from {{ ref('bronze_loyalty__clientes') }}

{% endsnapshot %}
