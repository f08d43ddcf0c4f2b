"""Running reports: Papermill execution, HTML export, results.json, manifest.json and the index.

A run of report ``R`` writes ``OUT/R/RUN_ID/`` holding ``report.ipynb`` (executed), ``report.html`` (no
code), ``results.json`` (the headline numbers recorded with :func:`record`) and ``manifest.json``
(report, parameters, data fingerprint, versions, git commit, timings, status). The run is assembled in a
hidden temporary folder and renamed into place when complete, so a killed run publishes nothing and a
failed run never touches earlier runs. ``OUT/index.html`` lists every run.

Inside a notebook, :func:`record` shows a headline number and marks it for results.json; the runner
collects those marks from the executed notebook (no side channel, so it works the same in JupyterLab).
"""

from __future__ import annotations

import datetime as dt
import html
import json
import math
import os
import platform
import secrets
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from .params import Parameter, ParameterError, notebook_parameters, resolve

RESULT_MIME = "application/vnd.pco.result+json"
REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_NOTEBOOKS = REPO_ROOT / "notebooks"
VERSIONED_PACKAGES = ("pco", "pandas", "numpy", "scipy", "statsmodels", "lifelines", "ibis-framework", "duckdb",
                      "matplotlib", "seaborn", "papermill", "nbconvert")


