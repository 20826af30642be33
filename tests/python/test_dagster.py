"""The lakehouse as Dagster assets (issue 13), on a temporary lake and warehouse with a real Dagster instance.

The module fixture runs the job `capture_then_build` twice (a full load, then changes), with real dbt builds: the
first time with the README's `dg launch` command, the second in process. Then:

- every capture and dbt asset was materialised, Bronze equals the state the ingestion captured last, every dbt
  test ran as an asset check and passed, and the run history holds each capture's counts and each dbt node's
  timing;
- the README's other `dg` commands run from the repo root as written, without a deprecation warning;
- the README's background `dg dev` on a free loopback port serves that instance; in headless Chromium the
  lineage of a Gold mart shows a capture asset, its Bronze model, a Silver model and the mart, joined by edges
  and drawn as materialised. The screenshot is kept in pytest's tmp folder (`UPDATE_DAGSTER_SCREENSHOT=1` also
  copies it to docs/images/dagster_lineage.png). Then the README's `kill $!` stops the server and its children.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pytest
from headless_chromium import Chromium, chromium_executable
from support.net import free_port

from ingestion.catalog import load_catalog
from ingestion.lake import open_lake
from ingestion.published_tables import PublishedTables
from ingestion.table_store import load_state
from orchestration.lakehouse import JOB_NAME, build_definitions
from orchestration.settings import Settings

pytestmark = [pytest.mark.dbt, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
SCALE = 300
RUNS = 2


@dataclass
class Orchestrated:
    """A Dagster home with the history of `RUNS` successful runs of the job, and the lake and warehouse."""

    home: Path
    env: dict[str, str]
    settings: Settings
    run_ids: list[str]


def orchestration_env(root: Path) -> dict[str, str]:
    return {
        "LAKE_URI": str(root / "lake"),
        "DUCKDB_PATH": str(root / "warehouse.duckdb"),
        "LAGO_DBT_TARGET_PATH": str(root / "dbt-target"),
        "DAGSTER_HOME": str(root / "dagster-home"),
        # a failure here is a bug to see at once, not a transient error to wait out
        "LAGO_MAX_RETRIES": "0",
        "LAGO_LOCK_WAIT_SECONDS": "0",
    }


def capture_config(scale: int) -> dict[str, object]:
    return {"ops": {f"capture_{name}": {"config": {"scale": scale}} for name in load_catalog().sources}}


README = REPO / "README.md"
# the README's commands name the checkout's instance; the tests give them the module's (env DAGSTER_HOME)
README_HOME = "DAGSTER_HOME=$PWD/.dagster "
# what Dagster prints when a command is superseded by `dg` ("SupersessionWarning: Function `dev_command` is
# superseded ... Use 'dg dev' instead.") or deprecated; dbt's own deprecation names (…Deprecation) are not Dagster's
SUPERSEDED = re.compile(r"SupersessionWarning|DeprecationWarning|superseded|Use 'dg ")


def readme_dagster_commands() -> list[str]:
    """The lines of the README's block of Dagster commands without the UI, comments dropped."""
    section = README.read_text(encoding="utf-8").split("\nWithout the UI, from the repo root:\n", 1)[1]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    return [line.split("  #", 1)[0].strip() for line in block.splitlines() if line.strip()]


def readme_command(start: str) -> str:
    """The README's command that starts with `start` (after the instance's variable), as written."""
    found = [line for line in readme_dagster_commands() if line.removeprefix(README_HOME).startswith(start)]
    assert len(found) == 1, (start, readme_dagster_commands())
    return found[0]


