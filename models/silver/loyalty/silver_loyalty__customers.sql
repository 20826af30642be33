{{ config(unique_key='customer_id') }}

with

source as (
    -- every Bronze row on a first build; then the rows Bronze changed since the last build, deletes as 'D'
    select * from {{ lago_cdc.latest_changes(ref('bronze_loyalty__clientes')) }}
),

renamed as (
    select
        -- ids
        {{ lago_mago.clean_text('idCliente') }} as customer_id,

        -- numerics, in their declared types (Bronze casts every column to its declaration)
        qtdePontos as points_balance,

        -- booleans
        {{ lago_mago.flag_to_boolean('flEmail') }} as has_email,
        {{ lago_mago.flag_to_boolean('flTwitch') }} as has_twitch,
        {{ lago_mago.flag_to_boolean('flYouTube') }} as has_youtube,
        {{ lago_mago.flag_to_boolean('flBlueSky') }} as has_bluesky,
        {{ lago_mago.flag_to_boolean('flInstagram') }} as has_instagram,

        -- timestamps
        {{ lago_mago.parse_source_timestamp('DtCriacao') }} as created_at,
        {{ lago_mago.parse_source_timestamp('DtAtualizacao') }} as updated_at,

        -- lineage
        _cdc_operation,
        _cdc_timestamp
    from source
),

final as (
    select
        customer_id,
        points_balance,
        has_email,
        has_twitch,
        has_youtube,
        has_bluesky,
        has_instagram,
        created_at,
        updated_at,
        _cdc_operation,
        _cdc_timestamp,
        {{ dbt.current_timestamp() }} as _loaded_at
    from renamed
)

select * from final
