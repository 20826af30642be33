"""Points by day, drilled down through the cube's grouping levels: fix a product category or a source system, break
down by the other, and the page reads the one level that holds exactly those dimensions."""

from __future__ import annotations

from datetime import timedelta

import streamlit as st

from orchestration.dashboard.gold import CUBE, DIMENSIONS, Dimension, NotPublishedError, Slice
from orchestration.dashboard.widgets import freshness, gold, number, stop_unless_published, table

LABELS: dict[Dimension, str] = {"product_category": "Product category", "source_system": "Source system"}
MEASURES = ("points_net", "points_earned", "points_spent", "transactions", "distinct_customers")
ALL = "All"

st.title("Points by day")
reader = gold()
try:
    days = reader.cube_days()
    members = {dimension: reader.members(dimension) for dimension in DIMENSIONS}
except NotPublishedError as error:
    stop_unless_published(error)
    raise
freshness([CUBE])
if days is None:
    st.info("The cube holds no day yet.")
    st.stop()
first, last = days

controls = st.columns(4)
chosen = controls[0].date_input(
    "Days", value=(max(first, last - timedelta(days=27)), last), min_value=first, max_value=last, key="days"
)
filters: list[tuple[Dimension, str]] = []
for column, dimension in zip(controls[1:3], DIMENSIONS, strict=True):
    value = column.selectbox(LABELS[dimension], [ALL, *members[dimension]], key=dimension)
    if value != ALL:
        filters.append((dimension, value))
open_dimensions = [dimension for dimension in DIMENSIONS if dimension not in dict(filters)]
breakdown = controls[3].selectbox(
    "Break down by",
    [None, *open_dimensions],
    format_func=lambda dimension: "Nothing" if dimension is None else LABELS[dimension],
    key="breakdown",
)
if not isinstance(chosen, tuple) or len(chosen) != 2:
    st.info("Pick the last day of the range.")
    st.stop()

slice_ = Slice(start=chosen[0], end=chosen[1], filters=tuple(filters), breakdown=breakdown)
rows = reader.points(slice_)
st.caption(f"{len(rows):,} rows of the cube's level `{slice_.level}`")

totals = st.columns(4)
totals[0].metric("Transactions", number(rows["transactions"].sum()))
totals[1].metric("Points earned", number(rows["points_earned"].sum()))
totals[2].metric("Points spent", number(rows["points_spent"].sum()))
totals[3].metric("Points net", number(rows["points_net"].sum()))

measure = st.radio("Measure", MEASURES, horizontal=True, key="measure")
if len(rows):
    chart = rows.pivot_table(index="transaction_date", columns="member", values=measure, aggfunc="sum")
    st.line_chart(chart)
table(rows)