def shell_env(env: dict[str, str]) -> dict[str, str]:
    """The test's environment with `env`, and this interpreter's scripts (`dg`, `dbt`) first on PATH."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", os.defpath)])
    return {**os.environ, **env, "PATH": path}


def shell(command: str, env: dict[str, str], timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """`command` in bash from the repo root, with the module's environment."""
    return subprocess.run(
        ["bash", "-c", command],
        cwd=REPO,
        env=shell_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def orchestrated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orchestrated]:
    root = tmp_path_factory.mktemp("dagster")
    env = orchestration_env(root)
    home = Path(env["DAGSTER_HOME"])
    home.mkdir()
    # the checkout's instance configuration (run queue and pool limits), as `dg dev` would use it
    shutil.copy(REPO / ".dagster" / "dagster.yaml", home / "dagster.yaml")

    # the first run: the README's command, with the module's instance and a small simulator scale
    launch = readme_command("dg launch --job")
    command = launch.removeprefix(README_HOME) + f" --config-json {shlex.quote(json.dumps(capture_config(SCALE)))}"
    launched = shell(command, env)
    launched_output = launched.stdout + launched.stderr
    assert launched.returncode == 0, launched_output[-6000:]
    assert not SUPERSEDED.search(launched_output), launched_output[-6000:]
    with pytest.MonkeyPatch.context() as patch:
        # dbt, run by dagster-dbt in a subprocess, reads the lake and the warehouse from the environment
        for name, value in env.items():
            patch.setenv(name, value)
        settings = Settings.from_env()
        job = build_definitions(settings).resolve_job_def(JOB_NAME)
        with dg.DagsterInstance.from_config(str(home)) as instance:
            runs = instance.get_runs()
            assert [(r.job_name, r.status) for r in runs] == [(JOB_NAME, dg.DagsterRunStatus.SUCCESS)], runs
            run_ids = [runs[0].run_id]
            for _ in range(RUNS - 1):
                result = job.execute_in_process(instance=instance, run_config=capture_config(SCALE))
                assert result.success
                run_ids.append(result.run_id)
        yield Orchestrated(home, env, settings, run_ids)


@pytest.mark.parametrize("start", ["dg list defs", "dg check defs"])
def test_a_readme_dg_command_runs_from_the_repo_root(orchestrated: Orchestrated, start: str) -> None:
    command = readme_command(start)
    assert command == start, "the README's command takes no module option: [tool.dg] names the definitions"
    manifest = Path(orchestrated.env["LAGO_DBT_TARGET_PATH"]) / "manifest.json"
    prepared = (manifest.stat().st_mtime_ns, json.loads(manifest.read_text(encoding="utf-8"))["metadata"])
    ran = shell(command, {**orchestrated.env, "COLUMNS": "250"})
    ran_output = ran.stdout + ran.stderr
    assert ran.returncode == 0, ran_output[-6000:]
    assert not SUPERSEDED.search(ran_output), ran_output[-6000:]
    # `dg` runs everything as development: the project, unchanged since the launch parsed it, is not parsed again
    # (dagster-dbt's own preparation, `dbt deps` and `dbt parse`, would rewrite the manifest; orchestration/manifest.py)
    assert (manifest.stat().st_mtime_ns, json.loads(manifest.read_text(encoding="utf-8"))["metadata"]) == prepared
    if start == "dg list defs":
        # the definitions were found: the job, the schedule and a capture asset of each source are listed
        for name in (JOB_NAME, "capture_then_build_schedule", "loyalty/clientes", "hotmart/purchase"):
            assert name in ran.stdout, (name, ran.stdout[-6000:])


def events_of(instance: dg.DagsterInstance, run_id: str, kind: dg.DagsterEventType) -> list[dg.EventLogEntry]:
    return list(instance.all_logs(run_id, of_type=kind))


