"""Hotmart GMV of a month as it was known on a chosen day, beside today's figure: what the report said then."""

from __future__ import annotations

from datetime import UTC, datetime

import streamlit as st

from orchestration.dashboard.gold import GMV_HISTORY, NotPublishedError
from orchestration.dashboard.widgets import freshness, gold, number, stop_unless_published, table

st.title("Hotmart GMV as known on")
reader = gold()
try:
    months = reader.gmv_months()
except NotPublishedError as error:
    stop_unless_published(error)
    raise
freshness([GMV_HISTORY])
if not months:
    st.info("No GMV yet.")
    st.stop()

controls = st.columns(2)
month = controls[0].selectbox("Month", months, format_func=lambda month: f"{month:%B %Y}", key="month")
known_on = controls[1].date_input("As known on", value=datetime.now(UTC).date(), key="known_on")
rows = reader.gmv_as_known_on(month, known_on)

then, today = rows["gmv_known_then"].sum(), rows["gmv_today"].sum()
cards = st.columns(3)
cards[0].metric(f"GMV known on {known_on:%Y-%m-%d}", number(then))
cards[1].metric("GMV known today", number(today))
cards[2].metric("Restated since", number(today - then))

if len(rows):
    by_day = rows.groupby(rows["order_date"].dt.strftime("%Y-%m-%d"))[["gmv_known_then", "gmv_today"]].sum()
    # the days as labels: one group of two bars per order date of the month
    st.bar_chart(by_day.astype(float), stack=False)
table(rows)
