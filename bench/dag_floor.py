"""The floor of an incremental build: the work of one capture done by a bare DuckDB script, no dbt.

    python -m bench.dag_floor WAREHOUSE LAKE

Opens WAREHOUSE (built by `dbt build` from LAKE, with captures not merged yet) with the dev target's settings and,
in one transaction of plain SQL, does what an incremental `dbt build` of the loyalty lineage does with them:

- lists each loyalty table's lake files (`raw/loyalty/{full-load,cdc}/<table>/`) and keeps those the checkpoint
  (`bronze.bronze_processed_files`, status 'merged') does not name for the table's Bronze model;
- reads them, keeps the latest change per key (by time, sequence, file, position) and, where it is newer than the
  Bronze row and not a copy of it, deletes the key and inserts the change (deletes as 'D' delete only);
- history: appends each new change of the files as a version (its dbt_scd_id as the history models compute it),
  valid until the key's next change, and closes the key's open version at its first new change;
- Silver: the same keys deleted and, cleaned and typed as the Silver models do, inserted again;
- Gold: rewrites the cube days and report months the Silver changes touch (the old and the new day or month of a
  changed transaction, the day of a changed line's transaction, the days with a line of a changed product, the
  creation months whose count of customers moved), and the churn summary from the churn of the customers whose
  rows or transactions changed (the whole summary again when the reference date moved);
- checks that the keys written are not null and unique in every table written;
- records the files as merged for the Bronze and the history models.

Left out, as a script that knows its own batch needs none of it: the change feeds (`*__changes`, feed versions and
positions) through which the models pass their changes on, the re-reading of merged files for a late batch (a
capture older than what was merged), the snapshot of the monthly report and its restatements, the lake identity
and published-file guards, and the publication of Silver and Gold into the lake. Prints the rows written.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import duckdb

from ingestion.catalog import Table, load_catalog
from ingestion.duck import quote_identifier, sql_literal

SOURCE = "loyalty"
# the dev target's connection (profiles.yml): a floor runs with the engine the build runs with
SETTINGS = ("set TimeZone = 'UTC'", "set threads = 4", "set memory_limit = '3GB'")
CHURN_WINDOW_DAYS = 28  # dbt_project.yml, var churn_window_days


@dataclass(frozen=True)
class Lineage:
    """One source table's Silver model: its name, its key and its select list over Bronze's changed rows."""

    table: str
    silver: str
    key: str
    columns: str


def clean(expression: str) -> str:
    return f"nullif(trim(cast({expression} as varchar)), '')"


def flag(expression: str) -> str:
    return f"case cast({expression} as integer) when 1 then true when 0 then false end"


def timestamp(expression: str) -> str:
    return f"try_cast(nullif(trim({expression}), '') as timestamp)"


def earned(expression: str) -> str:
    return f"case when {expression} > 0 then {expression} when {expression} <= 0 then 0 end"


def spent(expression: str) -> str:
    return f"case when {expression} < 0 then -{expression} when {expression} >= 0 then 0 end"


# models/silver/loyalty/*.sql, their macros (macros/utils/cleaning.sql) spelled out
LINEAGES = (
    Lineage(
        "clientes",
        "silver_loyalty__customers",
        "customer_id",
        f"""{clean('"idCliente"')} as customer_id, "qtdePontos" as points_balance,
        {flag('"flEmail"')} as has_email, {flag('"flTwitch"')} as has_twitch, {flag('"flYouTube"')} as has_youtube,
        {flag('"flBlueSky"')} as has_bluesky, {flag('"flInstagram"')} as has_instagram,
        {timestamp('"DtCriacao"')} as created_at, {timestamp('"DtAtualizacao"')} as updated_at""",
    ),
    Lineage(
        "produtos",
        "silver_loyalty__products",
        "product_id",
        f"""{clean('"IdProduto"')} as product_id, {clean('"DescNomeProduto"')} as product_name,
        {clean('"DescDescricaoProduto"')} as product_description,
        lower({clean('"DescCategoriaProduto"')}) as product_category""",
    ),
    Lineage(
        "transacoes",
        "silver_loyalty__transactions",
        "transaction_id",
        f"""{clean('"IdTransacao"')} as transaction_id, {clean('"IdCliente"')} as customer_id,
        lower({clean('"DescSistemaOrigem"')}) as source_system, "QtdePontos" as points,
        {earned('"QtdePontos"')} as points_earned, {spent('"QtdePontos"')} as points_spent,
        {timestamp('"DtCriacao"')} as transaction_at, cast({timestamp('"DtCriacao"')} as date) as transaction_date""",
    ),
    Lineage(
        "transacao_produto",
        "silver_loyalty__transaction_products",
        "transaction_product_id",
        f"""{clean('"idTransacaoProduto"')} as transaction_product_id, {clean('"IdTransacao"')} as transaction_id,
        {clean('"IdProduto"')} as product_id, "QtdeProduto" as quantity, "vlProduto" as points,
        {earned('"vlProduto"')} as points_earned, {spent('"vlProduto"')} as points_spent""",
    ),
)


def quoted(names: list[str] | tuple[str, ...], prefix: str = "") -> str:
    return ", ".join(prefix + quote_identifier(name) for name in names)


def key_match(key: tuple[str, ...], left: str, right: str) -> str:
    return " and ".join(f"{left}.{quote_identifier(k)} = {right}.{quote_identifier(k)}" for k in key)


def file_id(column: str) -> str:
    """A lake file's path from the lake root, as the checkpoint and _source_file hold it."""
    return f"regexp_extract({column}, '(raw/[^/]+/[^/]+/[^/]+/[^/]+)$', 1)"


