{#-
    Patches of dbt's own macros the project needs (not mechanisms of this project: those hold their engine variants
    in their own files; the CDC engine's needs of dbt-spark are in packages/lago_cdc/macros/adapters/spark.sql).
-#}


{#-
    dbt.datediff on Databricks asks the cluster for its runtime version while the model compiles, so a model using
    it could not compile without a connection (tests/python/test_databricks_parse.py compiles every model
    offline). Whole days are the same `datediff` on every runtime: that case never asks; other parts go to
    dbt-databricks' own variant.
-#}
{% macro databricks__datediff(first_date, second_date, datepart) %}
    {%- if datepart == 'day' -%}
        datediff({{ second_date }}, {{ first_date }})
    {%- else -%}
        {{ return(dbt.databricks__datediff(first_date, second_date, datepart)) }}
    {%- endif -%}
{% endmacro %}