class ReportError(Exception):
    """A report cannot be run (unknown report, bad data, unwritable output); exit code in ``code``."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


# --------------------------------------------------------------------------------------------------
# Inside notebooks
# --------------------------------------------------------------------------------------------------


RESULT_DIGITS = 10  # significant digits of the numbers in results.json


def _jsonable(value: Any) -> Any:
    """Plain JSON types: numpy scalars to Python, NaN/inf to None, tuples to lists, floats to
    ``RESULT_DIGITS`` significant digits — the engine sums in parallel, so the last bits of a float can differ
    between runs; rounded, the same data and parameters give the same results.json."""
    if hasattr(value, "item") and not isinstance(value, (list, dict, str)):
        try:
            value = value.item()
        except (ValueError, AttributeError):
            pass
    if isinstance(value, float):
        return float(f"{value:.{RESULT_DIGITS}g}") if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if hasattr(value, "isoformat"):  # pandas Timestamp
        return value.isoformat()
    return value


def _format(value: Any, fmt: str | None) -> str:
    if value is None:
        return "–"
    if fmt:
        return format(value, fmt)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def _card(label: str, shown: str) -> str:
    return ('<div class="pco-headline" style="display:inline-block;margin:4px 8px 4px 0;padding:8px 14px;'
            'border:1px solid #d0d7de;border-radius:6px;background:#f6f8fa">'
            f'<div style="font-size:0.8em;color:#57606a">{html.escape(label)}</div>'
            f'<div style="font-size:1.4em;font-weight:600">{html.escape(shown)}</div></div>')


def record(key: str, value: Any, label: str | None = None, fmt: str | None = None, show: bool = True) -> Any:
    """Show a headline number and store it under ``key`` in the run's results.json.

    ``key`` is a stable, documented name (``snake_case``, dots allowed for nesting); ``fmt`` is a Python
    format spec for display only (``",.0f"``, ``".1%"``). Returns ``value`` so it can be used inline.
    """
    from IPython.display import display

    clean = _jsonable(value)
    text = f"{label or key}: {_format(clean, fmt) if not isinstance(clean, (dict, list)) else clean}"
    bundle = {RESULT_MIME: {"key": key, "value": clean}, "text/plain": text if show else ""}
    if show and not isinstance(clean, (dict, list)):
        bundle["text/html"] = _card(label or key, _format(clean, fmt))
    display(bundle, raw=True)
    return value


def record_headlines(items: list[tuple], hidden: dict[str, Any] | None = None) -> None:
    """Record several headline numbers and show them as one row of cards.

    ``items``: tuples ``(key, value, label[, fmt])`` as for :func:`record`; ``hidden``: more results.json
    values (key → value) recorded without a card.
    """
    from IPython.display import HTML, display

    for key, value in (hidden or {}).items():
        record(key, value, show=False)
    cards = []
    for key, value, label, *fmt in items:
        record(key, value, label, fmt[0] if fmt else None, show=False)
        clean = _jsonable(value)
        cards.append(_card(label, _format(clean, fmt[0] if fmt else None)))
    display(HTML(f"<div class='pco-headlines'>{''.join(cards)}</div>"))


def summary_box(points: list[str], title: str | None = None) -> None:
    """The plain-language summary at the top of a report, as a highlighted box (Markdown allowed)."""
    from IPython.display import Markdown, display

    body = "\n".join(f"- {p}" for p in points)
    heading = f"**{title}**\n\n" if title else ""
    display(Markdown(f"<div class='pco-summary' style='border-left:4px solid #0969da;background:#f1f8ff;"
                     f"padding:8px 16px;margin:8px 0'>\n\n{heading}{body}\n\n</div>"))


def collect_results(nb) -> dict[str, Any]:
    """The values recorded with :func:`record` in an executed notebook, as a (nested) dict."""
    results: dict[str, Any] = {}
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            payload = out.get("data", {}).get(RESULT_MIME)
            if payload is None:
                continue
            if isinstance(payload, str):
                payload = json.loads(payload)
            target = results
            *parents, leaf = payload["key"].split(".")
            for part in parents:
                target = target.setdefault(part, {})
            target[leaf] = payload["value"]
    return results


# --------------------------------------------------------------------------------------------------
# Reports and their runs
# --------------------------------------------------------------------------------------------------


def notebooks_dir() -> Path:
    return Path(os.environ.get("PCO_NOTEBOOKS", DEFAULT_NOTEBOOKS))


def list_reports(nb_dir: Path | None = None) -> dict[str, Path]:
    nb_dir = nb_dir or notebooks_dir()
    return {p.stem: p for p in sorted(nb_dir.glob("*.ipynb")) if not p.name.startswith(".")}


def report_notebook(report: str, nb_dir: Path | None = None) -> Path:
    reports = list_reports(nb_dir)
    if report not in reports:
        raise ReportError(f"no report named {report!r}; available: {', '.join(reports) or '(none)'}", code=2)
    return reports[report]


def report_parameters(report: str, nb_dir: Path | None = None) -> list[Parameter]:
    return notebook_parameters(report_notebook(report, nb_dir))


def report_title(path: Path) -> str:
    """The first Markdown heading of a notebook."""
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return path.stem


@dataclass
class RunResult:
    report: str
    run_id: str
    status: str  # "succeeded" or "failed"
    folder: Path
    duration_s: float
    error: str | None = None
    results: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                             timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for pkg in VERSIONED_PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return versions


def _write_json(path: Path, payload: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n")
    os.replace(tmp, path)


TEMPLATES = Path(__file__).parent / "templates"


def _contents(nb) -> tuple[str, list[tuple[str, str]]]:
    """The title (first "# " heading) and the "## " sections with nbconvert's anchors (spaces → "-")."""
    title, toc = "", []
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        for line in cell.source.splitlines():
            if line.startswith("# ") and not title:
                title = line[2:].strip()
            elif line.startswith("## "):
                text = line[3:].strip()
                toc.append((text, text.replace(" ", "-")))
    return title, toc


def _shown(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False) if isinstance(value, list | dict | bool) or value is None \
        else str(value)


