"""HTML export: the executed notebook as one self-contained page without code, in pco's nbconvert template
(``templates/pco``).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

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
    if value == "":
        return '""'
    return json.dumps(value, ensure_ascii=False) if isinstance(value, list | dict | bool) or value is None \
        else str(value)


def _when(iso: str) -> str:
    try:
        return dt.datetime.fromisoformat(iso).astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    except (TypeError, ValueError):
        return str(iso)


def _parameter_shown(name: str, given: Any, used: dict) -> str:
    """A parameter as the header shows it: the value the report actually used when that differs from the one
    given (a notebook records it under ``parameters_used.NAME`` in results.json, e.g. a holdout cut short)."""
    shown = Path(given).name if name == "data_dir" else _shown(given)
    if name in used and used[name] != given:
        return f"{_shown(used[name])} (used; {shown} given)"
    return shown


def _run_label(manifest: dict) -> str:
    """How a page and the index name a run: the report, and the experiment it reads (``ab_test · pricing_page``)."""
    report, experiment = manifest.get("report", ""), manifest.get("parameters", {}).get("experiment_id")
    return f"{report} · {experiment}" if report and experiment else report


def _experiment_period(results: dict) -> str:
    """An experiment's own dates for the header, from results.json ``experiment`` (ab_test)."""
    e = results.get("experiment") or {}
    if not e.get("first_assigned"):
        return ""
    first, last = (dt.date.fromisoformat(e[k]) for k in ("first_assigned", "last_assigned"))
    span = f"{first:%d %b %Y}" if first == last else (
        f"{first:%d %b} – {last:%d %b %Y}" if first.year == last.year else f"{first:%d %b %Y} – {last:%d %b %Y}")
    days = e.get("days")
    return f"{span} ({days} day{'s' if days != 1 else ''} of assignment)" if days else span


def export_html(notebook_path: Path, html_path: Path, manifest: dict | None = None,
                results: dict | None = None) -> None:
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
        "report": _run_label(m), "run_id": m.get("run_id", ""), "status": m.get("status", ""),
        "error": m.get("error"), "period": m.get("data_period", ""),
        "experiment": _experiment_period(results or {}),
        "run_date": _when(m["started_at"]) if m.get("started_at") else "",
        "parameters": [(k, _parameter_shown(k, v, m.get("parameters_used", {})))
                       for k, v in m.get("parameters", {}).items()],
        "notes": m.get("notes", []), "files": sorted(p.name for p in html_path.parent.glob("*.csv")),
        "toc": toc, "version": versions.get("pco", ""),
        "fingerprint": m.get("data_fingerprint"),
        "commit": (m.get("git_commit") or "")[:12] or None,
        "versions": " · ".join(f"{k} {v}" for k, v in versions.items() if k != "pco"),
    }
    nb.metadata["title"] = " · ".join(t for t in (_run_label(m), title) if t)
    body, _ = exporter.from_notebook_node(nb, resources={"pco": page})
    html_path.write_text(body, encoding="utf-8")
