"""The dbt docs and lineage site (issue 3, point 8), end to end on a tiny warehouse.

A simulator capture at `--scale 200`, `dbt build` without its tests and `dbt docs generate` into a tmp target
folder, then `dbt docs serve` on a free loopback port and Debian's headless Chromium (driven over the DevTools pipe,
headless_chromium.py) on the lineage of a gold model:

- the rendered lineage graph of `gold_points_daily_cube` shows every silver, bronze and source ancestor the
  manifest gives it, on screen, in its layer's colour; the screenshot is kept in pytest's tmp folder
  (`UPDATE_LINEAGE_SCREENSHOT=1` also copies it to docs/images/lineage.png);
- the page asks nothing of any host but the docs server (no CDN, no tracker);
- index.html loads no script, style or image from another host;
- manifest.json: the node colour of each layer, and a description for every model and every column (declared
  or found in the warehouse by catalog.json); every public macro of the project (and generic test) described, with
  each argument its signature declares (macros/_macros.yml).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit

import jinja2
import jinja2.nodes
import pytest
from headless_chromium import BrowserError, Chromium, chromium_executable
from support.cli import ingest
from support.dbt import Dbt
from support.net import free_port

pytestmark = [pytest.mark.dbt, pytest.mark.docs]

REPO = Path(__file__).resolve().parents[2]
SCALE = 200
SEED = 7

GOLD_MODEL = "gold_points_daily_cube"
# named in the issue; the full set of expected ancestors comes from the manifest
MUST_SHOW = ("silver_loyalty__transactions", "bronze_loyalty__transacoes")
LAYER_COLOURS = {"bronze": "#cd7f32", "history": "#7b3f00", "silver": "silver", "gold": "gold"}
SCREENSHOT = REPO / "docs" / "images" / "lineage.png"
VIEWPORT = (1280, 640)

# Everything the browser asks of the network is recorded; any host but loopback resolves nowhere, so a CDN or a
# tracker fails fast instead of leaving the test machine.
HOST_RULES = "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"

# The cytoscape instance of the lineage graph that shows nodes, and what it renders for the gold model.
LINEAGE_JS = """
(() => {
  const graphs = [...document.querySelectorAll('#cy')].map(e => e._cyreg && e._cyreg.cy).filter(Boolean);
  const cy = graphs.find(g => g.nodes(':visible').some(n => n.data('label') === %(model)s));
  if (!cy) return null;
  const box = cy.container().getBoundingClientRect();
  const node = n => {
    const bb = n.renderedBoundingBox();
    return {
      id: n.id(), label: n.data('label'), colour: n.style('background-color'),
      box: [bb.x1, bb.y1, bb.x2, bb.y2].map(Math.round),
      on_screen: n.visible() && bb.x1 >= 0 && bb.y1 >= 0 && bb.x2 <= box.width && bb.y2 <= box.height,
    };
  };
  const gold = cy.nodes(':visible').filter(n => n.data('label') === %(model)s);
  return {
    nodes: cy.nodes(':visible').map(node),
    ancestors: gold.predecessors('node:visible').map(n => n.id()),
    // where the nodes are drawn: stable once the layout, the fit and the panel's size have settled
    view: [box.width, box.height, ...cy.nodes(':visible').map(n => {
      const p = n.renderedPosition();
      return [Math.round(p.x), Math.round(p.y)];
    })],
    panel: {x: box.x, y: box.y, width: box.width, height: box.height},
  };
})()
"""


@pytest.fixture(scope="module")
def docs(tmp_path_factory: pytest.TempPathFactory) -> Dbt:
    """A tiny lake and warehouse, then `dbt docs generate` (catalog.json needs the tables to exist)."""
    # The site must be self-contained with the project's own settings, not thanks to the caller's opt-outs: no
    # DO_NOT_TRACK (a `Dbt` passes on none of the caller's DBT_* variables, DBT_SEND_ANONYMOUS_USAGE_STATS included).
    site = Dbt.at(tmp_path_factory.mktemp("dbt_docs"), env={"DO_NOT_TRACK": None})
    captured = ingest(site.lake, "--scale", str(SCALE), "--seed", str(SEED), timeout=120)
    assert captured.returncode == 0, captured.stderr[-3000:]
    # models and the snapshot a Gold mart reads (`dbt run` alone takes no snapshot); the tests are other files'
    site.build("--exclude-resource-type", "test", "--exclude-resource-type", "unit_test", timeout=300, check=True)
    site("docs", "generate", timeout=300, check=True)
    return site


def stop_group(process: subprocess.Popen[bytes], timeout: float = 10) -> None:
    """End a process started with start_new_session=True, and everything in its process group."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=timeout)
            return
        except subprocess.TimeoutExpired:
            continue