def export_html(notebook_path: Path, html_path: Path, manifest: dict | None = None) -> None:
    """The executed notebook as one self-contained HTML page without code: nothing is loaded from the network
    (pco's template drops nbconvert's require.js/MathJax/Mermaid scripts; CSS and figures are inlined), with a
    header (report, data period, run date, parameters), a table of contents and a footer (versions, data
    fingerprint, git commit) taken from the run's ``manifest``."""
    import nbformat
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="pco", extra_template_basedirs=[str(TEMPLATES)], exclude_input=True,
                            exclude_input_prompt=True, exclude_output_prompt=True)
    nb = nbformat.read(str(notebook_path), as_version=4)
    m = manifest or {}
    title, toc = _contents(nb)
    versions = m.get("versions", {})
    page = {
        "report": m.get("report", ""), "run_id": m.get("run_id", ""), "status": m.get("status", ""),
        "error": m.get("error"), "period": m.get("data_period", ""),
        "run_date": _when(m["started_at"]) if m.get("started_at") else "",
        "parameters": [(k, Path(v).name if k == "data_dir" else _shown(v)) for k, v in m.get("parameters", {}).items()],
        "toc": toc, "version": versions.get("pco", ""), "fingerprint": m.get("data_fingerprint"),
        "commit": (m.get("git_commit") or "")[:12] or None,
        "versions": " · ".join(f"{k} {v}" for k, v in versions.items() if k != "pco"),
    }
    nb.metadata["title"] = f"{title} · {m['report']}" if title and m.get("report") else title or m.get("report", "")
    body, _ = exporter.from_notebook_node(nb, resources={"pco": page})
    html_path.write_text(body, encoding="utf-8")


def _check_data(data_dir: Path | str) -> tuple[str, str]:
    """Validate the data folder before any kernel starts; return its fingerprint and the period it covers."""
    from .checks import check_source
    from .data import DataError, connect
    from .overview import observed_period

    try:
        source = connect(data_dir)
    except DataError as exc:
        raise ReportError(f"the data in {data_dir} cannot be read: {exc}", code=1) from None
    report = check_source(source, location=str(data_dir))
    if not report.ok:
        raise ReportError(f"the data in {data_dir} did not pass validation:\n{report.summary()}", code=1)
    first, last = observed_period(source)
    return source.fingerprint(), f"{first:%d %b %Y} – {last:%d %b %Y}"


