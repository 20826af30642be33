{{
    config(
        unique_key='product_id',
        post_hook=(
            "{{ lago_mago.delete_rows_missing_upstream("
            ~ "ref('bronze_loyalty__produtos'), 'product_id', 'upstream.IdProduto') }}"
        ),
    )
}}

with

source as (
    select * from {{ ref('bronze_loyalty__produtos') }}
    {%- if is_incremental() %}
    where {{ lago_mago.loaded_since_last_run() }}
    {%- endif %}
),

renamed as (
    select
        -- ids
        cast(IdProduto as {{ dbt.type_int() }}) as product_id,

        -- strings
        {{ lago_mago.clean_text('DescNomeProduto') }} as product_name,
        {{ lago_mago.clean_text('DescDescricaoProduto') }} as product_description,
        lower({{ lago_mago.clean_text('DescCategoriaProduto') }}) as product_category,

        -- lineage
        _cdc_timestamp,
        _loaded_at
    from source
),

final as (
    select
        product_id,
        product_name,
        product_description,
        product_category,
        _cdc_timestamp,
        _loaded_at
    from renamed
)

select * from final
