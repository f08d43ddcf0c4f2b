"""Report parameters: read from a notebook's ``parameters`` cell, checked before any kernel starts.

A parameters cell holds one annotated assignment per line, with the help text as a trailing comment::

    data_dir: str = "../data/sample"  # folder with the canonical tables
    months: int = 24  # how many months to show

Supported types: ``str``, ``int``, ``float``, ``bool``, ``list[str]``, ``list[int]``, ``list[float]`` and
any of them ``| None``. Values given on the command line are strings and are converted by type; values
from a schedule file are checked as they are.
"""

from __future__ import annotations

import ast
import io
import json
import tokenize
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat

BASE_TYPES = {"str": str, "int": int, "float": float, "bool": bool}
TRUE_WORDS, FALSE_WORDS, NONE_WORDS = {"true", "yes", "1", "on"}, {"false", "no", "0", "off"}, {"none", "null"}


class ParameterError(ValueError):
    """A parameter is unknown, has the wrong type, or the parameters cell cannot be read."""


@dataclass(frozen=True)
class Parameter:
    name: str
    type: str  # as written in the notebook, e.g. "int", "list[str]", "str | None"
    default: Any
    help: str = ""

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
            return [self._convert_base(item, v) for v in value]
        return self._convert_base(base, value)

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