def run_report(
    report: str,
    data_dir: str | Path | None = None,
    out_dir: str | Path = "reports",
    params: dict[str, Any] | None = None,
    nb_dir: Path | None = None,
    progress: bool = False,
    log: Callable[[str], None] = lambda msg: None,
    pseudonymize: bool = False,
) -> RunResult:
    """Run one report and publish it under ``out_dir/report/RUN_ID``.

    ``pseudonymize``: customer-level CSV files the report writes beside itself get salted hashes instead of
    ids (salt from the ``PCO_PSEUDONYM_SALT`` environment variable, checked before the kernel starts).

    Raises :class:`ReportError` (unknown report, invalid data, unwritable output) or
    :class:`~pco_lib.params.ParameterError` before any kernel starts. A notebook that raises gives a
    published run with status ``failed``; earlier runs are never touched.
    """
    import nbformat
    import papermill as pm

    from .data import CONNECTION_PREFIX

    notebook = report_notebook(report, nb_dir)
    salt = None
    if pseudonymize:
        from .privacy import PseudonymError, pseudonym_salt

        try:
            salt = pseudonym_salt()
        except PseudonymError as exc:
            raise ReportError(str(exc), code=2) from None
    schema = notebook_parameters(notebook)
    values = resolve(schema, params or {}, report=report)
    names = {p.name for p in schema}
    if data_dir is not None:
        if "data_dir" not in names:
            raise ParameterError(f"{report} does not read a data folder (it has no data_dir parameter)")
        values["data_dir"] = (str(data_dir) if str(data_dir).startswith(CONNECTION_PREFIX)
                              else str(Path(data_dir).resolve()))
    full = {p.name: p.default for p in schema} | values

    fingerprint = period = None
    if "data_dir" in full:
        if str(full["data_dir"]).startswith(CONNECTION_PREFIX):  # env:NAME, a database (URL in the environment)
            fingerprint, period = _check_data(full["data_dir"])
        else:
            data_path = Path(full["data_dir"])
            if not data_path.is_absolute():
                data_path = (notebook.parent / data_path).resolve()
                values["data_dir"] = full["data_dir"] = str(data_path)
            fingerprint, period = _check_data(data_path)

    out_dir = Path(out_dir).resolve()  # absolute: Papermill changes the working directory while it runs
    report_dir = out_dir / report
    try:
        report_dir.mkdir(parents=True, exist_ok=True)
        probe = report_dir / f".write-test-{secrets.token_hex(4)}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ReportError(f"cannot write reports to {out_dir}: {exc.strerror or exc}", code=1) from None

    started = dt.datetime.now(dt.UTC)
    run_id = started.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(2)
    staging = report_dir / f".tmp-{run_id}"
    staging.mkdir()
    executed = staging / "report.ipynb"
    t0 = time.perf_counter()
    status, error = "succeeded", None
    log(f"running {report} ({run_id})")
    try:
        pm.execute_notebook(
            str(notebook), str(executed), parameters=values, kernel_name="python3", cwd=str(staging),
            progress_bar=progress, log_output=False, report_mode=False,
        )
    except pm.PapermillExecutionError as exc:
        status = "failed"
        error = f"cell {exc.exec_count}: {exc.ename}: {exc.evalue}"
    except Exception as exc:  # kernel died, notebook unreadable, ...
        status = "failed"
        error = f"{type(exc).__name__}: {exc}"
    duration = time.perf_counter() - t0

    manifest = {
        "report": report,
        "run_id": run_id,
        "status": status,
        "error": error,
        "parameters": full,
        "data_fingerprint": fingerprint,
        "data_period": period,
        "started_at": started.isoformat(timespec="seconds"),
        "duration_s": round(duration, 2),
        "git_commit": _git_commit(),
        "versions": _versions(),
        "platform": platform.platform(),
    }
    results = {}
    if executed.exists():
        try:
            results = collect_results(nbformat.read(str(executed), as_version=4))
            export_html(executed, staging / "report.html", manifest)
        except Exception as exc:  # keep the run debuggable even if export fails
            if manifest["status"] == "succeeded":
                manifest["status"], manifest["error"] = "failed", f"HTML export failed: {exc}"
    status, error = manifest["status"], manifest["error"]
    if salt is not None:
        from .privacy import pseudonymize_csv_files

        manifest["pseudonymized"] = pseudonymize_csv_files(staging, salt)
    _write_json(staging / "results.json", results)
    _write_json(staging / "manifest.json", manifest)
    final = report_dir / run_id
    os.rename(staging, final)  # atomic publish
    write_index(out_dir)
    log(f"{report}: {status} in {duration:.1f}s -> {final / 'report.html'}")
    return RunResult(report, run_id, status, final, duration, error, results)


# --------------------------------------------------------------------------------------------------
# Index
# --------------------------------------------------------------------------------------------------


