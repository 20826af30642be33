"""`python -m ingestion`: one capture of every table from the simulator into ./lake."""

import sys

from ingestion.cli import main

sys.exit(main())
