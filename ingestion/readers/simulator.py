"""A seeded, deterministic simulation of the loyalty points system.

The state of every table on day `d` is a pure function of (seed, scale, d), computed in DuckDB SQL and written
straight to Parquet, so 10M customers never become Python objects. Day 0 is the first capture; each later
capture advances the clock by one day. From one day to the next:

- about 0.5% new customers sign up, and 1 to 3% of customers change (points balance, linked accounts);
- a few customers are deleted (one in twenty is deleted at some point in its first 400 days; those never
  buy anything, so every transaction's customer exists);
- `max(20, scale / 100)` new transactions arrive, each with one product line (points spent are negative);
- about one product in eleven has its description edited and a new product appears every seven days.

Columns, types and text formats are those of the Kaggle dataset (dates as text `YYYY-MM-DD HH:MM:SS.mmm`).
"""

from __future__ import annotations

from ingestion.catalog import Table
from ingestion.duck import connect, copy_to_parquet, quote_identifier, sql_literal
from ingestion.errors import NotSimulatedError, ScaleError
from ingestion.readers.base import CaptureContext, Snapshot, parquet_snapshot

BASE_DATE = "2025-01-01"
HISTORY_DAYS = 7  # days of transactions already in the system at the first capture

# id, name, category, points per unit (negative: the product is bought with points)
PRODUCTS = [
    (1, "ChatMessage", "chat", 1),
    (2, "Lista de presença", "present", 1),
    (3, "Presença Streak", "present", 10),
    (4, "Troca de Pontos StreamElements", "streamelements", 50),
    (5, "Resgatar Ponei", "ponei", -100),
    (6, "Airflow Lover", "airflow", 10),
    (7, "R Lover", "rlover", 10),
    (8, "Churn_5pp", "churn_model", -5),
    (9, "Churn_2pp", "churn_model", -2),
    (10, "Churn_10pp", "churn_model", -10),
    (11, "Venda de Item", "rpg", -20),
    (12, "Daily Loot", "rpg", 5),
]
_CATEGORIES = ["chat", "present", "rpg", "ponei", "churn_model"]


