"""`python -m orchestration.dashboard`: the dashboard on the lake's published Gold tables, at
http://127.0.0.1:8501 by default (`--port`, `--address`; the lake: `--lake`, else env LAKE_URI, else `./lake`)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from orchestration.dashboard.widgets import lake_uri

APP = Path(__file__).with_name("app.py")


def server_options(port: int, address: str) -> dict[str, object]:
    """`streamlit run`'s options (its flags, dots as underscores): no browser opened, no usage statistics sent, no
    file watcher."""
    return {
        "server_headless": True,
        "server_port": port,
        "server_address": address,
        "server_fileWatcherType": "none",
        "browser_gatherUsageStats": False,
        "client_toolbarMode": "viewer",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchestration.dashboard", description=__doc__)
    parser.add_argument("--lake", default=lake_uri(), help="the lake (default: env LAKE_URI, else ./lake)")
    parser.add_argument("--port", type=int, default=8501)
    parser.add_argument("--address", default="127.0.0.1", help="the address to listen on (0.0.0.0: every one)")
    args = parser.parse_args(argv)
    os.environ["LAKE_URI"] = args.lake
    print(f"Lago Mago dashboard on the lake {args.lake}: http://{args.address}:{args.port}", flush=True)
    # what the pages import (the reader's modules, with this module's own), imported before the server starts: the
    # first visitor's page then waits for no import
    import deltalake  # noqa: F401
    import pandas  # noqa: F401
    from streamlit.web import bootstrap

    # the server `streamlit run` starts, in this process
    options = server_options(args.port, args.address)
    bootstrap.load_config_options(flag_options=options)
    bootstrap.run(str(APP), False, [], options)
    return 0


if __name__ == "__main__":
    sys.exit(main())
