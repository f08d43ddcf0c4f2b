"""What a report needs from the data, checked before any kernel starts.

Each notebook declares it once, in its metadata under ``pco``::

    "pco": {
      "needs": ["customers", "orders", "assignments", "experiments"],        # required tables
      "needs_when": {"activity=event": ["events"]},                         # required for a parameter value
      "optional": {"subscriptions": {"part": "churn by arm", "results": ["churn"]}}
    }

and its parameters declare the columns they name (``{customers column or ""}``, see
:class:`~pco_lib.report.params.Rule`). :func:`plan_run` compares both with the data:

- a required table is missing: the run cannot happen (the runner exits 1, ``run-all`` marks it skipped);
- an optional table is missing: that part is left out, with a note, and its results are null;
- a column the user asked for does not exist: :class:`ParameterError` (exit 2) listing the columns that do;
- a column named by a *default* does not exist: the parameter is emptied (or the column dropped from a list)
  with a note saying what is missing and how to add it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data.model import TABLES
from .params import Parameter, ParameterError


@dataclass(frozen=True)
class Needs:
    tables: tuple[str, ...] = ()
    when: dict[str, tuple[str, ...]] = field(default_factory=dict)  # "param=value" -> tables
    optional: dict[str, dict] = field(default_factory=dict)  # table -> {"part": ..., "results": [...]}

    @classmethod
    def of_notebook(cls, path: str | Path) -> Needs:
        import nbformat

        meta = nbformat.read(str(path), as_version=4).metadata.get("pco", {})
        return cls(tuple(meta.get("needs", ())), {k: tuple(v) for k, v in meta.get("needs_when", {}).items()},
                   dict(meta.get("optional", {})))

    def required(self, values: dict[str, Any]) -> list[str]:
        """The tables this run needs, given its parameter values."""
        tables = list(self.tables)
        for condition, extra in self.when.items():
            name, _, value = condition.partition("=")
            if str(values.get(name)) == value:
                tables += [t for t in extra if t not in tables]
        return tables

    def describe(self) -> str:
        """One line for ``pco list``."""
        parts = [f"needs {', '.join(self.tables)}"] if self.tables else []
        parts += [f"{', '.join(t)} when {c.replace('=', ' is ')}" for c, t in self.when.items()]
        if self.optional:
            parts.append(f"uses {', '.join(self.optional)} when present")
        return "; ".join(parts)


@dataclass
class RunPlan:
    """What :func:`plan_run` decided: parameter values to change, notes for the page, results to null."""

    missing: str | None = None  # why the run cannot happen (a required table is missing)
    values: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    null_results: list[str] = field(default_factory=list)


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _file_hint(table: str) -> str:
    return f"{table}.parquet or {table}.csv ({', '.join(TABLES[table].required_columns)})"


def plan_run(report: str, needs: Needs, schema: list[Parameter], values: dict[str, Any], given: set[str],
             source, where: str) -> RunPlan:
    """Compare a run's needs with ``source`` (a :class:`~pco_lib.data.source.DataSource`). ``values``: every
    parameter's value; ``given``: the names the user set; ``where``: the data's name for messages."""
    plan = RunPlan()
    required = needs.required(values)
    # a table every data folder must hold (customers, orders) is validation's business: invalid data, not a skip
    absent = [t for t in required if not source.has(t) and not (t in TABLES and TABLES[t].required)]
    if absent:
        has = "neither" if len(absent) == 2 else "none of them" if len(absent) > 2 else f"no {absent[0]} table"
        conditions = [c.replace("=", " ") for c, t in needs.when.items()
                      if set(t) & set(absent) and str(values.get(c.partition("=")[0])) == c.partition("=")[2]]
        plan.missing = (f"{report}{' with ' + _and(conditions) if conditions else ''} needs {_and(absent)}; "
                        f"{where} has {has} (add {'; '.join(_file_hint(t) for t in absent)})")
        return plan
    for table, part in needs.optional.items():
        if not source.has(table):
            plan.notes.append(f"There is no {table} table, so the report leaves out {part.get('part', 'a part')}; "
                              f"add {_file_hint(table)} to see it.")
            plan.null_results += list(part.get("results", []))
    for param in schema:
        rule = param.rule
        if rule is None or rule.kind != "column":
            continue
        _plan_column(param, rule.tables, values[param.name], param.name in given, source, plan)
    return plan


def _plan_column(param: Parameter, tables: tuple[str, ...], value: Any, asked: bool, source, plan: RunPlan) -> None:
    present = [t for t in tables if source.has(t)]
    columns = {t: list(source.table(t).columns) for t in present}
    known = {c for cols in columns.values() for c in cols}
    wanted = value if isinstance(value, list) else [value] if value else []
    unknown = [c for c in wanted if c not in known]
    if not unknown:
        return
    listing = "; ".join(f"{t} has {', '.join(cols)}" for t, cols in columns.items()) or \
        f"there is no {' or '.join(tables)} table"
    of = " or ".join(tables)
    if asked:
        raise ParameterError(f"parameter {param.name!r}: {_and([repr(c) for c in unknown])} "
                             f"{'is not a column' if len(unknown) == 1 else 'are not columns'} of {of} ({listing})")
    one = len(unknown) == 1
    if isinstance(value, list):
        plan.values[param.name] = [c for c in value if c not in unknown]
        what = f"{_and(unknown)} {'is' if one else 'are'} left out of {param.name}"
    else:
        plan.values[param.name] = ""
        what = f"The breakdown by {value} ({param.name}) is left out"
    plan.notes.append(f"{what[0].upper()}{what[1:]}: {'it is not a column' if one else 'they are not columns'} "
                      f"of {of} ({listing}). Add {'it' if one else 'them'} to the data, or choose other columns "
                      f"with -p {param.name} NAME.")
