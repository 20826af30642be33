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

events as (
    -- the three kinds of event in one stream, so each Bronze table is read once: Spark inlines every reference
    -- to a CTE, and a query that named each kind again per day and per kind planned ten scans of each table
    select
        purchase_id,
        arrival_date,
        'purchase' as event_kind,
        event_id,
        transaction_datetime,
        arrived_at,
        buyer_id,
        prod_item_id,
        producer_id,
        order_date,
        release_date,
        null as product_id,
        null as item_quantity,
        null as purchase_value,
        null as subsidiary
    from purchase_events
    union all
    select
        purchase_id,
        arrival_date,
        'product_item' as event_kind,
        event_id,
        transaction_datetime,
        arrived_at,
        null as buyer_id,
        null as prod_item_id,
        null as producer_id,
        null as order_date,
        null as release_date,
        product_id,
        item_quantity,
        purchase_value,
        null as subsidiary
    from product_item_events
    union all
    select
        purchase_id,
        arrival_date,
        'extra_info' as event_kind,
        event_id,
        transaction_datetime,
        arrived_at,
        null as buyer_id,
        null as prod_item_id,
        null as producer_id,
        null as order_date,
        null as release_date,
        null as product_id,
        null as item_quantity,
        null as purchase_value,
        subsidiary
    from extra_info_events
),

ranked_events as (
    -- an event's rank among its purchase's events of the same kind: the latest transaction wins, ties go to the
    -- later arrival, then the larger event id, so every build chooses the same event
    select
        *,
        row_number() over (
            partition by purchase_id, event_kind
            order by transaction_datetime asc nulls first, arrived_at asc nulls first, event_id asc nulls first
        ) as recency
    from events
),

kind_recency as (
    select
        *,
        case when event_kind = 'purchase' then recency end as purchase_recency,
        case when event_kind = 'product_item' then recency end as product_item_recency,
        case when event_kind = 'extra_info' then recency end as extra_info_recency
    from ranked_events
),

daily_states as (
    -- the state at the end of each day an event arrived: of each kind, the winning event among those arrived by
    -- then (the window's frame ends with the day's last arrival), so a late event never rewrites an earlier day;
    -- every event of a day carries the same state, hence distinct
    select distinct
        purchase_id,
        arrival_date as change_date,
        {{ lago_mago.value_at_max('event_id', 'purchase_recency') }} over arrived_by_then as purchase_event_id,
        {{ lago_mago.value_at_max('event_id', 'product_item_recency') }} over arrived_by_then
            as product_item_event_id,
        {{ lago_mago.value_at_max('event_id', 'extra_info_recency') }} over arrived_by_then as extra_info_event_id,
        {{ lago_mago.value_at_max('buyer_id', 'purchase_recency') }} over arrived_by_then as buyer_id,
        {{ lago_mago.value_at_max('prod_item_id', 'purchase_recency') }} over arrived_by_then as prod_item_id,
        {{ lago_mago.value_at_max('producer_id', 'purchase_recency') }} over arrived_by_then as producer_id,
        {{ lago_mago.value_at_max('product_id', 'product_item_recency') }} over arrived_by_then as product_id,
        {{ lago_mago.value_at_max('item_quantity', 'product_item_recency') }} over arrived_by_then as item_quantity,
        {{ lago_mago.value_at_max('purchase_value', 'product_item_recency') }} over arrived_by_then
            as purchase_value,
        {{ lago_mago.value_at_max('subsidiary', 'extra_info_recency') }} over arrived_by_then as subsidiary,
        {{ lago_mago.value_at_max('order_date', 'purchase_recency') }} over arrived_by_then as order_date,
        {{ lago_mago.value_at_max('release_date', 'purchase_recency') }} over arrived_by_then as release_date
    from kind_recency
    window arrived_by_then as (partition by purchase_id order by arrival_date)
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

held as (
    -- the versions held of the touched purchases: one the recomputation no longer has (a late event moved a day)
    -- is deleted
    select
        {%- for column in version_columns %}
        held.{{ column }},
        {%- endfor %}
        held._loaded_at
    from {{ this }} as held
    where held.purchase_id in (select touched_purchases.purchase_id from touched_purchases)
),

candidates as (
    -- recomputed first: a version both have is upserted, one only held is deleted; a union rather than a second
    -- reference to `recomputed`, which Spark would plan twice over
    select
        {%- for column in version_columns %}
        {{ column }},
        {%- endfor %}
        cast('I' as {{ dbt.type_string() }}) as _cdc_operation,
        {{ lago_cdc.cast_to_timestamp_tz(dbt.current_timestamp()) }} as _loaded_at,
        1 as precedence
    from recomputed
    union all
    select
        {%- for column in version_columns %}
        {{ column }},
        {%- endfor %}
        cast('D' as {{ dbt.type_string() }}) as _cdc_operation,
        _loaded_at,
        2 as precedence
    from held
),

final as (
    select
        {%- for column in version_columns %}
        {{ column }},
        {%- endfor %}
        _cdc_operation,
        _loaded_at
    from (
        select
            *,
            row_number() over (partition by purchase_id, valid_from order by precedence) as candidate_number
        from candidates
    ) as ranked_candidates
    where candidate_number = 1
)
{%- else %}

final as (
    select
        {%- for column in version_columns %}
        {{ column }},
        {%- endfor %}
        -- every version held is a live row; 'D' only travels in an incremental batch
        cast('I' as {{ dbt.type_string() }}) as _cdc_operation,
        {{ lago_cdc.cast_to_timestamp_tz(dbt.current_timestamp()) }} as _loaded_at
    from recomputed
)
{%- endif %}

select * from final
