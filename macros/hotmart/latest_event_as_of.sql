{#-
    Only events arrived by the end of a day count for it, so a late event never rewrites what a day showed before it
    arrived; ties go to the later arrival, then the event id, so every build chooses the same event.
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