def scd_id(table: Table) -> str:
    """A change's identity (packages/lago_cdc: history_scd_id): key, time, sequence, operation, content, each value
    named and length-prefixed; a NULL value adds nothing."""

    def part(name: str) -> str:
        text = f"cast({quote_identifier(name)} as varchar)"
        return f"{sql_literal(name + ':')} || cast(length({text}) as varchar) || ':' || {text}"

    parts = [part(k) for k in table.primary_key]
    parts += ["cast(epoch_us(_cdc_timestamp) as varchar)", "cast(_cdc_sequence as varchar)", "_cdc_operation"]
    parts += [part(name) for name in table.column_names if name not in table.primary_key]
    return f"md5(concat_ws('|', {', '.join(parts)}))"


def new_files(con: duckdb.DuckDBPyConnection, lake: Path, table: str) -> list[str]:
    """The table's lake files the checkpoint does not hold as merged into its Bronze model, by name."""
    pattern = sql_literal(f"{lake.resolve()}/raw/{SOURCE}/*/{table}/*.parquet")
    rows = con.execute(
        f"""select file from glob({pattern})
        where {file_id("file")} not in (
            select file_name from bronze.bronze_processed_files
            where model_name = {sql_literal(f"bronze_{SOURCE}__{table}")} and status = 'merged'
        )
        order by file"""
    ).fetchall()
    return [str(row[0]) for row in rows]


