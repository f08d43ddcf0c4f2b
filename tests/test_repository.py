"""Repository contracts: environment.yml matches pyproject.toml, notebooks are committed clean."""

import re
import tomllib

import nbformat
import pytest
import yaml
from conftest import ROOT

from pco_lib.report import list_reports, read_schedule


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


def test_every_report_is_scheduled():
    scheduled = {run.report for run in read_schedule(ROOT / "reports" / "schedule.yml")}
    assert set(list_reports()) == scheduled


def test_there_is_at_least_one_report():
    assert NOTEBOOKS and set(list_reports()) == {p.stem for p in NOTEBOOKS}


def test_readme_documents_every_report_and_parameter():
    from pco_lib.params import notebook_parameters

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

    from pco_lib.params import notebook_parameters

    ours = {p.name: p for p in notebook_parameters(path)}
    theirs = papermill.inspect_notebook(str(path))
    assert set(theirs) == set(ours)
    for name, info in theirs.items():
        assert info["help"] == ours[name].help
