{{
    config(
        unique_key='transaction_id',
        post_hook=(
            "{{ lago_mago.delete_rows_missing_upstream("
            ~ "ref('bronze_loyalty__transacoes'), 'transaction_id', 'trim(upstream.IdTransacao)') }}"
        ),
    )
}}

with

source as (
    select * from {{ ref('bronze_loyalty__transacoes') }}
    {%- if is_incremental() %}
    where {{ lago_mago.loaded_since_last_run() }}
    {%- endif %}
),

renamed as (
    select
        -- ids
        {{ lago_mago.clean_text('IdTransacao') }} as transaction_id,
        {{ lago_mago.clean_text('IdCliente') }} as customer_id,

        -- strings
        lower({{ lago_mago.clean_text('DescSistemaOrigem') }}) as source_system,

        -- numerics
        cast(QtdePontos as {{ dbt.type_bigint() }}) as points,

        -- timestamps
        {{ lago_mago.parse_source_timestamp('DtCriacao') }} as transaction_at,

        -- lineage
        _cdc_timestamp,
        _loaded_at
    from source
),

final as (
    select
        transaction_id,
        customer_id,
        source_system,
        points,
        transaction_at,
        cast(transaction_at as date) as transaction_date,
        _cdc_timestamp,
        _loaded_at
    from renamed
)

select * from final