def stage_batch(con: duckdb.DuckDBPyConnection, table: Table, files: list[str]) -> None:
    """`batch`: the files' changes in the declared types; `applied`: the latest per key that Bronze takes."""
    casts = ", ".join(
        f"cast({quote_identifier(c.name)} as {c.data_type}) as {quote_identifier(c.name)}" for c in table.columns
    )
    nulls = ", ".join(f"null as {quote_identifier(name)}" for name in table.column_names)
    reader = f"read_parquet([{', '.join(sql_literal(f) for f in files)}], filename = true, file_row_number = true)"
    con.execute(
        f"""create or replace temp table batch as
        select
            case cast(_cdc_operation as varchar) when 'I' then 'I' when 'U' then 'U' when 'D' then 'D' end
                as _cdc_operation,
            cast(_cdc_timestamp as timestamptz) as _cdc_timestamp,
            cast(_cdc_sequence as bigint) as _cdc_sequence,
            {casts},
            {file_id("cast(filename as varchar)")} as _source_file,
            cast(file_row_number as bigint) as _cdc_position
        from (select {nulls} where 1 = 0 union all by name select * from {reader})
        where _cdc_operation is not null"""
    )
    key, bronze = table.primary_key, f"bronze.bronze_{SOURCE}__{table.name}"
    same = " and ".join(
        f"latest.{quote_identifier(n)} is not distinct from held.{quote_identifier(n)}" for n in table.column_names
    )
    con.execute(
        f"""create or replace temp table applied as
        with latest as (
            select * from batch
            qualify row_number() over (
                partition by {quoted(key)}
                order by _cdc_timestamp desc, _cdc_sequence desc, _source_file desc, _cdc_position desc
            ) = 1
        )
        select latest.* from latest
        left join {bronze} as held on {key_match(key, "latest", "held")}
        where
            (held._cdc_timestamp is null and latest._cdc_operation <> 'D')
            or (
                (latest._cdc_timestamp, latest._cdc_sequence, latest._source_file)
                    > (held._cdc_timestamp, held._cdc_sequence, held._source_file)
                and not (
                    latest._cdc_timestamp = held._cdc_timestamp and latest._cdc_sequence = held._cdc_sequence
                    and latest._cdc_operation = held._cdc_operation and {same}
                )
            )"""
    )


def merge_bronze(con: duckdb.DuckDBPyConnection, table: Table) -> None:
    bronze, names = f"bronze.bronze_{SOURCE}__{table.name}", table.column_names
    con.execute(
        f"delete from {bronze} where ({quoted(table.primary_key)}) in (select ({quoted(table.primary_key)}) "
        "from applied)"
    )
    con.execute(
        f"""insert into {bronze} by name
        select {quoted(names)}, _cdc_operation, _cdc_timestamp, _cdc_sequence, _source_file,
            current_timestamp as _loaded_at
        from applied where _cdc_operation <> 'D'"""
    )


def append_history(con: duckdb.DuckDBPyConnection, table: Table) -> None:
    """New versions of the batch's changes (copies and changes already held are one version), and the keys' open
    versions closed at their first new change."""
    history, key = f"history.history_{SOURCE}__{table.name}", table.primary_key
    con.execute(
        f"""create or replace temp table versions as
        select *, lead(_cdc_timestamp) over (
            partition by {quoted(key)} order by _cdc_timestamp, _cdc_sequence, _source_file, _cdc_position
        ) as dbt_valid_to
        from (
            select *, {scd_id(table)} as dbt_scd_id from batch
            qualify row_number() over (partition by dbt_scd_id order by _source_file, _cdc_position) = 1
        ) as changes
        where dbt_scd_id not in (select dbt_scd_id from {history} where ({quoted(key)}) in (
            select ({quoted(key)}) from batch))"""
    )
    con.execute(
        f"""update {history} as held set dbt_valid_to = first_change.first_at
        from (select {quoted(key)}, min(_cdc_timestamp) as first_at from versions group by all) as first_change
        where {key_match(key, "held", "first_change")} and held.dbt_valid_to is null"""
    )
    con.execute(
        f"""insert into {history} by name
        select * exclude (dbt_valid_to), current_timestamp as _loaded_at, _cdc_timestamp as dbt_updated_at,
            _cdc_timestamp as dbt_valid_from, dbt_valid_to,
            case when _cdc_operation = 'D' then 'True' else 'False' end as dbt_is_deleted
        from versions"""
    )


def stage_silver(con: duckdb.DuckDBPyConnection, lineage: Lineage) -> None:
    """`<silver>__changes`: Bronze's applied changes as the Silver model writes them (deletes as 'D')."""
    con.execute(
        f"""create or replace temp table {lineage.silver}__changes as
        select {lineage.columns}, _cdc_operation, _cdc_timestamp, current_timestamp as _loaded_at from applied"""
    )


