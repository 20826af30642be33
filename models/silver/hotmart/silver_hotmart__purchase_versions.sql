{#-
    The state of each purchase as of the end of each day on which one of its events arrived (SCD2 per
    purchase). A purchase's versions are a function of its own events only, so a build recomputes exactly the
    purchases that Bronze's change feeds show new events for (every purchase on a first build or
    --full-refresh), from all of their events, and applies the difference with `cdc_merge`: every recomputed
    version is upserted, a version the recomputation no longer has is deleted. Its own change feed tells Gold
    which order dates changed. Why this design: docs/hotmart.md.
-#}
{{
    config(
        materialized='incremental',
        incremental_strategy='cdc_merge',
        unique_key=['purchase_id', 'valid_from'],
        on_schema_change='append_new_columns',
        tblproperties={'delta.enableChangeDataFeed': 'true'},
        post_hook=[
            "{{ lago_cdc.record_feed_positions() }}",
            "{{ lago_cdc.record_feed_rebuild() }}",
        ],
    )
}}

{%- set version_columns = [
    'purchase_id', 'buyer_id', 'prod_item_id', 'producer_id', 'product_id',
    'purchase_event_id', 'product_item_event_id', 'extra_info_event_id',
    'subsidiary', 'item_quantity', 'purchase_value', 'gmv_value',
    'is_complete', 'is_in_gmv', 'is_current', 'order_date', 'release_date', 'valid_from', 'valid_to',
] %}

with

{% if is_incremental() -%}
touched_purchases as (
    -- the purchases with an event Bronze added or replaced since this model's last build
    {{ lago_mago.hotmart_changed_purchases([
        ref('bronze_hotmart__purchase'),
        ref('bronze_hotmart__product_item'),
        ref('bronze_hotmart__purchase_extra_info'),
    ]) }}
),

{% endif -%}
purchase_events as (
    select
        -- ids
        purchase_id,
        _event_id as event_id,
        buyer_id,
        prod_item_id,
        producer_id,
        -- dates
        order_date,
        release_date,
        -- timestamps
        transaction_datetime,
        _ingested_at as arrived_at,
        cast(_ingested_at as date) as arrival_date
    from {{ ref('bronze_hotmart__purchase') }}
    {%- if is_incremental() %}
    where purchase_id in (select touched_purchases.purchase_id from touched_purchases)
    {%- endif %}
),

product_item_events as (
    select
        -- ids
        purchase_id,
        _event_id as event_id,
        product_id,
        -- numerics
        item_quantity,
        purchase_value,
        -- timestamps
        transaction_datetime,
        _ingested_at as arrived_at,
        cast(_ingested_at as date) as arrival_date
    from {{ ref('bronze_hotmart__product_item') }}
    {%- if is_incremental() %}
    where purchase_id in (select touched_purchases.purchase_id from touched_purchases)
    {%- endif %}
),

extra_info_events as (
    select
        -- ids
        purchase_id,
        _event_id as event_id,
        -- strings
        subsidiary,
        -- timestamps
        transaction_datetime,
        _ingested_at as arrived_at,
        cast(_ingested_at as date) as arrival_date
    from {{ ref('bronze_hotmart__purchase_extra_info') }}
    {%- if is_incremental() %}
    where purchase_id in (select touched_purchases.purchase_id from touched_purchases)
    {%- endif %}
),

change_days as (
    select
        purchase_id,
        arrival_date as change_date
    from purchase_events
    union
    select
        purchase_id,
        arrival_date as change_date
    from product_item_events
    union
    select
        purchase_id,
        arrival_date as change_date
    from extra_info_events
),

purchase_as_of as (
    {{ lago_mago.latest_event_as_of(
        'purchase_events', 'change_days',
        ['buyer_id', 'prod_item_id', 'producer_id', 'order_date', 'release_date'],
    ) }}
),

product_item_as_of as (
    {{ lago_mago.latest_event_as_of(
        'product_item_events', 'change_days', ['product_id', 'item_quantity', 'purchase_value'],
    ) }}
),

