{% snapshot snp_loyalty__transacao_produto %}

select * from {{ ref('bronze_loyalty__transacao_produto') }}

{% endsnapshot %}
