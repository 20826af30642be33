{% snapshot snp_loyalty__transacoes %}

select * from {{ ref('bronze_loyalty__transacoes') }}

{% endsnapshot %}