def merge_silver(con: duckdb.DuckDBPyConnection, lineage: Lineage) -> None:
    """The Silver rows of the changed keys, kept as `<silver>__before`, replaced by the changes' rows, kept as
    `<silver>__after` (what Gold reads of Silver's changes)."""
    silver, key = f"silver.{lineage.silver}", quote_identifier(lineage.key)
    con.execute(f"delete from {silver} where {key} in (select {key} from {lineage.silver}__changes)")
    con.execute(
        f"""create or replace temp table {lineage.silver}__after as
        select * from {lineage.silver}__changes where _cdc_operation <> 'D'"""
    )
    con.execute(f"insert into {silver} by name select * from {lineage.silver}__after")


def keep_before(con: duckdb.DuckDBPyConnection, lineage: Lineage) -> None:
    """`<silver>__before`: the Silver rows the changes replace (an empty `<silver>__changes` for a table the
    capture did not change)."""
    silver, key = f"silver.{lineage.silver}", quote_identifier(lineage.key)
    con.execute(
        f"""create temp table if not exists {lineage.silver}__changes as
        select * from {silver} where false"""
    )
    con.execute(
        f"""create or replace temp table {lineage.silver}__before as
        select * from {silver} where {key} in (select {key} from {lineage.silver}__changes)"""
    )


def images(silver: str, columns: str) -> str:
    return f"select {columns} from {silver}__before union select {columns} from {silver}__after"


def rewrite_cube(con: duckdb.DuckDBPyConnection) -> int:
    """gold_points_daily_cube's touched days (macros/gold/points_cube.sql) deleted and computed again."""
    con.execute(
        f"""create or replace temp table touched_days as
        {images("silver_loyalty__transactions", "transaction_date")}
        union
        select transactions.transaction_date
        from ({images("silver_loyalty__transaction_products", "transaction_id")}) as lines
        inner join silver.silver_loyalty__transactions as transactions using (transaction_id)
        union
        select transactions.transaction_date
        from ({images("silver_loyalty__products", "product_id")}) as products
        inner join silver.silver_loyalty__transaction_products as lines using (product_id)
        inner join silver.silver_loyalty__transactions as transactions using (transaction_id)"""
    )
    con.execute(
        "delete from gold.gold_points_daily_cube where transaction_date in (select transaction_date from touched_days)"
    )
    # models/gold/points/gold_points_daily_cube.sql, on the touched days
    con.execute(
        """insert into gold.gold_points_daily_cube by name
        with facts as (
            select
                t.transaction_date, t.transaction_id, t.customer_id, t.source_system,
                coalesce(p.product_category, 'unknown') as product_category,
                coalesce(l.points_earned, t.points_earned) as points_earned,
                coalesce(l.points_spent, t.points_spent) as points_spent,
                greatest(t._loaded_at, coalesce(l._loaded_at, t._loaded_at)) as source_loaded_at
            from silver.silver_loyalty__transactions as t
            left join silver.silver_loyalty__transaction_products as l on t.transaction_id = l.transaction_id
            left join silver.silver_loyalty__products as p on l.product_id = p.product_id
            where t.transaction_date in (select transaction_date from touched_days)
        ),
        cubed as (
            select
                transaction_date, product_category, source_system,
                grouping(product_category) * 2 + grouping(source_system) as grouping_id,
                count(distinct transaction_id) as transactions,
                count(distinct customer_id) as distinct_customers,
                cast(sum(points_earned) as bigint) as points_earned,
                cast(sum(points_spent) as bigint) as points_spent,
                max(source_loaded_at) as source_loaded_at
            from facts
            group by transaction_date, cube(product_category, source_system)
        )
        select
            transaction_date,
            case grouping_id
                when 0 then 'day_category_source_system' when 1 then 'day_category'
                when 2 then 'day_source_system' else 'day'
            end as grouping_level,
            grouping_id, product_category, source_system, transactions, distinct_customers,
            points_earned, points_spent, points_earned - points_spent as points_net,
            max(source_loaded_at) over (partition by transaction_date) as source_loaded_at
        from cubed"""
    )
    return count(con, "select count(*) from touched_days")


