"""HTML export: the executed notebook as one self-contained page without code, in pco's nbconvert template
(``templates/pco``).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
from pathlib import Path
from typing import Any

from .formats import humanize_tables
from .notebook import RESULT_MIME

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


_STYLE = re.compile(r"(<style[^>]*>)(.*?)(</style>)", re.S)
_CLASS_ATTR = re.compile(r"""class=(?:"([^"]*)"|'([^']*)')""")
_CLASS_IN_SELECTOR = re.compile(r"\.(-?[_a-zA-Z][\w-]*)")
_NOT = re.compile(r":not\([^)]*\)")  # :not(.absent) matches: its classes need not be on the page
PRUNE_ABOVE = 20_000  # characters: nbconvert's inlined JupyterLab CSS (~240 kB), not our own or pandas' styles


def _css_blocks(css: str) -> list[tuple[str, str]]:
    """Top-level ``(prelude, body)`` pairs of a style sheet without comments (an @media body is itself CSS)."""
    blocks, depth, start, prelude_end = [], 0, 0, 0
    for i, ch in enumerate(css):
        if ch == "{":
            if depth == 0:
                prelude_end = i
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                blocks.append((css[start:prelude_end].strip(), css[prelude_end + 1:i]))
                start = i + 1
    return blocks


def _prune_css(css: str, classes: set[str]) -> str:
    """The rules of ``css`` that can match the page: a rule is kept when one of its selectors names only
    classes the page uses (element and attribute selectors are kept); @media and @supports are pruned inside,
    @font-face and @keyframes dropped (the page has no animation and uses system fonts)."""
    css = re.sub(r"/\*.*?\*/", "", css, flags=re.S)
    kept = []
    for prelude, body in _css_blocks(css):
        if prelude.startswith(("@media", "@supports")):
            inner = _prune_css(body, classes)
            if inner:
                kept.append(f"{prelude}{{{inner}}}")
        elif prelude.startswith("@"):
            continue
        elif any(set(_CLASS_IN_SELECTOR.findall(_NOT.sub("", sel))) <= classes for sel in prelude.split(",")):
            kept.append(f"{prelude}{{{body.strip()}}}")
    return "\n".join(kept)


_VAR_USE = re.compile(r"var\(\s*(--[\w-]+)")


def _declarations(body: str) -> list[str]:
    """The declarations of a rule body, split at the semicolons outside quotes and brackets (data URIs)."""
    parts, depth, quote, start = [], 0, None, 0
    for i, ch in enumerate(body):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == ";" and depth == 0:
            parts.append(body[start:i].strip())
            start = i + 1
    parts.append(body[start:].strip())
    return [p for p in parts if p]


def _prune_variables(css: str, elsewhere: str) -> str:
    """``:root`` custom properties that nothing uses (in ``css`` outside :root, or in ``elsewhere``: the rest
    of the page), left out: JupyterLab's theme defines ~1,000, icons among them. A property used by a kept
    property is kept too."""
    blocks = _css_blocks(css)
    root = [d for pre, body in blocks if pre == ":root" for d in _declarations(body)]
    rest = "".join(f"{pre}{{{body}}}" for pre, body in blocks if pre != ":root")
    defined = {d.split(":", 1)[0].strip(): d for d in root if d.startswith("--")}
    used, todo = set(), set(_VAR_USE.findall(rest)) | set(_VAR_USE.findall(elsewhere))
    while todo:
        name = todo.pop()
        if name in used or name not in defined:
            continue
        used.add(name)
        todo |= set(_VAR_USE.findall(defined[name]))
    kept = [d for d in root if not d.startswith("--") or d.split(":", 1)[0].strip() in used]
    return (f":root{{{';'.join(kept)}}}\n" if kept else "") + "\n".join(
        f"{pre}{{{body}}}" for pre, body in blocks if pre != ":root")


def slim_page(page: str) -> str:
    """The page with only the CSS it can use (measured on the sample: the ab_test page 475 → 245 kB)."""
    body = _STYLE.sub("", page)
    classes = {c for m in _CLASS_ATTR.finditer(body) for c in (m.group(1) or m.group(2) or "").split()}

    big = [m.group(2) for m in _STYLE.finditer(page) if len(m.group(2)) > PRUNE_ABOVE]
    elsewhere = body + "".join(m.group(2) for m in _STYLE.finditer(page) if len(m.group(2)) <= PRUNE_ABOVE)
    slim = {css: _prune_css(css, classes) for css in big}
    elsewhere += "".join(_css_blocks_text(css) for css in slim.values())  # one big sheet's rules use another's

    def prune(m: re.Match) -> str:
        css = m.group(2)
        return m.group(1) + (_prune_variables(slim[css], elsewhere) if css in slim else css) + m.group(3)

    return _STYLE.sub(prune, page)


def _css_blocks_text(css: str) -> str:
    return "".join(body for pre, body in _css_blocks(css) if pre != ":root")


def _drop_empty_outputs(nb) -> None:
    """Leave out the outputs that show nothing (a value recorded for results.json only, ``record(...,
    show=False)``, is an empty text output): each would be an empty box in the page; and warnings on stderr,
    which are for the analyst (the executed notebook keeps them), not for the stakeholder."""
    def shows_something(out) -> bool:
        if out.get("output_type") == "stream":
            return out.get("name") != "stderr"
        if out.get("output_type") not in ("display_data", "execute_result"):
            return True
        shown = [v for k, v in out.get("data", {}).items() if k != RESULT_MIME]
        return any(("".join(v) if isinstance(v, list) else str(v)).strip() for v in shown)

    for cell in nb.cells:
        if cell.get("outputs"):
            cell.outputs = [out for out in cell.outputs if shows_something(out)]


def _cut_at_the_error(nb) -> None:
    """A failed run's page: what the notebook showed before the failing cell, without the traceback (the
    header says the error in one sentence; the executed notebook, linked, has the traceback) and without the
    sections after it, which would be empty."""
    for i, cell in enumerate(nb.cells):
        if any(out.get("output_type") == "error" for out in cell.get("outputs", [])):
            cell.outputs = [out for out in cell.outputs if out.get("output_type") != "error"]
            nb.cells = nb.cells[:i + 1]
            return


@functools.cache
def _exporter():
    """nbconvert's exporter with pco's template, made once per process: making one compiles its templates
    (measured on the tiny sample's reports: the first export in a process 0.7 s of CPU, the next 0.1 s)."""
    from nbconvert import HTMLExporter

    return HTMLExporter(template_name="pco", extra_template_basedirs=[str(TEMPLATES)], exclude_input=True,
                        exclude_input_prompt=True, exclude_output_prompt=True)


def export_html(notebook_path: Path, html_path: Path, manifest: dict | None = None,
                results: dict | None = None) -> None:
    """The executed notebook as one self-contained HTML page without code: nothing is loaded from the network
    (pco's template drops nbconvert's require.js/MathJax/Mermaid scripts; CSS and figures are inlined), with a
    header (report, data period, run date, parameters), a table of contents and a footer (versions, data
    fingerprint, git commit) taken from the run's ``manifest``."""
    import nbformat

    nb = nbformat.read(str(notebook_path), as_version=4)
    m = manifest or {}
    if m.get("status") == "failed":
        _cut_at_the_error(nb)
    _drop_empty_outputs(nb)
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
    body, _ = _exporter().from_notebook_node(nb, resources={"pco": page})
    html_path.write_text(slim_page(humanize_tables(body)), encoding="utf-8")
