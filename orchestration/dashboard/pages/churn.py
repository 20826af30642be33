"""Churn as of the last day with transactions: customers per status and the churn rate."""

from __future__ import annotations

import streamlit as st

from orchestration.dashboard.gold import CHURN, NotPublishedError
from orchestration.dashboard.widgets import freshness, gold, number, stop_unless_published, table

st.title("Churn")
reader = gold()
try:
    summary = reader.churn()
except NotPublishedError as error:
    stop_unless_published(error)
    raise
freshness([CHURN])
if not len(summary):
    st.info("No customer yet.")
    st.stop()

by_status = summary.set_index("churn_status")
customers = {status: int(by_status["customers"].get(status, 0)) for status in ("active", "churned", "never_transacted")}
transacted = customers["active"] + customers["churned"]
reference = summary["reference_date"].dropna()
st.subheader(f"As of {reference.max():%Y-%m-%d}" if len(reference) else "No transaction yet")

cards = st.columns(5)
cards[0].metric("Customers", number(sum(customers.values())))
cards[1].metric("Active", number(customers["active"]))
cards[2].metric("Churned", number(customers["churned"]))
cards[3].metric("Never transacted", number(customers["never_transacted"]))
cards[4].metric("Churn rate", f"{customers['churned'] / transacted:.1%}" if transacted else "-")

st.bar_chart(by_status[["customers"]])
table(summary)
