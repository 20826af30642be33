{{ config(unique_key='transaction_id') }}

with

source as (
    -- every Bronze row on a first build; then the rows Bronze changed since the last build, deletes as 'D'
    select * from {{ lago_cdc.latest_changes(ref('bronze_loyalty__transacoes')) }}
),

renamed as (
    select
        -- ids
        {{ lago_mago.clean_text('IdTransacao') }} as transaction_id,
        {{ lago_mago.clean_text('IdCliente') }} as customer_id,

        -- strings
        lower({{ lago_mago.clean_text('DescSistemaOrigem') }}) as source_system,

        -- numerics, in their declared types (Bronze casts every column to its declaration)
        QtdePontos as points,

        -- timestamps
        {{ lago_mago.parse_source_timestamp('DtCriacao') }} as transaction_at,

        -- lineage
        _cdc_operation,
        _cdc_timestamp
    from source
),

final as (
    select
        transaction_id,
        customer_id,
        source_system,
        points,
        {{ lago_mago.points_earned('points') }} as points_earned,
        {{ lago_mago.points_spent('points') }} as points_spent,
        transaction_at,
        cast(transaction_at as date) as transaction_date,
        _cdc_operation,
        _cdc_timestamp,
        {{ dbt.current_timestamp() }} as _loaded_at
    from renamed
)

select * from final
