"""The suite's kernels (tests/forked_kernels.py): forked with the imports done, unless a test asks for a fresh
interpreter; both are real ipykernels run through the report runner."""

import os

import nbformat
import pytest

from pco_lib.report import run_report


@pytest.fixture
def probe(tmp_path, monkeypatch):
    """A report that records whether pandas was imported before its first cell and which hash seed it has."""
    if not os.environ.get("PCO_TEST_KERNEL_SERVER"):
        pytest.skip("PCO_TEST_REAL_KERNELS is set: every kernel is a fresh interpreter")
    nb = nbformat.v4.new_notebook()
    parameters = nbformat.v4.new_code_cell("value: int = 1  # unused")
    parameters.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# probe"), parameters, nbformat.v4.new_code_cell(
        'import sys\npreloaded = "pandas" in sys.modules and "matplotlib.pyplot" not in sys.modules\n'
        'from pco_lib.report import record\nrecord("preloaded", preloaded)\nrecord("hash", hash("pco"))\n'
        'import matplotlib.pyplot as plt\nplt.plot([1, 2])\nplt.show()')]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    (tmp_path / "nb").mkdir()
    nbformat.write(nb, str(tmp_path / "nb" / "probe.ipynb"))
    monkeypatch.setenv("PCO_NOTEBOOKS", str(tmp_path / "nb"))
    return lambda: run_report("probe", out_dir=tmp_path / "reports")


def test_a_kernel_is_forked_with_the_imports_done_and_a_fresh_one_on_request(probe, monkeypatch,
                                                                            other_hash_seed_kernels):
    forked, again = probe(), probe()
    monkeypatch.setenv("PCO_TEST_KERNEL_SERVER", other_hash_seed_kernels)
    other = probe()
    monkeypatch.delenv("PCO_TEST_KERNEL_SERVER")
    fresh = probe()
    assert forked.ok and again.ok and other.ok and fresh.ok, (forked.error, again.error, other.error, fresh.error)
    assert forked.results["preloaded"] and other.results["preloaded"] and not fresh.results["preloaded"]
    assert forked.results["hash"] == again.results["hash"]  # one interpreter's hash seed, forked
    assert other.results["hash"] != forked.results["hash"]  # the determinism tests' second server
    if not os.environ.get("PYTHONHASHSEED"):
        assert fresh.results["hash"] != forked.results["hash"]  # what the determinism tests need
    for run in (forked, fresh):  # the inline backend shows the chart in both
        assert "data:image/png;base64" in (run.folder / "report.html").read_text()