def serving(url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> bool:
    """Wait until `url` answers 200 (True) or the server exits (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass  # not listening yet
        time.sleep(0.2)
    raise AssertionError(f"dbt docs serve did not answer on {url} within {timeout}s")


@pytest.fixture(scope="module")
def site(docs: Dbt) -> Iterator[str]:
    """`dbt docs serve` on a free loopback port; the site's base URL."""
    log = docs.work / "serve.log"
    for _ in range(3):  # another process may take the free port before dbt binds it
        port = free_port()
        command = docs.command("docs", "serve", "--host", "127.0.0.1", "--port", str(port), "--no-browser")
        with log.open("wb") as out:
            server = subprocess.Popen(
                command,
                cwd=docs.project,
                env=docs.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
            )
        try:
            if serving(f"http://127.0.0.1:{port}/manifest.json", server):
                yield f"http://127.0.0.1:{port}/"
                return
        finally:
            stop_group(server)
        if "Address already in use" not in log.read_text():
            break
    raise AssertionError(f"dbt docs serve exited ({server.returncode}):\n{log.read_text()[-3000:]}")


@dataclass
class Lineage:
    """What the browser rendered for the gold model's lineage, and every URL the page requested."""

    nodes: list[dict[str, Any]]
    ancestors: list[str]
    panel: dict[str, float]
    requests: list[str]
    screenshot: Path


@pytest.fixture(scope="module")
def lineage(site: str, tmp_path_factory: pytest.TempPathFactory) -> Lineage:
    """The model page of the gold model with its lineage graph open, as a user gets it from the graph button."""
    if chromium_executable() is None:
        if os.environ.get("CI"):
            pytest.fail("Chromium is required in CI (Debian package `chromium`)")
        pytest.skip("no Chromium: install Debian's `chromium` or set CHROMIUM")
    folder = tmp_path_factory.mktemp("chromium")
    selection = quote(f"+{GOLD_MODEL}+")
    url = f"{site}#!/model/model.lago_mago.{GOLD_MODEL}?g_v=1&g_i={selection}"
    width, height = VIEWPORT
    with Chromium(folder / "profile", width=width, height=height, extra_flags=(HOST_RULES,)) as browser:
        page = browser.open_page()
        page.navigate(url)
        script = LINEAGE_JS % {"model": json.dumps(GOLD_MODEL)}
        try:
            rendered = page.wait_for(script, timeout=45)
            # the graph is drawn for good when three looks in a row find every node at the same place
            deadline, steady = time.monotonic() + 15, 0
            while steady < 2 and time.monotonic() < deadline:
                time.sleep(0.3)
                again = page.evaluate(script)
                steady = steady + 1 if again["view"] == rendered["view"] else 0
                rendered = again
        except BrowserError:
            page.screenshot(folder / "failed.png")
            raise
        shot = page.screenshot(folder / "lineage.png")
        requests = [event["request"]["url"] for event in page.events("Network.requestWillBeSent")]
    if os.environ.get("UPDATE_LINEAGE_SCREENSHOT"):
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, SCREENSHOT)
    return Lineage(rendered["nodes"], rendered["ancestors"], rendered["panel"], requests, shot)