def test_the_job_captures_and_builds_every_asset(orchestrated: Orchestrated) -> None:
    settings = orchestrated.settings
    defs = build_definitions(settings)
    graph = defs.resolve_asset_graph()
    job_keys = set(defs.resolve_job_def(JOB_NAME).asset_layer.selected_asset_keys)
    catalog = load_catalog()
    capture_keys = {dg.AssetKey([t.source, t.name]) for s in catalog.sources.values() for t in s.tables.values()}
    assert capture_keys <= job_keys
    # the graph joins capture to dbt: each source table is a parent of its Bronze model
    for key in capture_keys:
        children = {c.path[-1] for c in graph.get(key).child_keys}
        assert f"bronze_{key.path[0]}__{key.path[1]}" in children, (key, children)

    with dg.DagsterInstance.from_config(str(orchestrated.home)) as instance:
        for run_id in orchestrated.run_ids:
            materialised = {
                e.asset_materialization.asset_key
                for e in events_of(instance, run_id, dg.DagsterEventType.ASSET_MATERIALIZATION)
                if e.asset_materialization is not None
            }
            assert job_keys <= materialised, job_keys - materialised
        last = orchestrated.run_ids[-1]
        captures = {
            e.asset_materialization.asset_key: e.asset_materialization.metadata
            for e in events_of(instance, last, dg.DagsterEventType.ASSET_MATERIALIZATION)
            if e.asset_materialization is not None and e.asset_materialization.asset_key in capture_keys
        }
        dbt_timings = [
            e.asset_materialization.metadata.get("Execution Duration")
            for e in events_of(instance, last, dg.DagsterEventType.ASSET_MATERIALIZATION)
            if e.asset_materialization is not None and e.asset_materialization.asset_key not in capture_keys
        ]
        checks = [
            e.dagster_event.event_specific_data
            for e in events_of(instance, last, dg.DagsterEventType.ASSET_CHECK_EVALUATION)
            if e.dagster_event is not None
        ]
        observed = {
            e.asset_observation.asset_key.path[-1]: e.asset_observation.metadata
            for e in events_of(instance, last, dg.DagsterEventType.ASSET_OBSERVATION)
            if e.asset_observation is not None
        }

    # the second run's captures are changes on the first: counts and sequences in the run history
    lake = open_lake(settings.lake_uri)
    loyalty = catalog.source("loyalty")
    for table in loyalty.tables.values():
        metadata = captures[dg.AssetKey(["loyalty", table.name])]
        state = load_state(lake, table)
        record = state.last_capture
        assert record is not None and record.kind == "cdc"
        assert metadata["kind"].value == "cdc"
        assert metadata["rows"].value == record.snapshot_rows
        assert (metadata["inserts"].value, metadata["updates"].value, metadata["deletes"].value) == (
            record.inserts,
            record.updates,
            record.deletes,
        )
        assert metadata["last_sequence"].value == state.last_sequence
    assert sum(captures[dg.AssetKey(["loyalty", "clientes"])][k].value for k in ("inserts", "updates", "deletes"))

    # dbt's own timing of every model, snapshot and seed
    assert dbt_timings and all(t is not None and t.value >= 0 for t in dbt_timings), dbt_timings
    # dbt tests as asset checks: every check of the graph evaluated in the run, all passed
    expected_checks = {key.name for key in graph.asset_check_keys}
    assert len(expected_checks) >= 25, expected_checks
    assert {c.check_name for c in checks} == expected_checks, expected_checks ^ {c.check_name for c in checks}
    failed = [c.check_name for c in checks if not c.passed]
    assert not failed, failed

    # each table the build published into the lake: its location, Delta version and freshness, on its asset
    tables = PublishedTables(settings.lake_uri)
    for schema, name in (
        ("gold", "gold_points_daily_cube"),
        ("gold", "gold_points_monthly_report"),
        ("gold", "gold_gmv_daily_history"),
        ("silver", "silver_loyalty__customers"),
    ):
        version = tables.version(schema, name)
        assert version is not None and observed[name]["delta_version"].value == version, observed.get(name)
        assert observed[name]["published_table"].value == tables.location(schema, name)
        assert observed[name]["freshness"].value == "fresh", observed[name]
        assert observed[name]["built_at"].value >= observed[name]["last_capture"].value, observed[name]


