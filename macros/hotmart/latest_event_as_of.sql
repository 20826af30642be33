{#-
    The state of a record as of the end of each day: for every (key, day) of `days`, the event of `events` with
    the greatest `transaction_datetime` among those that had arrived by the end of that day (`arrival_date <=
    day`). Ties on the event time go to the later arrival, then to the event id, so the choice is deterministic.
    A day without news for this table carries its last state forward; a day before its first event has none.

    `events` must have: purchase_id, event_id, transaction_datetime, arrived_at, arrival_date and `columns`.
    `days` must have: purchase_id, change_date. The result has purchase_id, change_date, event_id and `columns`.
-#}
{% macro latest_event_as_of(events, days, columns) %}
    select
        purchase_id,
        change_date,
        event_id,
        {{ columns | join(',\n        ') }}
    from (
        select
            days.purchase_id,
            days.change_date,
            events.event_id,
            {%- for column in columns %}
            events.{{ column }},
            {%- endfor %}
            row_number() over (
                partition by days.purchase_id, days.change_date
                order by events.transaction_datetime desc, events.arrived_at desc, events.event_id desc
            ) as recency_rank
        from {{ days }} as days
        inner join {{ events }} as events
            on
                days.purchase_id = events.purchase_id
                and events.arrival_date <= days.change_date
    ) as ranked
    where recency_rank = 1
{% endmacro %}
