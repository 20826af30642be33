{{ config(unique_key='transaction_product_id') }}

with

source as (
    -- every Bronze row on a first build; then the rows Bronze changed since the last build, deletes as 'D'
    select * from {{ lago_cdc.latest_changes(ref('bronze_loyalty__transacao_produto')) }}
),

renamed as (
    select
        -- ids
        {{ lago_mago.clean_text('idTransacaoProduto') }} as transaction_product_id,
        {{ lago_mago.clean_text('IdTransacao') }} as transaction_id,
        {{ lago_mago.clean_text('IdProduto') }} as product_id,

        -- numerics, in their declared types (Bronze casts every column to its declaration)
        QtdeProduto as quantity,
        vlProduto as points,

        -- lineage
        _cdc_operation,
        _cdc_timestamp
    from source
),

final as (
    select
        transaction_product_id,
        transaction_id,
        product_id,
        quantity,
        points,
        {{ lago_mago.points_earned('points') }} as points_earned,
        {{ lago_mago.points_spent('points') }} as points_spent,
        _cdc_operation,
        _cdc_timestamp,
        {{ dbt.current_timestamp() }} as _loaded_at
    from renamed
)

select * from final