def test_bronze_equals_the_captured_state(orchestrated: Orchestrated) -> None:
    lake = open_lake(orchestrated.settings.lake_uri)
    with duckdb.connect(orchestrated.settings.duckdb_path, read_only=True) as con:
        for table in load_catalog().source("loyalty").tables.values():
            snapshot = load_state(lake, table).snapshot_key
            assert snapshot is not None
            columns = ", ".join(f'"{c}"' for c in table.column_names)
            captured = f"read_parquet('{lake.uri_for(snapshot)}')"
            bronze = f"bronze.bronze_loyalty__{table.name}"
            missing, extra, rows = con.execute(
                f"""
                select
                    (select count(*) from (select {columns} from {captured} except all select {columns} from {bronze})),
                    (select count(*) from (select {columns} from {bronze} except all select {columns} from {captured})),
                    (select count(*) from {bronze})
                """
            ).fetchone() or (None, None, None)
            assert (missing, extra) == (0, 0), f"{table.name}: {missing} rows missing, {extra} extra"
            assert rows


# -- the webserver and its asset graph in a browser ---------------------------------------------------------------

GOLD_KEY = ("gold", "gold_points_daily_cube")
# one path through every layer, from a captured table to the mart
CHAIN = (
    ("capture", "transacoes"),
    ("bronze", "bronze_loyalty__transacoes"),
    ("silver", "silver_loyalty__transactions"),
    ("gold", "gold_points_daily_cube"),
)
SCREENSHOT = REPO / "docs" / "images" / "dagster_lineage.png"
VIEWPORT = (1600, 1000)
# any host but loopback resolves nowhere: the UI must work offline
HOST_RULES = "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"

# The asset graph is one SVG: each node a <foreignObject> (its label middle-truncated to fit), each edge a
# <path> from the right side of one node to the left side of the next. A small graph is drawn at full size (a
# status row, "Materialized <time>"), a large one zoomed out (a coloured box, `--minimal-bg`).
GRAPH_JS = """
(() => {
  const objects = [...document.querySelectorAll('foreignObject')];
  if (!objects.length) return null;
  const box = f => ['x', 'y', 'width', 'height'].map(a => parseFloat(f.getAttribute(a)));
  const nodes = objects
    .map(f => ({f, name: f.querySelector('[class*="AssetNode_assetName"]')}))
    .filter(n => n.name)
    .map(n => ({
      label: n.name.textContent, box: box(n.f),
      style: (n.f.querySelector('[style*="--minimal-bg"]') || n.f).getAttribute('style') || '',
      text: n.f.textContent,
    }));
  const groups = objects.filter(f => !f.querySelector('[class*="AssetNode_assetName"]'))
    .map(f => ({label: f.textContent.trim(), box: box(f)}));
  const svg = objects[0].ownerSVGElement;
  const edges = [...svg.querySelectorAll('path')].map(p => p.getAttribute('d'))
    .map(d => d.match(/^M\\s*([-\\d.]+)[ ,]([-\\d.]+).*[ ,C]([-\\d.]+)[ ,]([-\\d.]+)$/))
    .filter(Boolean).map(m => m.slice(1).map(parseFloat));
  return {nodes, groups, edges};
})()
"""


# seconds a dev server may take to stop on SIGTERM: dagster gives its webserver and daemon 60 s each at most
STOP_SECONDS = 60


