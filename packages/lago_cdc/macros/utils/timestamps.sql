{#-
    Engine differences for timestamps and dates. The warehouse session runs in UTC (profiles.yml). Spark's
    `timestamp` is already a point in time (TIMESTAMP_LTZ) shown in the session time zone.
-#}

{% macro cast_to_timestamp_tz(expression) %}
    {{ return(adapter.dispatch('cast_to_timestamp_tz', 'lago_cdc')(expression)) }}
{% endmacro %}

{% macro default__cast_to_timestamp_tz(expression) -%}
    cast({{ expression }} as timestamp with time zone)
{%- endmacro %}

{% macro spark__cast_to_timestamp_tz(expression) -%}
    cast({{ expression }} as timestamp)
{%- endmacro %}


{% macro epoch_ms_to_timestamp(expression) %}
    {{ return(adapter.dispatch('epoch_ms_to_timestamp', 'lago_cdc')(expression)) }}
{% endmacro %}

{% macro default__epoch_ms_to_timestamp(expression) -%}
    epoch_ms(cast({{ expression }} as {{ dbt.type_bigint() }}))
{%- endmacro %}

{% macro spark__epoch_ms_to_timestamp(expression) -%}
    timestamp_millis(cast({{ expression }} as bigint))
{%- endmacro %}


{% macro epoch_microseconds(expression) %}
    {{ return(adapter.dispatch('epoch_microseconds', 'lago_cdc')(expression)) }}
{% endmacro %}

{% macro default__epoch_microseconds(expression) -%}
    epoch_us({{ expression }})
{%- endmacro %}

{% macro spark__epoch_microseconds(expression) -%}
    unix_micros({{ expression }})
{%- endmacro %}
