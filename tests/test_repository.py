"""Repository contracts: environment.yml matches pyproject.toml, notebooks are committed clean, the package keeps
its layers and its modules small."""

import ast
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import nbformat
import pytest
import yaml

from pco_lib.report import list_reports, read_schedule

ROOT = Path(__file__).resolve().parents[1]  # not from conftest: tests/benchmarks has a conftest.py of its own


def _normalize(requirement: str) -> tuple[str, str]:
    requirement = requirement.split("#")[0].strip()
    name, spec = re.match(r"^([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?\s*(.*)$", requirement).groups()
    return name.lower().replace("_", "-"), spec.replace(" ", "")


def test_environment_yml_lists_the_same_packages_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = dict(_normalize(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = dict(_normalize(d) for d in env["dependencies"] if isinstance(d, str))
    conda.pop("pip", None)
    assert conda.pop("python").startswith("=3.11")
    assert conda == wanted


NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebooks_are_committed_without_outputs_and_with_one_parameters_cell(path):
    nb = nbformat.read(str(path), as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), f"{path.name} has outputs"
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{path.name} needs exactly one cell tagged 'parameters'"
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebooks_show_remarks_as_callouts_not_print_lines(path):
    """A print() line is monospace debug output on a stakeholder page: notebooks say it with report.callout."""
    nb = nbformat.read(str(path), as_version=4)
    assert not [c.source for c in nb.cells if c.cell_type == "code" and re.search(r"\bprint\(", c.source)]


def test_every_report_is_scheduled():
    scheduled = {run.report for run in read_schedule(ROOT / "reports" / "schedule.yml")}
    assert set(list_reports()) == scheduled


def test_there_is_at_least_one_report():
    assert NOTEBOOKS and set(list_reports()) == {p.stem for p in NOTEBOOKS}


def test_readme_documents_every_report_and_parameter():
    from pco_lib.report.params import notebook_parameters

    readme = (ROOT / "README.md").read_text()
    for name, path in list_reports().items():
        assert f"`{name}`" in readme, f"README does not list the report {name}"
        for p in notebook_parameters(path):
            assert f"`{p.name}: {p.type} = {p.default!r}`".replace("'", '"') in readme, (
                f"README does not document {name}'s parameter {p.name} as `{p.name}: {p.type} = ...`")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_papermill_reads_the_same_parameters_as_pco(path):
    """`papermill --help-notebook` documents the same parameters, with the same types and help."""
    import papermill

    from pco_lib.report.params import notebook_parameters

    ours = {p.name: p for p in notebook_parameters(path)}
    theirs = papermill.inspect_notebook(str(path))
    assert set(theirs) == set(ours)
    for name, info in theirs.items():
        assert info["help"] == ours[name].help


def test_the_package_keeps_its_layers():
    """import-linter's contracts in pyproject.toml: layers, no report domain in the runner, pure statistics."""
    lint = Path(sys.executable).parent / "lint-imports"  # installed with the dev extra, beside this Python
    done = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_no_module_is_a_room_of_its_own():
    """No module over 800 lines: one model per file, one topic per module."""
    sizes = {p.relative_to(ROOT).as_posix(): len(p.read_text().splitlines()) for p in (ROOT / "pco_lib").rglob("*.py")}
    assert max(sizes.values()) <= 800, {k: v for k, v in sizes.items() if v > 800}


def test_statistics_import_nothing_of_pco_lib_outside_stats():
    """The statistics layer stands alone (also checked by import-linter; this one needs no tool)."""
    for path in (ROOT / "pco_lib" / "stats").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                absolute = (node.module or "").startswith("pco_lib") and not node.module.startswith("pco_lib.stats")
                escapes = node.level > path.relative_to(ROOT / "pco_lib" / "stats").as_posix().count("/") + 1
                assert not (absolute or escapes), f"{path.name} imports {'.' * node.level}{node.module}"


def test_no_test_module_imports_conftest_by_name():
    """Two conftest.py files (tests/ and tests/benchmarks/): `from conftest import` gets whichever pytest loaded
    last, so a test that works alone fails in the whole suite (it did: ImportError on ROOT)."""
    offenders = [p.name for p in (ROOT / "tests").rglob("*.py")
                 if re.search(r"^\s*(from conftest import|import conftest)", p.read_text(), re.M)]
    assert offenders == []


def test_the_code_passes_the_linter():
    """ruff (a dev dependency, configured in pyproject.toml) on the package and the tests: lint that only an
    editor shows drifts (ten findings had piled up by the end of issue 16)."""
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "--output-format", "concise", "pco_lib", "tests"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
