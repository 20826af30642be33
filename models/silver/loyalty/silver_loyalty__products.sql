{{ config(unique_key='product_id') }}

with

source as (
    -- every Bronze row on a first build; then the rows Bronze changed since the last build, deletes as 'D'
    select * from {{ lago_cdc.latest_changes(ref('bronze_loyalty__produtos')) }}
),

renamed as (
    select
        -- ids
        {{ lago_mago.clean_text('IdProduto') }} as product_id,

        -- strings
        {{ lago_mago.clean_text('DescNomeProduto') }} as product_name,
        {{ lago_mago.clean_text('DescDescricaoProduto') }} as product_description,
        lower({{ lago_mago.clean_text('DescCategoriaProduto') }}) as product_category,

        -- lineage
        _cdc_operation,
        _cdc_timestamp
    from source
),

final as (
    select
        product_id,
        product_name,
        product_description,
        product_category,
        _cdc_operation,
        _cdc_timestamp,
        {{ dbt.current_timestamp() }} as _loaded_at
    from renamed
)

select * from final