def manifest_ancestors(manifest: dict[str, Any], unique_id: str) -> set[str]:
    """Every model, snapshot, seed and source upstream of a node, by the manifest's parent map."""
    seen: set[str] = set()
    todo = [unique_id]
    while todo:
        for parent in manifest["parent_map"].get(todo.pop(), []):
            if parent not in seen:
                seen.add(parent)
                todo.append(parent)
    return {node for node in seen if node.split(".")[0] in ("model", "snapshot", "seed", "source")}


def test_lineage_of_a_gold_model_shows_its_silver_and_bronze_ancestors(docs: Dbt, lineage: Lineage) -> None:
    assert lineage.screenshot.stat().st_size > 10_000, "the screenshot is empty"
    by_id = {node["id"]: node for node in lineage.nodes}
    labels = {node["label"] for node in lineage.nodes}
    missing = [name for name in (GOLD_MODEL, *MUST_SHOW) if name not in labels]
    assert not missing, f"not in the rendered lineage: {missing}; rendered: {sorted(labels)}"

    gold_id = f"model.lago_mago.{GOLD_MODEL}"
    expected = manifest_ancestors(docs.artifact("manifest.json"), gold_id)
    assert {i.split(".")[-1] for i in expected} >= set(MUST_SHOW), "the manifest lost the expected lineage"
    rendered = set(lineage.ancestors)
    assert rendered == expected, (
        f"ancestors the graph lacks: {sorted(expected - rendered)}; extra: {sorted(rendered - expected)}"
    )
    off_screen = sorted((by_id[i]["label"], by_id[i]["box"]) for i in expected | {gold_id} if not by_id[i]["on_screen"])
    assert not off_screen, f"outside the visible graph ({lineage.panel}): {off_screen}"

    layers: dict[str, set[str]] = {layer: set() for layer in LAYER_COLOURS}
    for node_id in expected | {gold_id}:
        name = node_id.split(".")[-1]
        layer = name.split("_", 1)[0]
        if node_id.startswith("model.") and layer in layers:
            layers[layer].add(name)
    assert layers["silver"] and layers["bronze"], f"no silver or bronze ancestor: {layers}"
    wrong = [
        f"{name}: {by_id[f'model.lago_mago.{name}']['colour']} (expected {LAYER_COLOURS[layer]})"
        for layer, names in layers.items()
        for name in sorted(names)
        if by_id[f"model.lago_mago.{name}"]["colour"] != LAYER_COLOURS[layer]
    ]
    assert not wrong, f"rendered in another colour than their layer's: {wrong}"


def test_every_model_reads_its_source_or_the_layer_below(docs: Dbt) -> None:
    """Business models only in the lineage: Bronze and history read sources, Silver reads Bronze, Gold reads Silver or
    Gold (or a snapshot of Gold); the CDC engine's state tables are no model's parents."""
    manifest = docs.artifact("manifest.json")
    below = {
        "bronze": ("source",),
        "history": ("source",),
        "silver": ("bronze",),
        "gold": ("silver", "gold", "snapshot"),
    }
    wrong = []
    models = [node for node in manifest["nodes"].values() if node["resource_type"] == "model"]
    for node in models:
        layer = node["fqn"][1]
        for parent in node["depends_on"]["nodes"]:
            kind = parent.split(".")[0]
            parent_layer = kind if kind in ("source", "snapshot") else manifest["nodes"][parent]["fqn"][1]
            if parent_layer not in below[layer]:
                wrong.append(f"{node['name']} ({layer}) reads {parent} ({parent_layer})")
    assert len(models) >= 20 and not wrong, wrong


