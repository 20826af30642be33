"""What every test suite shares: running the real CLI (`cli`) and dbt (`dbt`), and, through the root
`tests/conftest.py`, the real S3 server and a lake fixture that is a local folder or an S3 prefix by parameter."""