def _customers_per_day(scale: int) -> int:
    return max(1, scale // 200)


def _transactions_per_day(scale: int) -> int:
    return max(20, scale // 100)


class SimulatorReader:
    name = "simulator"
    simulated_days = True

    def __init__(self, scale: int = 10_000, seed: int = 42) -> None:
        if scale < 10:
            raise ScaleError(scale, "at least 10 customers")
        self.scale = scale
        self.seed = seed

    def available_tables(self, tables: list[Table]) -> list[Table]:
        return [t for t in tables if t.source == "loyalty"]

    def read(self, table: Table, context: CaptureContext) -> Snapshot:
        builders = {
            "clientes": self._clientes,
            "produtos": self._produtos,
            "transacoes": self._transacoes,
            "transacao_produto": self._transacao_produto,
        }
        if table.source != "loyalty" or table.name not in builders:
            raise NotSimulatedError("the simulator", table.qualified_name)
        dest = context.workdir / f"{table.name}.parquet"
        con = connect(context.workdir, ordered=False, memory_limit=context.duckdb_memory_limit)
        try:
            self._macros(con, context.day)
            query = builders[table.name]()
            columns = ", ".join(
                f"cast({quote_identifier(c.name)} as {c.data_type}) as {quote_identifier(c.name)}"
                for c in table.columns
            )
            copy_to_parquet(con, f"select {columns} from ({query})", dest)
        finally:
            con.close()
        return parquet_snapshot(dest)

    def _macros(self, con: object, day: int) -> None:
        import duckdb

        assert isinstance(con, duckdb.DuckDBPyConnection)
        seed, scale = self.seed, self.scale
        con.execute(f"create macro h(a, b, c) as cast(hash({seed}, a, b, c) >> 1 as bigint)")
        con.execute(
            "create macro uuid_of(s) as (select substr(m, 1, 8) || '-' || substr(m, 9, 4) || '-' || "
            "substr(m, 13, 4) || '-' || substr(m, 17, 4) || '-' || substr(m, 21, 12) "
            f"from (select md5('{seed}:' || s) as m))"
        )
        con.execute(f"create macro day_ts(d) as timestamp '{BASE_DATE}' + to_days(cast(d as integer))")
        con.execute("create macro txt(ts) as strftime(ts, '%Y-%m-%d %H:%M:%S.%g')")
        con.execute(f"create macro today() as {day}")
        con.execute(f"create macro customers_at(d) as {scale} + {_customers_per_day(scale)} * greatest(d, 0)")
        con.execute("create macro products_at(d) as 12 + greatest(d, 0) // 7")
        values = ", ".join(f"({i}, {sql_literal(n)}, {sql_literal(c)}, {p})" for i, n, c, p in PRODUCTS)
        categories = ", ".join(sql_literal(c) for c in _CATEGORIES)
        con.execute(
            f"""create table products as
            with base(id, name, category, points) as (values {values}),
            extra as (
                select 12 + range as id,
                    'Produto ' || (12 + range) as name,
                    [{categories}][1 + range % {len(_CATEGORIES)}] as category,
                    case when range % 2 = 0 then 3 else -15 end as points
                from range(1, products_at({day}) - 11)
            )
            select * from base union all select * from extra"""
        )

    def _clientes(self) -> str:
        scale, per_day = self.scale, _customers_per_day(self.scale)
        return f"""
        with ids as (
            select range as i,
                case when range < {scale} then 0 else (range - {scale}) // {per_day} + 1 end as created_day,
                30 + h(range, 'period', 0) % 70 as period,
                h(range, 'offset', 0) % (30 + h(range, 'period', 0) % 70) as off,
                case when range % 20 = 7 then 1 + h(range, 'delete_day', 0) % 400 end
                    as lifetime
            from range(customers_at(today()))
        ),
        alive as (
            select *,
                case when today() <= created_day then created_day
                    else greatest(created_day, today() - (today() + off) % period) end as updated_day
            from ids
            where lifetime is null or created_day + lifetime > today()
        )
        select
            uuid_of('c' || i) as idCliente,
            cast(h(i, 'email', 0) % 10 < 7 as integer) as flEmail,
            cast(h(i, 'twitch', updated_day) % 2 = 0 as integer) as flTwitch,
            cast(h(i, 'youtube', updated_day) % 3 = 0 as integer) as flYouTube,
            case when h(i, 'bluesky', 0) % 10 <> 0
                then cast(h(i, 'bluesky', updated_day) % 4 = 0 as integer) end as flBlueSky,
            cast(h(i, 'instagram', updated_day) % 3 = 0 as integer) as flInstagram,
            cast(h(i, 'points', updated_day) % 5000 as bigint) as qtdePontos,
            txt(day_ts(created_day) - to_days(cast(case when created_day = 0 then h(i, 'age', 0) % 365 else 0 end
                as integer)) + to_microseconds(cast(h(i, 'created_at', 0) % 86400000 as bigint) * 1000))
                as DtCriacao,
            txt(day_ts(updated_day) + to_microseconds(cast(h(i, 'updated_at', updated_day) % 86400000 as bigint)
                * 1000)) as DtAtualizacao
        from alive
        """

    def _produtos(self) -> str:
        return """
        select
            id as IdProduto,
            name as DescNomeProduto,
            case when id % 4 = 0 or (today() + id) // 11 - id // 11 = 0 then null
                else 'Revisão ' || ((today() + id) // 11 - id // 11) || ' de ' || name end as DescDescricaoProduto,
            category as DescCategoriaProduto
        from products
        """

    def _transaction_lines(self) -> str:
        per_day = _transactions_per_day(self.scale)
        return f"""
        with days as (
            select range as t from range(-{HISTORY_DAYS - 1}, today() + 1)
        ),
        lines as (
            select t, j.range as j,
                1 + h(t, j.range, 'product') % products_at(t) as product_id,
                1 + h(t, j.range, 'quantity') % 3 as quantity,
                h(t, j.range, 'customer') % customers_at(t) as drawn
            from days cross join range({per_day}) as j
        ),
        buyers as (
            -- customers with index % 20 = 7 get deleted some day: they never buy, so history stays consistent
            select *, case when drawn % 20 <> 7 then drawn when drawn > 0 then drawn - 1 else 0 end
                as customer_index
            from lines
        )
        select
            uuid_of('t' || t || ':' || j) as IdTransacao,
            uuid_of('tp' || t || ':' || j) as idTransacaoProduto,
            uuid_of('c' || customer_index) as IdCliente,
            txt(day_ts(t) + to_microseconds(cast(h(t, j, 'at') % 86400000 as bigint) * 1000)) as DtCriacao,
            product_id,
            quantity,
            cast(quantity * p.points as bigint) as points,
            case when p.category in ('rpg', 'churn_model') then 'cursos' else 'twitch' end as origin
        from buyers
        join products as p on p.id = buyers.product_id
        """

    def _transacoes(self) -> str:
        return f"""
        select IdTransacao, IdCliente, DtCriacao, points as QtdePontos, origin as DescSistemaOrigem
        from ({self._transaction_lines()})
        """

    def _transacao_produto(self) -> str:
        return f"""
        select idTransacaoProduto, IdTransacao, product_id as IdProduto, quantity as QtdeProduto,
            points as vlProduto
        from ({self._transaction_lines()})
        """
