"""Schedule files: the named runs (report, data folder, parameters) that ``pco run-all`` runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .runner import ReportError


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