def test_site_requests_nothing_beyond_the_docs_server(site: str, lineage: Lineage) -> None:
    assert any(url.startswith(site) for url in lineage.requests), lineage.requests
    local = urlsplit(site).netloc
    external = sorted(
        {url for url in lineage.requests if urlsplit(url).scheme in ("http", "https", "ws", "wss")}
        - {url for url in lineage.requests if urlsplit(url).netloc == local}
    )
    assert not external, (
        f"the docs site requests other hosts: {external}. dbt docs loads Snowplow's tracker from a CDN unless "
        "`flags: {send_anonymous_usage_stats: false}` is set in dbt_project.yml"
    )


class ExternalResources(HTMLParser):
    """Every URL of another host that the HTML itself makes the browser load (scripts, styles, images, frames)."""

    LOADING: ClassVar[dict[str, str]] = {
        "script": "src",
        "img": "src",
        "iframe": "src",
        "source": "src",
        "embed": "src",
        "object": "data",
    }
    # <link rel> values that make the browser fetch the href
    FETCHING_RELS: ClassVar[set[str]] = {
        "stylesheet",
        "icon",
        "shortcut",
        "preload",
        "prefetch",
        "modulepreload",
        "manifest",
        "import",
    }

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self._in_style = False

    @staticmethod
    def is_external(url: str) -> bool:
        url = url.strip().strip("'\"").lower()
        return url.startswith(("http://", "https://", "//"))

    def css_urls(self, css: str, where: str) -> None:
        """url(...) and @import of another host in CSS."""
        for part in css.split("url(")[1:] + css.split("@import")[1:]:
            if self.is_external(part):
                self.found.append(f"{where} {part.strip()[:100]}")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        url = values.get(self.LOADING.get(tag, ""), "")
        if tag == "link" and self.FETCHING_RELS & set(values.get("rel", "").lower().split()):
            url = values.get("href", "")
        if url and self.is_external(url):
            self.found.append(f"<{tag}> {url}")
        self.css_urls(values.get("style", ""), f"<{tag} style>")
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.css_urls(data, "<style>")


def test_index_html_is_self_contained(docs: Dbt, site: str) -> None:
    with urllib.request.urlopen(site, timeout=10) as answer:
        served = answer.read().decode()
    assert served == (docs.target_path / "index.html").read_text(), "the server serves another index.html"
    parser = ExternalResources()
    parser.feed(served)
    parser.close()
    assert not parser.found, f"index.html loads from other hosts: {parser.found}"


def models(manifest: dict[str, Any], kinds: tuple[str, ...] = ("model",)) -> dict[str, dict[str, Any]]:
    return {
        uid: node
        for uid, node in manifest["nodes"].items()
        if node["resource_type"] in kinds and node["package_name"] == "lago_mago"
    }


def test_node_colours_per_layer(docs: Dbt) -> None:
    wrong = []
    for node in models(docs.artifact("manifest.json")).values():
        layer = node["fqn"][1]  # the folder under models/
        colour = node["docs"]["node_color"]
        if LAYER_COLOURS.get(layer) != colour:
            wrong.append(f"{node['name']} (models/{layer}): {colour!r}, expected {LAYER_COLOURS.get(layer)!r}")
    assert not wrong, "node colours not of their layer:\n" + "\n".join(wrong)


def test_every_model_and_column_has_a_description(docs: Dbt) -> None:
    """Models and snapshots; columns are those declared in the YAML and those the built table really has
    (catalog.json)."""
    catalog = docs.artifact("catalog.json")["nodes"]
    lacking = []
    described = models(docs.artifact("manifest.json"), ("model", "snapshot"))
    assert any(node["resource_type"] == "snapshot" for node in described.values())
    for uid, node in sorted(described.items()):
        if not node["description"].strip():
            lacking.append(f"model {node['name']}")
        declared = {name.lower(): column for name, column in node["columns"].items()}
        built = catalog.get(uid, {}).get("columns", {})
        if node["config"]["materialized"] != "ephemeral" and not built:
            lacking.append(f"model {node['name']}: not in catalog.json (not built?)")
        for name in sorted({*declared, *(column.lower() for column in built)}):
            if not declared.get(name, {}).get("description", "").strip():
                lacking.append(f"column {node['name']}.{name}")
    assert not lacking, f"{len(lacking)} without a description:\n" + "\n".join(lacking)


