"""The monthly report, and the restatements of months it had already published."""

from __future__ import annotations

import streamlit as st

from orchestration.dashboard.gold import MONTHLY_REPORT, RESTATEMENTS, NotPublishedError
from orchestration.dashboard.widgets import freshness, gold, number, stop_unless_published, table

st.title("Monthly report")
reader = gold()
try:
    report = reader.monthly_report()
    restatements = reader.restatements()
except NotPublishedError as error:
    stop_unless_published(error)
    raise
freshness([MONTHLY_REPORT, RESTATEMENTS])
if not len(report):
    st.info("The report holds no month yet.")
    st.stop()

latest = report.iloc[-1]
previous = report.iloc[-2] if len(report) > 1 else None
st.subheader(f"{latest['month_start_date']:%B %Y}")
cards = st.columns(4)
for card, (column, label) in zip(
    cards,
    [
        ("transactions", "Transactions"),
        ("active_customers", "Active customers"),
        ("new_customers", "New customers"),
        ("points_net", "Points net"),
    ],
    strict=True,
):
    change = None if previous is None else number(latest[column] - previous[column])
    card.metric(label, number(latest[column]), delta=change)

st.bar_chart(report.set_index("month_start_date")[["points_earned", "points_spent"]], stack=False)
table(report)

st.subheader("Restatements")
if len(restatements):
    table(restatements)
else:
    st.caption("No published month has been restated.")