@dataclass
class DevServer:
    """The README's background `dg dev`, started by a bash script that waits for a file, then runs `kill $!`."""

    url: str
    log: Path
    stop_file: Path
    script: subprocess.Popen[bytes]
    pid: int


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/server_info", timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def dev_server(orchestrated: Orchestrated, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    """The README's background line as written, but for the module's instance, a free port and a log of the test's.

    bash runs it without job control, as any script does: the background job starts with SIGINT ignored.
    """
    folder = tmp_path_factory.mktemp("dg-dev")
    port = free_port()
    log, pid_file, stop_file = folder / "dev.log", folder / "dev.pid", folder / "stop"
    background = readme_command("(trap - INT;")
    assert "exec dg dev)" in background and background.endswith("&"), background
    started = (
        background.replace(README_HOME, "")
        .replace("exec dg dev)", f"exec dg dev -h 127.0.0.1 -p {port})")
        .replace(".dagster/dev.log", shlex.quote(str(log)))
    )
    kill = readme_command("kill")
    assert kill == "kill $!", kill
    script = "\n".join(
        [
            started,
            f"echo $! > {shlex.quote(str(pid_file))}",
            f"while [ ! -e {shlex.quote(str(stop_file))} ]; do sleep 0.2; done",
            kill,
            "wait $!",
        ]
    )
    process = subprocess.Popen(
        ["bash", "-c", script],
        cwd=REPO,
        env=shell_env(orchestrated.env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while not _answers(url):
            if process.poll() is not None:
                raise AssertionError(f"dg dev exited:\n{log.read_text()[-3000:] if log.exists() else ''}")
            if time.monotonic() > deadline:
                raise AssertionError(f"dg dev did not answer:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield DevServer(url, log, stop_file, process, int(pid_file.read_text()))
    finally:
        stop_file.touch()
        try:
            process.wait(timeout=STOP_SECONDS + 30)
        except subprocess.TimeoutExpired:
            # the server and everything it started share the script's process group
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def graphql(url: str, query: str) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{url}/graphql", data=json.dumps({"query": query}).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        body: dict[str, Any] = json.load(answer)
    assert "errors" not in body, body
    data: dict[str, Any] = body["data"]
    return data


def label_fits(label: str, name: str) -> bool:
    """The UI middle-truncates long names: `bronz…__transacoes` stands for `bronze_loyalty__transacoes`."""
    head, _, tail = label.partition("…")
    return label == name or (bool(_) and name.startswith(head) and name.endswith(tail))


def inside(point: tuple[float, float], box: list[float], side: str) -> bool:
    x, y = point
    left, top, width, height = box
    edge_x = left + width if side == "right" else left
    return abs(x - edge_x) <= 12 and top <= y <= top + height


def test_the_dev_server_serves_the_run_history(orchestrated: Orchestrated, dev_server: DevServer) -> None:
    # the server's view of the history: both runs succeeded and the mart's last materialisation is the last run
    gold_path = json.dumps(list(GOLD_KEY))
    data = graphql(
        dev_server.url,
        "{ runsOrError { ... on Runs { results { runId status } } } "
        f"assetNodes(assetKeys: [{{path: {gold_path}}}]) {{ assetMaterializations(limit: 1) {{ runId }} }} }}",
    )
    statuses = {run["runId"]: run["status"] for run in data["runsOrError"]["results"]}
    assert all(statuses.get(run_id) == "SUCCESS" for run_id in orchestrated.run_ids), statuses
    assert len(statuses) == RUNS, statuses
    assert data["assetNodes"][0]["assetMaterializations"][0]["runId"] == orchestrated.run_ids[-1]
    started = dev_server.log.read_text()
    assert "Launching Dagster services" in started, started[-3000:]
    assert not SUPERSEDED.search(started), started[-3000:]


def test_the_webserver_shows_capture_bronze_and_gold_joined(dev_server: DevServer, tmp_path: Path) -> None:
    executable = chromium_executable()
    if executable is None:
        if os.environ.get("CI"):
            pytest.fail("CI must install Debian's chromium (see .ci/run)")
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium)")
    url = dev_server.url
    # a first visit to a local UI opens a newsletter dialog over the graph: mark it seen, as "Skip" does
    graphql(url, "mutation { setNuxSeen }")

    with Chromium(
        tmp_path / "chromium",
        executable=executable,
        width=VIEWPORT[0],
        height=VIEWPORT[1],
        extra_flags=(HOST_RULES,),
    ) as browser:
        page = browser.open_page()
        page.navigate(f"{url}/assets/{'/'.join(GOLD_KEY)}?view=lineage&lineageScope=upstream&lineageDepth=10")
        expected = {name for _, name in CHAIN}
        previous: Any = None
        # the layout is done when the chain's nodes are drawn and two looks a second apart agree
        deadline = time.monotonic() + 90
        while True:
            graph = page.evaluate(GRAPH_JS)
            labels = [n["label"] for n in graph["nodes"]] if graph else []
            drawn = all(any(label_fits(label, name) for label in labels) for name in expected)
            loading = any("Loading" in n["text"] for n in graph["nodes"]) if graph else True
            if drawn and not loading and graph == previous:
                break
            assert time.monotonic() < deadline, f"the lineage did not settle; nodes drawn: {labels}"
            previous = graph
            time.sleep(1)
        shot = page.screenshot(tmp_path / "dagster_lineage.png")

    def node(group: str, name: str) -> dict[str, Any]:
        group_box = next(g["box"] for g in graph["groups"] if g["label"] == group)
        found = [
            n
            for n in graph["nodes"]
            if label_fits(n["label"], name)
            and group_box[0] <= n["box"][0] <= group_box[0] + group_box[2]
            and group_box[1] <= n["box"][1] <= group_box[1] + group_box[3]
        ]
        assert len(found) == 1, (group, name, found)
        return found[0]

    chain = [node(group, name) for group, name in CHAIN]
    for upstream, downstream in itertools.pairwise(chain):
        joined = [
            e
            for e in graph["edges"]
            if inside((e[0], e[1]), upstream["box"], "right") and inside((e[2], e[3]), downstream["box"], "left")
        ]
        assert joined, f"no edge drawn from {upstream['label']} to {downstream['label']}"
    # drawn as materialised (a green box, or the status row), not as never materialised or failed
    for drawn_node in chain:
        full_size = "Materialized" in drawn_node["text"] and not re.search("Never|Failed", drawn_node["text"])
        assert "green" in drawn_node["style"] or full_size, drawn_node

    if os.environ.get("UPDATE_DAGSTER_SCREENSHOT") == "1":
        shutil.copy(shot, SCREENSHOT)


def test_kill_stops_the_background_dev_server(dev_server: DevServer) -> None:
    """Last in the module: the README's `kill $!` ends `dg dev`, its webserver, daemon and code server."""
    assert dev_server.script.poll() is None, "the dev server stopped before the test"
    began = time.monotonic()
    dev_server.stop_file.touch()
    try:
        dev_server.script.wait(timeout=STOP_SECONDS)
    except subprocess.TimeoutExpired:
        pytest.fail(f"dg dev still runs {STOP_SECONDS} s after SIGTERM:\n{dev_server.log.read_text()[-3000:]}")
    seconds = time.monotonic() - began
    with contextlib.suppress(ProcessLookupError):
        os.kill(dev_server.pid, 0)
        pytest.fail(f"dg dev (pid {dev_server.pid}) outlived the script that waited for it")
    assert not _answers(dev_server.url), "the webserver still answers"
    log = dev_server.log.read_text()
    assert "Dagster services shut down." in log, log[-3000:]
    # nothing the server started outlives it for long (its code server may finish a call in flight first)
    while left := group_members(dev_server.script.pid):
        assert time.monotonic() - began < STOP_SECONDS, f"still running after SIGTERM: {left}"
        time.sleep(0.5)
    print(f"dg dev stopped {seconds:.1f} s after SIGTERM, everything it started {time.monotonic() - began:.1f} s")


def group_members(group: int) -> list[str]:
    """The command lines of the live processes of a process group (zombies, already ended, left out)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            # pid (comm) state ppid pgrp ...: comm may hold spaces, so split after its closing parenthesis
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if fields[0] != "Z" and int(fields[2]) == group:
                members.append((stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()[:200])
    return members