# The opening tag of a macro or a generic test, as the manifest's macro_sql and the project's files hold it.
MACRO_TAG = re.compile(r"\{%-?\s*(macro|test)\s+(\w+)\s*\((.*?)\)\s*-?%\}", re.DOTALL)
# A materialization's opening tag; dbt names its macro materialization_<name>_<adapter> ("default" without one).
MATERIALIZATION_TAG = re.compile(r"\{%-?\s*materialization\s+(\w+)\s*(?:,\s*adapter\s*=\s*['\"](\w+)['\"])?")


def signature(macro_sql: str) -> list[str]:
    """The argument names a macro declares, read by Jinja's own parser (defaults may hold commas and brackets)."""
    if MATERIALIZATION_TAG.match(macro_sql.strip()):
        return []
    tag = MACRO_TAG.match(macro_sql.strip())
    assert tag, f"no macro or test tag opens: {macro_sql[:120]!r}"
    parsed = jinja2.Environment().parse(f"{{% macro signature({tag.group(3)}) %}}{{% endmacro %}}")
    macro = parsed.find(jinja2.nodes.Macro)
    assert macro is not None
    return [argument.name for argument in macro.args]


# each package of this repository, with the folders its macros are written in
MACRO_FOLDERS = {"lago_mago": ("macros", "tests/dbt"), "lago_cdc": ("packages/lago_cdc/macros",)}


def public_macros(manifest: dict[str, Any], package: str) -> dict[str, dict[str, Any]]:
    """A package's macros a caller names: an engine's variant (`default__x`, `spark__x`) is its dispatcher's."""
    return {
        macro["name"]: macro
        for macro in manifest["macros"].values()
        if macro["package_name"] == package and "__" not in macro["name"]
    }


@pytest.mark.parametrize("package", sorted(MACRO_FOLDERS))
def test_every_public_macro_and_argument_has_a_description(docs: Dbt, package: str) -> None:
    macros = public_macros(docs.artifact("manifest.json"), package)
    # the manifest holds every public macro written in the package's macro and test folders, no fewer
    written = {
        ("test_" if kind == "test" else "") + name
        for folder in MACRO_FOLDERS[package]
        for path in (REPO / folder).rglob("*.sql")
        for kind, name, _ in MACRO_TAG.findall(path.read_text())
        if "__" not in name
    } | {
        f"materialization_{name}_{adapter or 'default'}"
        for folder in MACRO_FOLDERS[package]
        for path in (REPO / folder).rglob("*.sql")
        for name, adapter in MATERIALIZATION_TAG.findall(path.read_text())
    }
    assert written and set(macros) == written, f"manifest {sorted(set(macros) ^ written)} differ from the files"
    lacking = []
    for name, macro in sorted(macros.items()):
        where = f"{name} ({macro['original_file_path']})"
        if not macro["description"].strip():
            lacking.append(f"macro {where}: no description")
        declared = signature(macro["macro_sql"])
        described = {argument["name"]: argument for argument in macro["arguments"]}
        for argument in declared:
            entry = described.get(argument, {})
            if not (entry.get("description") or "").strip() or not (entry.get("type") or "").strip():
                lacking.append(f"macro {where}: argument {argument} without a type and a description")
        lacking.extend(
            f"macro {where}: argument {argument} is described but not in the signature {declared}"
            for argument in described
            if argument not in declared
        )
    assert not lacking, f"{len(lacking)} gaps in {MACRO_FOLDERS[package][0]}/_macros.yml:\n" + "\n".join(lacking)
