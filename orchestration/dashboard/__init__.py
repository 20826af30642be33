"""The dashboard on the published Gold tables: `python -m orchestration.dashboard` (extra `dashboard`).

A Streamlit app (`app.py`, one script per page under `pages/`) that reads the Gold tables the build published into
the lake (`gold.py`), never the warehouse, so it reads while a build runs, and shows how fresh each table is.
"""
