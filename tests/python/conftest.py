"""The shared fixtures (the S3 server, `s3_lake_env`, `any_lake`) live in the root `tests/conftest.py`."""