def rewrite_report(con: duckdb.DuckDBPyConnection) -> int:
    """gold_points_monthly_report's touched months (macros/gold/points_report.sql) deleted and computed again."""
    con.execute(
        """create or replace temp table touched_months as
        select cast(date_trunc('month', transaction_date) as date) as month_start_date
        from (select transaction_date from silver_loyalty__transactions__before
            union all select transaction_date from silver_loyalty__transactions__after)
        union
        select month_start_date from (
            select cast(date_trunc('month', created_at) as date) as month_start_date, sum(moved) as moved
            from (
                select created_at, -1 as moved from silver_loyalty__customers__before
                union all select created_at, 1 from silver_loyalty__customers__after
            )
            group by 1
        )
        where moved <> 0"""
    )
    con.execute(
        "delete from gold.gold_points_monthly_report "
        "where month_start_date in (select month_start_date from touched_months)"
    )
    # models/gold/points/gold_points_monthly_report.sql, on the touched months
    con.execute(
        """insert into gold.gold_points_monthly_report by name
        with activity as (
            select
                cast(date_trunc('month', transaction_date) as date) as month_start_date,
                count(*) as transactions,
                count(distinct customer_id) as active_customers,
                count(distinct case when source_system = 'twitch' then customer_id end) as active_customers_twitch,
                cast(sum(points_earned) as bigint) as points_earned,
                cast(sum(points_spent) as bigint) as points_spent
            from silver.silver_loyalty__transactions
            where cast(date_trunc('month', transaction_date) as date) in (select month_start_date from touched_months)
            group by 1
        ),
        signups as (
            select cast(date_trunc('month', created_at) as date) as month_start_date, count(*) as new_customers
            from silver.silver_loyalty__customers
            where cast(date_trunc('month', created_at) as date) in (select month_start_date from touched_months)
            group by 1
        )
        select
            activity.month_start_date, transactions, active_customers, active_customers_twitch,
            coalesce(new_customers, 0) as new_customers, points_earned, points_spent,
            points_earned - points_spent as points_net,
            round(transactions / active_customers, 2) as transactions_per_active_customer
        from activity left join signups using (month_start_date)"""
    )
    return count(con, "select count(*) from touched_months")


def churn_sql(affected_only: bool) -> str:
    """models/gold/points/gold_customer_churn.sql, for the customers of temp table `affected` that Silver holds, or
    every customer, each with its churn status."""
    window = CHURN_WINDOW_DAYS
    only = "where customer_id in (select affected.customer_id from affected)" if affected_only else ""
    return f"""
        with reference as (select max(transaction_date) as reference_date from silver.silver_loyalty__transactions),
        daily as (
            select customer_id, transaction_date, count(*) as transactions,
                sum(points_earned) as points_earned, sum(points_spent) as points_spent
            from silver.silver_loyalty__transactions
            {only}
            group by customer_id, transaction_date
        ),
        per_customer as (
            select
                customer_id,
                max(transaction_date) as last_transaction_date,
                cast(sum(case when days_ago < {window} then transactions else 0 end) as bigint) as transactions,
                cast(sum(case when days_ago < {window} then points_earned else 0 end) as bigint) as points_earned,
                cast(sum(case when days_ago < {window} then points_spent else 0 end) as bigint) as points_spent
            from (
                select daily.*, date_diff('day', transaction_date, reference_date) as days_ago
                from daily cross join reference
            )
            group by customer_id
        ),
        churn as (
            select
                reference_date,
                date_diff('day', last_transaction_date, reference_date) as recency_days,
                coalesce(transactions, 0) as transactions,
                coalesce(points_earned, 0) as points_earned,
                coalesce(points_spent, 0) as points_spent,
                coalesce(
                    last_transaction_date is not null
                    and date_diff('day', last_transaction_date, reference_date) >= {window},
                    false
                ) as is_churned,
                last_transaction_date
            from silver.silver_loyalty__customers as customers
            cross join reference
            left join per_customer using (customer_id)
            {only.replace("where customer_id", "where customers.customer_id")}
        )
        select
            case when is_churned then 'churned' when last_transaction_date is null then 'never_transacted'
                else 'active' end as churn_status,
            reference_date, recency_days, transactions, points_earned, points_spent
        from churn"""


