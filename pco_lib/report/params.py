"""Report parameters: read from a notebook's ``parameters`` cell, checked before any kernel starts.

A parameters cell holds one annotated assignment per line, with the help text as a trailing comment::

    data_dir: str = "../data/sample"  # folder with the canonical tables
    months: int = 24  # how many months to show

Supported types: ``str``, ``int``, ``float``, ``bool``, ``list[str]``, ``list[int]``, ``list[float]`` and
any of them ``| None``. Values given on the command line are strings and are converted by type; values
from a schedule file are checked as they are.

The valid values are part of the declaration: the help text may end with a rule in braces (see :class:`Rule`)::

    correction: str = "holm"  # multiple-testing correction {holm, bh, none}
    alpha: float = 0.05  # significance level {0 < x < 0.5}
    calibration_end: str = ""  # fit on orders up to this date {date or ""}
    values_csv: str = "customer_value.csv"  # per-customer values {file or ""}
    segment: str = "channel"  # customer column to split by {customers column or ""}

Choices, bounds, dates and file names are checked by :func:`resolve`; columns need the data and are checked
by :mod:`.needs` before the kernel starts.
"""

from __future__ import annotations

import ast
import datetime as dt
import io
import json
import re
import tokenize
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BASE_TYPES = {"str": str, "int": int, "float": float, "bool": bool}
TRUE_WORDS, FALSE_WORDS, NONE_WORDS = {"true", "yes", "1", "on"}, {"false", "no", "0", "off"}, {"none", "null"}


class ParameterError(ValueError):
    """A parameter is unknown, has the wrong type, or the parameters cell cannot be read."""


RESERVED_FILES = {"report.ipynb", "report.html", "results.json", "manifest.json"}
_BOUND = re.compile(r"^(?:(?P<low>-?[\d.]+)\s*(?P<lop>≤|<)\s*)?x\s*(?P<op>≤|<|≥|>)\s*(?P<num>-?[\d.]+)$")


@dataclass(frozen=True)
class Rule:
    """The valid values of a parameter: the braces at the end of its help text, alternatives joined by "or".

    - ``{holm, bh, none}``: one of these words (each item, for a list);
    - ``{x > 0}``, ``{x ≥ 1}``, ``{0 < x < 0.5}``: a number within bounds (≤ and ≥, not <= and >=:
      Papermill cannot read a parameter line with a second "=");
    - ``{date}``: an ISO date (YYYY-MM-DD); ``{file}``: a plain file name inside the run folder;
      ``{currency}``: an ISO 4217 code such as EUR;
    - ``{customers column}``, ``{customers/subscriptions column}``: a column of one of those tables (checked
      against the data, see :mod:`.needs`);
    - ``""``: the empty string ("none").
    """

    text: str = ""
    choices: tuple[str, ...] = ()
    low: float | None = None
    low_inclusive: bool = False
    high: float | None = None
    high_inclusive: bool = False
    kind: str | None = None  # "date", "file", "currency" or "column"
    tables: tuple[str, ...] = ()  # of a "column" rule
    empty: bool = False

    @classmethod
    def parse(cls, help_text: str) -> Rule | None:
        found = re.search(r"\{([^{}]*)\}\s*$", help_text)
        if not found:
            return None
        text = found.group(1).strip()
        fields: dict[str, Any] = {"text": text}
        for alt in (a.strip() for a in text.split(" or ")):
            bound = _BOUND.match(alt)
            if alt in ('""', "''"):
                fields["empty"] = True
            elif alt in ("date", "file", "currency"):
                fields["kind"] = alt
            elif alt.endswith(" column"):
                fields["kind"], fields["tables"] = "column", tuple(alt[:-len(" column")].split("/"))
            elif bound:
                if bound["low"] is not None:
                    fields["low"], fields["low_inclusive"] = float(bound["low"]), bound["lop"] == "≤"
                num, op = float(bound["num"]), bound["op"]
                if op in "<≤":
                    fields["high"], fields["high_inclusive"] = num, op == "≤"
                else:
                    fields["low"], fields["low_inclusive"] = num, op == "≥"
            elif "=" in alt or re.search(r"\bx\b", alt):
                raise ParameterError(f"cannot read the rule {{{text}}}: write bounds as x > 0, x ≥ 1 or 0 < x < 1")
            elif alt:
                fields["choices"] = tuple(c.strip().strip('"') for c in alt.split(","))
            else:
                raise ParameterError(f"empty rule in {{{text}}}")
        return cls(**fields)

    def check(self, name: str, value: Any) -> None:
        """Raise :class:`ParameterError` unless ``value`` (one value, not a list) is valid."""
        if value is None or (self.empty and value == ""):
            return
        shown = self.text.replace("x", name) if self.low is not None or self.high is not None else self.text
        if self.choices and value not in self.choices:
            raise ParameterError(f"parameter {name!r}: {value!r} is not one of {', '.join(self.choices)}"
                                 + (' (or "")' if self.empty else ""))
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            low_ok = self.low is None or value > self.low or (self.low_inclusive and value == self.low)
            high_ok = self.high is None or value < self.high or (self.high_inclusive and value == self.high)
            if not (low_ok and high_ok):
                raise ParameterError(f"parameter {name!r} must satisfy {shown} (got {value!r})")
        if self.kind == "date":
            try:
                dt.date.fromisoformat(str(value))
            except ValueError:
                raise ParameterError(f"parameter {name!r} must be a date written YYYY-MM-DD"
                                     + (' or ""' if self.empty else "") + f", not {value!r}") from None
        if self.kind == "currency":
            from pco_lib.data.currencies import CurrencyError, check_code

            try:
                check_code(value)
            except CurrencyError as exc:
                raise ParameterError(f"parameter {name!r}: {exc}") from None
        if self.kind == "file":
            text = str(value)
            if ("/" in text or "\\" in text or text in (".", "..") or text.startswith("~")
                    or text != text.strip() or not text):
                raise ParameterError(f"parameter {name!r} must be a plain file name (written inside the run "
                                     f"folder, beside the report), not {value!r}")
            if text in RESERVED_FILES:
                raise ParameterError(f"parameter {name!r}: {text!r} is one of the run's own files "
                                     f"({', '.join(sorted(RESERVED_FILES))}); choose another name")


