"""Orchestration of Lago Mago with Dagster: capture and dbt as one asset graph (`dg dev`)."""