def summary_sql(churn: str) -> str:
    """models/gold/points/gold_customer_churn_summary.sql over churn rows."""
    return f"""
        select churn_status, max(reference_date) as reference_date, count(*) as customers,
            cast(sum(transactions) as bigint) as transactions_current_window,
            cast(sum(points_earned) as bigint) as points_earned_current_window,
            cast(sum(points_spent) as bigint) as points_spent_current_window,
            avg(recency_days) as average_recency_days
        from ({churn}) group by churn_status"""


def stage_affected(con: duckdb.DuckDBPyConnection) -> None:
    """`affected`: the customers whose churn the capture can move, those changed and those of a transaction changed
    (its old or new row); `churn_before`: their churn as the summary counts it now, before Silver changes."""
    con.execute(
        """create or replace temp table affected as
        select customer_id from silver_loyalty__customers__changes
        union select customer_id from silver_loyalty__transactions__before
        union select customer_id from silver_loyalty__transactions__changes"""
    )
    con.execute(f"create or replace temp table churn_before as {churn_sql(affected_only=True)}")


def rewrite_churn_summary(con: duckdb.DuckDBPyConnection) -> int:
    """gold_customer_churn_summary moved by the affected customers' churn: their rows before out, after in. A
    moved reference date moves every customer's window: the summary is then computed from every customer."""
    con.execute(f"create or replace temp table churn_after as {churn_sql(affected_only=True)}")
    moved = count(
        con,
        """select count(*)
        from (select max(transaction_date) as reference_date from silver.silver_loyalty__transactions)
        where reference_date is distinct from (select max(reference_date) from gold.gold_customer_churn_summary)""",
    )
    if moved:
        con.execute(f"create or replace temp table summary as {summary_sql(churn_sql(affected_only=False))}")
    else:
        move_summary(con)
    con.execute("delete from gold.gold_customer_churn_summary")
    con.execute("insert into gold.gold_customer_churn_summary by name select * from summary")
    return count(con, "select count(*) from summary")


def move_summary(con: duckdb.DuckDBPyConnection) -> None:
    """`summary`: the held summary, the affected customers' churn before taken out and after put in."""
    con.execute(
        """create or replace temp table summary as
        with delta as (
            select churn_status, reference_date, count(*) * sign as customers, sum(transactions) * sign as transactions,
                sum(points_earned) * sign as points_earned, sum(points_spent) * sign as points_spent,
                sum(recency_days) * sign as recency
            from (select *, -1 as sign from churn_before union all select *, 1 from churn_after)
            group by churn_status, reference_date, sign
        ),
        held as (
            -- the average of whole days times its count is the whole sum, up to rounding
            select churn_status, reference_date, customers, transactions_current_window as transactions,
                points_earned_current_window as points_earned, points_spent_current_window as points_spent,
                cast(round(average_recency_days * customers) as hugeint) as recency
            from gold.gold_customer_churn_summary
        )
        select churn_status, max(reference_date) as reference_date, cast(sum(customers) as bigint) as customers,
            cast(sum(transactions) as bigint) as transactions_current_window,
            cast(sum(points_earned) as bigint) as points_earned_current_window,
            cast(sum(points_spent) as bigint) as points_spent_current_window,
            sum(recency) / sum(customers) as average_recency_days
        from (select * from held union all select * from delta)
        group by churn_status
        having sum(customers) > 0"""
    )


def check_keys(con: duckdb.DuckDBPyConnection, relation: str, key: str, written: str) -> None:
    """The data tests' rule on the rows written: their key not null and unique in the table."""
    bad = count(
        con,
        f"""select count(*) from (
            select {key} from {relation} where ({key}) in ({written})
            group by all having count(*) > 1 or bool_or({key} is null)
        )""",
    )
    nulls = count(con, f"select count(*) from ({written}) where {key} is null")
    if bad or nulls:
        raise SystemExit(f"{relation}: {bad + nulls} keys of the rows written are null or not unique")


