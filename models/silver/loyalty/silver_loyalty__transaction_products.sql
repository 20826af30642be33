{{
    config(
        unique_key='transaction_product_id',
        post_hook=(
            "{{ lago_mago.delete_rows_missing_upstream("
            ~ "ref('bronze_loyalty__transacao_produto'), 'transaction_product_id',"
            ~ " 'trim(upstream.idTransacaoProduto)') }}"
        ),
    )
}}

with

source as (
    select * from {{ ref('bronze_loyalty__transacao_produto') }}
    {%- if is_incremental() %}
    where {{ lago_mago.loaded_since_last_run() }}
    {%- endif %}
),

renamed as (
    select
        -- ids
        {{ lago_mago.clean_text('idTransacaoProduto') }} as transaction_product_id,
        {{ lago_mago.clean_text('IdTransacao') }} as transaction_id,
        cast(IdProduto as {{ dbt.type_int() }}) as product_id,

        -- numerics
        cast(QtdeProduto as {{ dbt.type_int() }}) as quantity,
        cast(vlProduto as {{ dbt.type_bigint() }}) as points,

        -- lineage
        _cdc_timestamp,
        _loaded_at
    from source
),

final as (
    select
        transaction_product_id,
        transaction_id,
        product_id,
        quantity,
        points,
        _cdc_timestamp,
        _loaded_at
    from renamed
)

select * from final
