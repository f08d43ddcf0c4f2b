"""The index of runs: ``OUT/index.html``, rewritten atomically from the published runs' manifests.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import os
import secrets
from pathlib import Path

from .changes import run_changes
from .html import _run_label, _when


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
    return sorted(runs, key=lambda r: (_started(r), r.get("run_id", "")), reverse=True)


def _started(run: dict) -> dt.datetime:
    """When a run started (microseconds; whole seconds in the manifests of earlier versions)."""
    try:
        return dt.datetime.fromisoformat(run.get("started_at", "")).astimezone(dt.UTC)
    except (TypeError, ValueError):
        return dt.datetime.min.replace(tzinfo=dt.UTC)


SKIPPED_FILE = "skipped.json"


def write_skipped(out_dir: str | Path, skipped: list[dict]) -> None:
    """Record the runs the last ``run-all`` skipped (``name``, ``report``, ``reason``), for the index."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    tmp = out_dir / f".{SKIPPED_FILE}.{secrets.token_hex(4)}.tmp"
    tmp.write_text(json.dumps([{**s, "at": at} for s in skipped], indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, out_dir / SKIPPED_FILE)


def read_skipped(out_dir: str | Path) -> list[dict]:
    try:
        return json.loads((Path(out_dir) / SKIPPED_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return []


def latest_good_run(out_dir: str | Path, report: str) -> dict | None:
    return next((r for r in list_runs(out_dir) if r["report"] == report and r["status"] == "succeeded"), None)


HEADLINES_SHOWN = 3  # headline cards of the latest good run on the index

_INDEX_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1100px;color:#1f2328}
h1{font-size:1.6em}h2{font-size:1.2em;margin-top:1.6em}
table{border-collapse:collapse;width:100%;margin:.5em 0}
th,td{text-align:left;padding:6px 10px;border-bottom:1px solid #d0d7de;font-size:.92em}
th{background:#f6f8fa}.succeeded{color:#1a7f37;font-weight:600}.failed{color:#cf222e;font-weight:600}
.skipped{color:#9a6700;font-weight:600}.changed{color:#9a3412;font-weight:600}
.muted{color:#57606a;font-size:.9em}.scroll{overflow-x:auto}
.filters{margin:.6em 0}.filters button{font:inherit;font-size:.9em;margin:0 6px 6px 0;padding:3px 10px;
border:1px solid #d0d7de;border-radius:14px;background:#fff;color:#1f2328;cursor:pointer}
.filters button[aria-pressed=true]{background:#0969da;border-color:#0969da;color:#fff}
@media (max-width:600px){body{margin:1em .6em}th,td{padding:4px 6px}}
"""
# Without script every row shows; with it, the buttons keep the rows of one status (or those that changed).
_FILTER_JS = """
document.querySelectorAll('.filters button').forEach(function (button) {
  button.addEventListener('click', function () {
    var f = button.dataset.filter;
    document.querySelectorAll('tr[data-status]').forEach(function (row) {
      row.hidden = !(f === 'all' || row.dataset.status === f || (f === 'changed' && row.dataset.changed));
    });
    document.querySelectorAll('.filters button').forEach(function (b) {
      b.setAttribute('aria-pressed', String(b === button));
    });
  });
});
"""


def _filters(statuses: list[str], changed: int) -> str:
    """The status filter buttons above the table of runs, each with its count."""
    counts = [("all", "All", len(statuses))] + [(s, s.capitalize(), statuses.count(s))
                                                for s in ("succeeded", "failed", "skipped") if s in statuses]
    counts += [("changed", "Changed", changed)] if changed else []
    return ("<div class='filters' role='group' aria-label='Show runs by status'>" + "".join(
        f"<button type='button' data-filter='{key}' aria-pressed='{str(key == 'all').lower()}'>{text} "
        f"({n})</button>" for key, text, n in counts) + "</div>")


def write_index(out_dir: str | Path) -> Path:
    """Rewrite ``out_dir/index.html`` (atomically) from the published runs' manifests."""
    out_dir = Path(out_dir)
    runs = list_runs(out_dir)
    by_name: dict[str, list[dict]] = {}  # one entry per scheduled run (its name), or per report run by hand
    for run in runs:
        by_name.setdefault(run.get("run_name") or run["report"], []).append(run)
    esc = html.escape
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'><title>pco reports</title>",
        f"<style>{_INDEX_CSS}</style></head><body><h1>pco reports</h1>",
        f"<p class='muted'>Updated {esc(dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC'))}"
        f" · {len(runs)} run{'s' if len(runs) != 1 else ''}</p>",
    ]
    changes = {c["run"]: c for c in run_changes(out_dir, runs)}
    skipped = read_skipped(out_dir)
    new_skipped = [s for s in skipped if s.get("name") not in by_name]
    statuses = [named[0]["status"] for named in by_name.values()] + ["skipped"] * len(new_skipped)
    parts.append(_filters(statuses, sum(1 for c in changes.values() if c.get("changes"))))
    parts.append("<div class='scroll'><table><tr><th>Run</th><th>Report</th><th>Latest run</th><th>Status</th>"
                 "<th>Latest good report</th><th>Headline</th><th>Changed since the previous good run</th></tr>")
    for name, named_runs in sorted(by_name.items()):
        latest = named_runs[0]
        good = next((r for r in named_runs if r["status"] == "succeeded"), None)
        good_link = (f"<a href='{esc(good['folder'])}/report.html'>{esc(_when(good['started_at']))}</a>"
                     if good else "<span class='muted'>none yet</span>")
        c = changes.get(name, {})
        headline = "<br>".join(f"{esc(h['label'])}: <strong>{esc(h['shown'])}</strong>"
                               for h in c.get("headlines", [])[:HEADLINES_SHOWN])
        changed = ("<br>".join(f"<span class='changed'>{esc(text)}</span>" for text in c["changes"])
                   if c.get("changes") else
                   "<span class='muted'>nothing beyond its interval</span>" if c.get("previous_run_id") else
                   "<span class='muted'>no earlier good run</span>")
        flag = " data-changed='1'" if c.get("changes") else ""
        parts.append(
            f"<tr data-status='{esc(latest['status'])}'{flag}><td><a href='#{esc(name)}'>{esc(name)}</a></td>"
            f"<td>{esc(_run_label(latest))}</td>"
            f"<td>{esc(_when(latest['started_at']))}</td>"
            f"<td class='{esc(latest['status'])}'>{esc(latest['status'])}</td><td>{good_link}</td>"
            f"<td>{headline}</td><td>{changed if good else ''}</td></tr>"
        )
    for s in new_skipped:
        parts.append(f"<tr data-status='skipped'><td>{esc(s.get('name', ''))}</td><td>{esc(s.get('report', ''))}</td>"
                     f"<td>{esc(_when(s.get('at', '')))}</td><td class='skipped'>skipped</td>"
                     "<td><span class='muted'>none yet</span></td><td></td><td></td></tr>")
    parts.append("</table></div>")
    if skipped:
        parts.append("<h2 id='skipped'>Skipped on the last scheduled run</h2><p class='muted'>The data lacks a "
                     "table these reports need; they run once it is there.</p><div class='scroll'><table><tr>"
                     "<th>Run</th><th>Report</th><th>Why</th></tr>")
        parts += [f"<tr><td>{esc(s.get('name', ''))}</td><td>{esc(s.get('report', ''))}</td>"
                  f"<td class='muted'>{esc(s.get('reason', ''))}</td></tr>" for s in skipped]
        parts.append("</table></div>")
    for name, named_runs in sorted(by_name.items()):
        parts.append(f"<h2 id='{esc(name)}'>{esc(name)}</h2><div class='scroll'><table><tr><th>Run</th>"
                     "<th>Status</th><th>Duration</th><th>Files</th><th>Error</th></tr>")
        for r in named_runs:
            folder = esc(r["folder"])
            files = " · ".join(f"<a href='{folder}/{file}'>{label}</a>" for file, label in
                               [("report.html", "report"), ("report.ipynb", "notebook"),
                                ("results.json", "results"), ("manifest.json", "manifest")])
            parts.append(
                f"<tr><td>{esc(_when(r['started_at']))}<br><span class='muted'>{esc(r['run_id'])}</span></td>"
                f"<td class='{esc(r['status'])}'>{esc(r['status'])}</td><td>{r.get('duration_s', 0):.1f} s</td>"
                f"<td>{files}</td><td class='muted'>{esc(r.get('error') or '')}</td></tr>"
            )
        parts.append("</table></div>")
    parts.append(f"<script>{_FILTER_JS}</script></body></html>\n")
    out_dir.mkdir(parents=True, exist_ok=True)
    index = out_dir / "index.html"
    tmp = out_dir / f".index.html.{secrets.token_hex(4)}.tmp"
    tmp.write_text("\n".join(parts), encoding="utf-8")
    os.replace(tmp, index)
    return index
