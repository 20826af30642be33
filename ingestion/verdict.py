"""The circuit breaker's rule: whether a capture deletes or drops too much of a table to be published.

Apart from the held captures (`breaker.py`) so that the table store, which carries a verdict with a prepared
capture, and the breaker, which stores held captures through the table store, do not import each other.
"""

from __future__ import annotations

from dataclasses import dataclass

from ingestion.catalog import Table


@dataclass(frozen=True)
class Verdict:
    """Why a capture is held: the counts and the thresholds they crossed."""

    table: str
    previous_rows: int
    rows: int
    deletes: int
    reasons: tuple[str, ...]

    def describe(self) -> str:
        return (
            f"table {self.table}: the capture would delete {self.deletes} of {self.previous_rows} rows and leave "
            f"{self.rows}; {' and '.join(self.reasons)}"
        )


def judge(table: Table, previous_rows: int, rows: int, deletes: int) -> Verdict | None:
    """A Verdict when the capture crosses the table's thresholds; None when it may be published."""
    breaker = table.breaker
    if previous_rows < breaker.min_rows or previous_rows == 0:
        return None
    reasons = []
    deleted = deletes / previous_rows
    if deleted > breaker.max_deleted_share:
        reasons.append(f"{deleted:.0%} deleted is over the threshold of {breaker.max_deleted_share:.0%}")
    dropped = (previous_rows - rows) / previous_rows
    if dropped > breaker.max_row_drop_share:
        reasons.append(f"a {dropped:.0%} drop in rows is over the threshold of {breaker.max_row_drop_share:.0%}")
    if not reasons:
        return None
    return Verdict(table.qualified_name, previous_rows, rows, deletes, tuple(reasons))
