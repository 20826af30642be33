"""The dashboard's entry script (`streamlit run`): the page list; each page is a script under `pages/`."""

from __future__ import annotations

import streamlit as st

st.set_page_config(page_title="Lago Mago", page_icon="🏞️", layout="wide")
navigation = st.navigation(
    [
        # the first page is the default one, at the root of the site
        st.Page("pages/points_by_day.py", title="Points by day", default=True),
        st.Page("pages/monthly_report.py", title="Monthly report", url_path="monthly"),
        st.Page("pages/churn.py", title="Churn", url_path="churn"),
        st.Page("pages/gmv_as_known_on.py", title="Hotmart GMV as known on", url_path="gmv"),
    ]
)
navigation.run()