def record_checkpoint(con: duckdb.DuckDBPyConnection, table: str) -> None:
    con.execute(
        f"""insert into bronze.bronze_processed_files by name
        select model_name, {sql_literal(SOURCE)} as source_name, {sql_literal(table)} as table_name,
            _source_file as file_name, count(*) as row_count,
            min(_cdc_timestamp) as min_cdc_timestamp, max(_cdc_timestamp) as max_cdc_timestamp,
            min(_cdc_sequence) as min_cdc_sequence, max(_cdc_sequence) as max_cdc_sequence,
            'merged' as status, current_timestamp as merged_at
        from batch cross join (values ({sql_literal(f"bronze_{SOURCE}__{table}")}),
            ({sql_literal(f"history_{SOURCE}__{table}")})) as models(model_name)
        group by model_name, _source_file"""
    )


def count(con: duckdb.DuckDBPyConnection, query: str) -> int:
    row = con.execute(query).fetchone()
    return int(row[0]) if row is not None else 0


def check_cube(con: duckdb.DuckDBPyConnection) -> None:
    """The cube's grain on the days rewritten: one row per day, grouping level, category and source system."""
    bad = count(
        con,
        """select count(*) from (
            select transaction_date, grouping_level, product_category, source_system from gold.gold_points_daily_cube
            where transaction_date in (select transaction_date from touched_days)
            group by all having count(*) > 1
        )""",
    )
    if bad:
        raise SystemExit(f"gold.gold_points_daily_cube: {bad} rows of the touched days are not unique")


def merge_bronze_and_history(con: duckdb.DuckDBPyConnection, lake: Path, table: Table, lineage: Lineage) -> int:
    """One table's new files merged into Bronze and history and staged for Silver; the rows written."""
    files = new_files(con, lake, table.name)
    if not files:
        return 0
    stage_batch(con, table, files)
    append_history(con, table)
    check_keys(con, f"history.history_{SOURCE}__{table.name}", "dbt_scd_id", "select dbt_scd_id from versions")
    merge_bronze(con, table)
    key = quoted(table.primary_key)
    check_keys(con, f"bronze.bronze_{SOURCE}__{table.name}", key, f"select {key} from applied")
    stage_silver(con, lineage)
    record_checkpoint(con, table.name)
    return count(con, "select count(*) from versions") + count(con, "select count(*) from applied")


def build(warehouse: Path, lake: Path) -> int:
    """The capture's work in one transaction; the rows written to Bronze, history, Silver and Gold."""
    tables = load_catalog().source(SOURCE).tables
    with duckdb.connect(str(warehouse)) as con:
        for setting in SETTINGS:
            con.execute(setting)
        con.execute("begin")
        written = sum(merge_bronze_and_history(con, lake, tables[x.table], x) for x in LINEAGES)
        if written:
            for lineage in LINEAGES:
                keep_before(con, lineage)
            stage_affected(con)
            for lineage in LINEAGES:
                merge_silver(con, lineage)
                key = quote_identifier(lineage.key)
                check_keys(con, f"silver.{lineage.silver}", key, f"select {key} from {lineage.silver}__after")
                written += count(con, f"select count(*) from {lineage.silver}__changes")
            written += rewrite_cube(con) + rewrite_report(con) + rewrite_churn_summary(con)
            check_cube(con)
            check_keys(con, "gold.gold_points_monthly_report", "month_start_date", "select * from touched_months")
            check_keys(con, "gold.gold_customer_churn_summary", "churn_status", "select churn_status from summary")
        con.execute("commit")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("warehouse", type=Path)
    parser.add_argument("lake", type=Path)
    args = parser.parse_args(argv)
    print(build(args.warehouse, args.lake))
    return 0


if __name__ == "__main__":
    sys.exit(main())
