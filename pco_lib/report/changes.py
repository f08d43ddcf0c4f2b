"""What changed since the previous good run of the same scheduled run: the thing a scheduled report is for.

A report's headline cards are recorded in its results.json under ``headlines`` (:func:`record_headlines`):
key, label, value, the value as shown and, where the report gives one, its interval. Between two good runs of
one schedule entry, a headline **changed** when

- a word changed (a verdict: "keep running" → "ship"), or
- a number moved outside the interval the previous run gave it (NPS 31 → 45, outside 25 to 37).

A number without an interval is shown beside the previous value but not flagged: without an interval there
is no telling noise from change.
"""

from __future__ import annotations

import json
from pathlib import Path


def headline_changes(previous: list[dict], current: list[dict]) -> list[str]:
    """One sentence per headline that changed from ``previous`` to ``current`` (results.json ``headlines``)."""
    before = {h["key"]: h for h in previous or []}
    changes = []
    for h in current or []:
        p = before.get(h["key"])
        if p is None or h.get("value") is None or p.get("value") is None:
            continue
        if isinstance(h["value"], str) or isinstance(p["value"], str):
            if h["value"] != p["value"]:
                changes.append(f"{h['label']}: {p['shown']} → {h['shown']}")
        elif p.get("low") is not None and p.get("high") is not None and not p["low"] <= h["value"] <= p["high"]:
            changes.append(f"{h['label']}: {p['shown']} → {h['shown']}, outside the previous interval "
                           f"({p['low_shown']} to {p['high_shown']})")
    return changes


def _headlines(out_dir: Path, run: dict) -> list[dict]:
    try:
        return json.loads((out_dir / run["folder"] / "results.json").read_text()).get("headlines") or []
    except (OSError, ValueError, AttributeError):
        return []


def run_changes(out_dir: str | Path, runs: list[dict]) -> list[dict]:
    """For each scheduled run (by name) among ``runs`` (the manifests of :func:`~.index.list_runs`, newest
    first): the latest good run's headlines, and what changed since the good run before it.
    ``[{"run", "report", "run_id", "previous_run_id", "headlines", "changes"}]`` (``previous_run_id`` None and
    ``changes`` empty when there is one good run only)."""
    out_dir = Path(out_dir)
    by_name: dict[str, list[dict]] = {}
    for run in runs:
        if run.get("status") == "succeeded":
            by_name.setdefault(run.get("run_name") or run["report"], []).append(run)
    result = []
    for name, good in sorted(by_name.items()):
        latest, previous = good[0], (good[1] if len(good) > 1 else None)
        headlines = _headlines(out_dir, latest)
        result.append({
            "run": name, "report": latest["report"], "run_id": latest["run_id"],
            "previous_run_id": previous["run_id"] if previous else None, "headlines": headlines,
            "changes": headline_changes(_headlines(out_dir, previous), headlines) if previous else [],
        })
    return result
