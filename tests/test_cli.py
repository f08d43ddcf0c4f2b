"""The `pco` command as a scheduler or an analyst calls it (exit codes and messages)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pco_lib.cli import main


def test_list_shows_every_report_with_its_parameters(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "data_overview — Data overview" in out
    assert "min_cell_size" in out and "groups with fewer customers are hidden" in out


def test_data_check_accepts_the_sample(tiny_sample, capsys):
    assert main(["data", "check", str(tiny_sample)]) == 0
    assert "customers" in capsys.readouterr().out


def test_data_check_rejects_a_broken_folder_with_exit_1(tiny_sample, tmp_path, capsys):
    bad = tmp_path / "bad"
    shutil.copytree(tiny_sample, bad)
    (bad / "customers.parquet").unlink()
    assert main(["data", "check", str(bad)]) == 1
    assert "customers" in capsys.readouterr().out


def test_data_check_on_a_missing_folder_exits_1(tmp_path, capsys):
    assert main(["data", "check", str(tmp_path / "nowhere")]) == 1
    captured = capsys.readouterr()
    assert "nowhere" in captured.out + captured.err


def test_a_report_on_a_folder_with_two_files_for_a_table_exits_1_before_running(tiny_sample, tmp_path, capsys):
    bad = tmp_path / "bad"
    shutil.copytree(tiny_sample, bad)
    shutil.copy(bad / "orders.parquet", bad / "orders.csv")
    out = tmp_path / "reports"
    assert main(["run", "data_overview", "--data", str(bad), "--out", str(out), "-q"]) == 1
    err = capsys.readouterr().err
    assert "cannot be read: orders: both orders.csv and orders.parquet are present; keep one" in err
    assert "Traceback" not in err and not any(out.rglob("manifest.json"))


def test_sample_if_missing_does_not_regenerate(tiny_sample, capsys):
    before = {p.name: p.stat().st_mtime_ns for p in tiny_sample.iterdir()}
    assert main(["data", "sample", "--out", str(tiny_sample), "--if-missing"]) == 0
    assert {p.name: p.stat().st_mtime_ns for p in tiny_sample.iterdir()} == before


def test_usage_errors_exit_2():
    with pytest.raises(SystemExit) as exc:
        main(["data", "sample", "--customers", "-5"])
    assert exc.value.code == 2


def test_memory_is_shared_by_the_runs_side_by_side(monkeypatch, capsys):
    from pco_lib.cli import _engine_memory, build_parser
    from pco_lib.data.source import ENGINE_MEMORY_ENV

    monkeypatch.setenv(ENGINE_MEMORY_ENV, "unchanged")  # restored after the test
    _engine_memory(build_parser().parse_args(["run-all", "--memory", "8GB", "-j", "2"]), 2)
    assert os.environ[ENGINE_MEMORY_ENV] == "4000MB"
    _engine_memory(build_parser().parse_args(["run", "clv", "--memory", "1.5GiB"]))
    assert os.environ[ENGINE_MEMORY_ENV] == "1610MB"
    _engine_memory(build_parser().parse_args(["run", "clv"]))  # no --memory: left as it is
    assert os.environ[ENGINE_MEMORY_ENV] == "1610MB"
    with pytest.raises(SystemExit) as exc:
        main(["run", "clv", "--memory", "5"])
    assert exc.value.code == 2 and "'5' is not a memory size" in capsys.readouterr().err


def test_console_script_is_installed_and_reports_exit_codes(tmp_path):
    pco = shutil.which("pco", path=str(Path(sys.executable).parent))
    assert pco, "the pco command is not installed beside this Python"
    done = subprocess.run([pco, "run", "data_overview", "-p", "no_such_parameter", "1", "--out",
                           str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "has no parameter 'no_such_parameter'" in done.stderr
    assert "Traceback" not in done.stderr


def test_pseudonymize_without_a_salt_exits_2_and_publishes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("PCO_PSEUDONYM_SALT", raising=False)
    out = tmp_path / "reports"
    assert main(["run", "churn_survival", "--pseudonymize", "--out", str(out)]) == 2
    assert "PCO_PSEUDONYM_SALT" in capsys.readouterr().err
    assert not any(out.rglob("manifest.json"))


def test_an_unknown_experiment_fails_with_a_clear_message_and_keeps_no_good_run(tiny_sample, tmp_path, capsys):
    out = tmp_path / "reports"
    assert main(["run", "ab_test", "--data", str(tiny_sample), "--out", str(out), "-p", "experiment_id", "nope",
                 "-q"]) == 1
    err = capsys.readouterr().err
    assert "no assignments for experiment 'nope'" in err and "known experiments" in err and "Traceback" not in err
    manifests = [json.loads(p.read_text()) for p in out.rglob("manifest.json")]
    assert [m["status"] for m in manifests] == ["failed"]  # kept for debugging, marked failed, never "good"


def test_a_report_reads_a_database_named_in_the_environment(tiny_sample, tmp_path, monkeypatch, capsys):
    import duckdb

    db = tmp_path / "shop.duckdb"
    with duckdb.connect(str(db)) as con:
        for path in tiny_sample.glob("*.parquet"):
            con.execute(f"CREATE TABLE {path.stem} AS SELECT * FROM read_parquet('{path}')")
    monkeypatch.setenv("PCO_TEST_WAREHOUSE", f"duckdb://{db}")
    out = tmp_path / "reports"
    assert main(["run", "data_overview", "--data", "env:PCO_TEST_WAREHOUSE", "--out", str(out), "-q"]) == 0
    manifest = json.loads(next(out.rglob("manifest.json")).read_text())
    assert manifest["parameters"]["data_dir"] == "env:PCO_TEST_WAREHOUSE" and str(db) not in json.dumps(manifest)
    results = json.loads(next(out.rglob("results.json")).read_text())
    assert results["customers"] == 1500
    assert main(["data", "check", "env:PCO_TEST_WAREHOUSE"]) == 0

    monkeypatch.delenv("PCO_TEST_WAREHOUSE")
    assert main(["run", "data_overview", "--data", "env:PCO_TEST_WAREHOUSE", "--out", str(out), "-q"]) == 1
    assert "set the environment variable PCO_TEST_WAREHOUSE" in capsys.readouterr().err


def test_a_pco_command_does_not_build_the_iri_parsers_jsonschema_would_import():
    """jsonschema, under nbformat, imports rfc3987_syntax when installed, which compiles ~38 Lark grammars at
    import (2.6 s of every command's start); pco_lib.report tells jsonschema it is absent."""
    code = ("import sys, pco_lib.cli, nbformat, papermill, nbconvert, jsonschema; "
            "print(sorted(m for m in ('lark', 'rfc3987_syntax') if sys.modules.get(m) is not None))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    assert sys.modules.get("rfc3987_syntax") is None and "lark" not in sys.modules  # nor in the tests' own process
    nbformat = pytest.importorskip("nbformat")
    nbformat.validate(nbformat.read(Path(__file__).parents[1] / "notebooks" / "clv.ipynb", as_version=4))