@dataclass(frozen=True)
class Parameter:
    name: str
    type: str  # as written in the notebook, e.g. "int", "list[str]", "str | None"
    default: Any
    help: str = ""

    @property
    def rule(self) -> Rule | None:
        return Rule.parse(self.help)

    @property
    def base(self) -> str:
        return self.type.replace("| None", "").replace("None |", "").strip()

    @property
    def optional(self) -> bool:
        return "None" in self.type.replace(" ", "").split("|")

    def convert(self, value: Any) -> Any:
        """Check ``value`` against the type; strings (from the command line) are parsed."""
        if value is None or (isinstance(value, str) and value.strip().lower() in NONE_WORDS and self.optional):
            if self.optional:
                return None
            raise ParameterError(f"parameter {self.name!r} ({self.type}) cannot be empty")
        base = self.base
        if base.startswith("list["):
            item = base[5:-1]
            if isinstance(value, str):
                text = value.strip()
                if text.startswith("["):
                    try:
                        value = json.loads(text)
                    except json.JSONDecodeError:
                        raise ParameterError(
                            f"parameter {self.name!r} ({self.type}): {value!r} is not a JSON list"
                        ) from None
                else:
                    value = [v.strip() for v in text.split(",") if v.strip()]
            if not isinstance(value, (list, tuple)):
                raise ParameterError(f"parameter {self.name!r} ({self.type}): expected a list, got {value!r}")
            return self._checked([self._convert_base(item, v) for v in value])
        return self._checked(self._convert_base(base, value))

    def _checked(self, value: Any) -> Any:
        rule = self.rule
        if rule is not None:
            for item in value if isinstance(value, list) else [value]:
                rule.check(self.name, item)
        return value

    def _convert_base(self, base: str, value: Any) -> Any:
        wrong = ParameterError(f"parameter {self.name!r} ({self.type}): {value!r} is not a valid {base}")
        if base == "str":
            if isinstance(value, str):
                return value
            raise wrong
        if base == "bool":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.strip().lower() in TRUE_WORDS | FALSE_WORDS:
                return value.strip().lower() in TRUE_WORDS
            raise wrong
        if base == "int":
            if isinstance(value, bool):
                raise wrong
            if isinstance(value, int):
                return value
            if isinstance(value, str):
                try:
                    return int(value.strip())
                except ValueError:
                    raise wrong from None
            raise wrong
        if base == "float":
            if isinstance(value, bool):
                raise wrong
            if isinstance(value, (int, float)):
                return float(value)
            if isinstance(value, str):
                try:
                    return float(value.strip())
                except ValueError:
                    raise wrong from None
            raise wrong
        raise ParameterError(f"parameter {self.name!r}: unsupported type {self.type!r}")


def _type_ok(annotation: str) -> bool:
    parts = [p.strip() for p in annotation.split("|")]
    for p in parts:
        if p == "None" or p in BASE_TYPES:
            continue
        if p.startswith("list[") and p.endswith("]") and p[5:-1] in BASE_TYPES:
            continue
        return False
    return True


def parse_parameters_source(source: str, where: str = "parameters cell") -> list[Parameter]:
    """The parameters declared in the source of a parameters cell."""
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise ParameterError(f"{where}: not valid Python ({exc.msg}, line {exc.lineno})") from None
    comments = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string.lstrip("#").strip()
    params = []
    for node in tree.body:
        if not isinstance(node, ast.AnnAssign) or not isinstance(node.target, ast.Name) or node.value is None:
            raise ParameterError(
                f"{where}, line {node.lineno}: write each parameter as `name: type = default  # help`"
            )
        annotation = ast.unparse(node.annotation)
        if not _type_ok(annotation):
            raise ParameterError(f"{where}, line {node.lineno}: unsupported type {annotation!r}")
        try:
            default = ast.literal_eval(node.value)
        except ValueError:
            raise ParameterError(f"{where}, line {node.lineno}: the default must be a literal") from None
        param = Parameter(node.target.id, annotation, default, comments.get(node.lineno, ""))
        param.convert(default)  # the default itself must have the declared type
        params.append(param)
    return params


def notebook_parameters(path: str | Path) -> list[Parameter]:
    """The parameters of a notebook, from its cell tagged ``parameters``."""
    import nbformat  # here, not at the top: importing it costs ~3 s of CPU in every report's kernel (jsonschema)

    nb = nbformat.read(str(path), as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise ParameterError(f"{path}: expected one cell tagged 'parameters', found {len(cells)}")
    return parse_parameters_source(cells[0].source, where=f"{Path(path).name} parameters cell")


def resolve(params: list[Parameter], given: dict[str, Any], report: str = "report") -> dict[str, Any]:
    """Check ``given`` against the schema and return the converted values (only those given)."""
    by_name = {p.name: p for p in params}
    unknown = [name for name in given if name not in by_name]
    if unknown:
        raise ParameterError(
            f"{report} has no parameter {', '.join(repr(u) for u in unknown)}; "
            f"its parameters are: {', '.join(by_name) or '(none)'}"
        )
    return {name: by_name[name].convert(value) for name, value in given.items()}