def list_runs(out_dir: str | Path) -> list[dict]:
    """Every published run's manifest (newest first), with its folder relative to ``out_dir``."""
    out_dir = Path(out_dir)
    runs = []
    for manifest in out_dir.glob("*/*/manifest.json"):
        if manifest.parent.name.startswith("."):
            continue
        try:
            info = json.loads(manifest.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        info["folder"] = manifest.parent.relative_to(out_dir).as_posix()
        runs.append(info)
    return sorted(runs, key=lambda r: (r.get("started_at", ""), r.get("run_id", "")), reverse=True)


def latest_good_run(out_dir: str | Path, report: str) -> dict | None:
    return next((r for r in list_runs(out_dir) if r["report"] == report and r["status"] == "succeeded"), None)


_INDEX_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1100px;color:#1f2328}
h1{font-size:1.6em}h2{font-size:1.2em;margin-top:1.6em}
table{border-collapse:collapse;width:100%;margin:.5em 0}
th,td{text-align:left;padding:6px 10px;border-bottom:1px solid #d0d7de;font-size:.92em}
th{background:#f6f8fa}.succeeded{color:#1a7f37;font-weight:600}.failed{color:#cf222e;font-weight:600}
.muted{color:#57606a;font-size:.9em}
"""


def _when(iso: str) -> str:
    try:
        return dt.datetime.fromisoformat(iso).astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    except (TypeError, ValueError):
        return str(iso)


def write_index(out_dir: str | Path) -> Path:
    """Rewrite ``out_dir/index.html`` (atomically) from the published runs' manifests."""
    out_dir = Path(out_dir)
    runs = list_runs(out_dir)
    by_report: dict[str, list[dict]] = {}
    for run in runs:
        by_report.setdefault(run["report"], []).append(run)
    esc = html.escape
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>pco reports</title>",
        f"<style>{_INDEX_CSS}</style></head><body><h1>pco reports</h1>",
        f"<p class='muted'>Updated {esc(dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC'))}"
        f" · {len(runs)} run{'s' if len(runs) != 1 else ''}</p>",
        "<table><tr><th>Report</th><th>Latest run</th><th>Status</th><th>Latest good report</th></tr>",
    ]
    for report, report_runs in sorted(by_report.items()):
        latest = report_runs[0]
        good = next((r for r in report_runs if r["status"] == "succeeded"), None)
        good_link = (f"<a href='{esc(good['folder'])}/report.html'>{esc(_when(good['started_at']))}</a>"
                     if good else "<span class='muted'>none yet</span>")
        parts.append(
            f"<tr><td><a href='#{esc(report)}'>{esc(report)}</a></td><td>{esc(_when(latest['started_at']))}</td>"
            f"<td class='{esc(latest['status'])}'>{esc(latest['status'])}</td><td>{good_link}</td></tr>"
        )
    parts.append("</table>")
    for report, report_runs in sorted(by_report.items()):
        parts.append(f"<h2 id='{esc(report)}'>{esc(report)}</h2><table><tr><th>Run</th><th>Status</th>"
                     "<th>Duration</th><th>Files</th><th>Error</th></tr>")
        for r in report_runs:
            folder = esc(r["folder"])
            files = " · ".join(f"<a href='{folder}/{name}'>{label}</a>" for name, label in
                               [("report.html", "report"), ("report.ipynb", "notebook"),
                                ("results.json", "results"), ("manifest.json", "manifest")])
            parts.append(
                f"<tr><td>{esc(_when(r['started_at']))}<br><span class='muted'>{esc(r['run_id'])}</span></td>"
                f"<td class='{esc(r['status'])}'>{esc(r['status'])}</td><td>{r.get('duration_s', 0):.1f} s</td>"
                f"<td>{files}</td><td class='muted'>{esc(r.get('error') or '')}</td></tr>"
            )
        parts.append("</table>")
    parts.append("</body></html>\n")
    out_dir.mkdir(parents=True, exist_ok=True)
    index = out_dir / "index.html"
    tmp = out_dir / f".index.html.{secrets.token_hex(4)}.tmp"
    tmp.write_text("\n".join(parts), encoding="utf-8")
    os.replace(tmp, index)
    return index


# --------------------------------------------------------------------------------------------------
# Schedules
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScheduledRun:
    name: str
    report: str
    data: str | None = None
    parameters: dict = field(default_factory=dict)


def read_schedule(path: str | Path) -> list[ScheduledRun]:
    """Named runs from a schedule file (YAML: ``runs: [{name, report, data, parameters}]``).

    A relative ``data`` folder is relative to the current directory, as on the command line.
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ReportError(f"schedule file {path} does not exist", code=2)
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ReportError(f"{path}: not valid YAML ({exc})", code=2) from None
    runs = []
    for i, entry in enumerate(doc.get("runs") or []):
        if not isinstance(entry, dict) or "report" not in entry:
            raise ReportError(f"{path}: run #{i + 1} needs at least a 'report'", code=2)
        unknown = set(entry) - {"name", "report", "data", "parameters"}
        if unknown:
            raise ReportError(f"{path}: run #{i + 1} has unknown keys {sorted(unknown)}", code=2)
        data = str(Path(entry["data"]).resolve()) if entry.get("data") else None
        runs.append(ScheduledRun(entry.get("name") or entry["report"], entry["report"], data,
                                 dict(entry.get("parameters") or {})))
    if not runs:
        raise ReportError(f"{path}: no runs listed under 'runs'", code=2)
    return runs