extra_info_as_of as (
    {{ lago_mago.latest_event_as_of('extra_info_events', 'change_days', ['subsidiary']) }}
),

daily_states as (
    select
        change_days.purchase_id,
        change_days.change_date,
        purchase_as_of.event_id as purchase_event_id,
        product_item_as_of.event_id as product_item_event_id,
        extra_info_as_of.event_id as extra_info_event_id,
        purchase_as_of.buyer_id,
        purchase_as_of.prod_item_id,
        purchase_as_of.producer_id,
        product_item_as_of.product_id,
        product_item_as_of.item_quantity,
        product_item_as_of.purchase_value,
        extra_info_as_of.subsidiary,
        purchase_as_of.order_date,
        purchase_as_of.release_date
    from change_days
    left join purchase_as_of
        on
            change_days.purchase_id = purchase_as_of.purchase_id
            and change_days.change_date = purchase_as_of.change_date
    left join product_item_as_of
        on
            change_days.purchase_id = product_item_as_of.purchase_id
            and change_days.change_date = product_item_as_of.change_date
    left join extra_info_as_of
        on
            change_days.purchase_id = extra_info_as_of.purchase_id
            and change_days.change_date = extra_info_as_of.change_date
),

compared as (
    select
        *,
        lag(purchase_event_id) over by_day as previous_purchase_event_id,
        lag(product_item_event_id) over by_day as previous_product_item_event_id,
        lag(extra_info_event_id) over by_day as previous_extra_info_event_id,
        row_number() over by_day as day_number
    from daily_states
    window by_day as (partition by purchase_id order by change_date)
),

changed as (
    -- a day whose news did not change any winning event (an older event arriving late) is no new version
    select * from compared
    where
        day_number = 1
        or purchase_event_id is distinct from previous_purchase_event_id
        or product_item_event_id is distinct from previous_product_item_event_id
        or extra_info_event_id is distinct from previous_extra_info_event_id
),

versioned as (
    select
        *,
        coalesce(
            purchase_event_id is not null and product_item_event_id is not null and extra_info_event_id is not null,
            false
        ) as is_complete,
        change_date as valid_from,
        lead(change_date) over (partition by purchase_id order by change_date) as valid_to
    from changed
),

recomputed as (
    select
        -- ids
        purchase_id,
        buyer_id,
        prod_item_id,
        producer_id,
        product_id,
        purchase_event_id,
        product_item_event_id,
        extra_info_event_id,
        -- strings
        subsidiary,
        -- numerics
        item_quantity,
        purchase_value,
        case when is_complete and release_date is not null then purchase_value else 0 end as gmv_value,
        -- booleans
        is_complete,
        is_complete and release_date is not null as is_in_gmv,
        valid_to is null as is_current,
        -- dates
        order_date,
        release_date,
        valid_from,
        valid_to
    from versioned
),
{%- if is_incremental() %}

vanished as (
    -- versions of a touched purchase that its recomputation no longer has (e.g. a late event moved a day)
    select
        {%- for column in version_columns %}
        held.{{ column }},
        {%- endfor %}
        cast('D' as {{ dbt.type_string() }}) as _cdc_operation,
        held._loaded_at
    from {{ this }} as held
    where
        held.purchase_id in (select touched_purchases.purchase_id from touched_purchases)
        and not exists (
            select 1 from recomputed
            where recomputed.purchase_id = held.purchase_id and recomputed.valid_from = held.valid_from
        )
),
{%- endif %}

final as (
    select
        {%- for column in version_columns %}
        recomputed.{{ column }},
        {%- endfor %}
        -- every version held is a live row; 'D' only travels in an incremental batch
        cast('I' as {{ dbt.type_string() }}) as _cdc_operation,
        {{ lago_cdc.cast_to_timestamp_tz(dbt.current_timestamp()) }} as _loaded_at
    from recomputed
    {%- if is_incremental() %}
    union all
    select * from vanished
    {%- endif %}
)

select * from final
