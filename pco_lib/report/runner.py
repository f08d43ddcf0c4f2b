"""Running a report: parameters checked and data validated before any kernel starts, Papermill execution,
HTML export, results.json and manifest.json.

A run of report ``R`` writes ``OUT/R/RUN_ID/`` holding ``report.ipynb`` (executed), ``report.html`` (no
code), ``results.json`` (the headline numbers recorded in the notebook) and ``manifest.json`` (report,
parameters, data fingerprint, versions, git commit, timings, status). The run is assembled in a hidden
temporary folder and renamed into place when complete, so a killed run publishes nothing and a failed run
never touches earlier runs. ``OUT/index.html`` lists every run.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import platform
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from .html import export_html
from .index import write_index
from .needs import Needs, RunPlan, plan_run
from .notebook import collect_results
from .params import Parameter, ParameterError, notebook_parameters, resolve

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_NOTEBOOKS = REPO_ROOT / "notebooks"
VERSIONED_PACKAGES = ("pco", "pandas", "numpy", "scipy", "statsmodels", "lifelines", "ibis-framework", "duckdb",
                      "matplotlib", "seaborn", "papermill", "nbconvert")


class ReportError(Exception):
    """A report cannot be run (unknown report, bad data, unwritable output); exit code in ``code``."""

    def __init__(self, message: str, code: int = 1, skipped: bool = False):
        super().__init__(message)
        self.code = code
        self.skipped = skipped  # the data lacks a table the report needs: run-all skips it


def notebooks_dir() -> Path:
    return Path(os.environ.get("PCO_NOTEBOOKS", DEFAULT_NOTEBOOKS))


def list_reports(nb_dir: Path | None = None) -> dict[str, Path]:
    nb_dir = nb_dir or notebooks_dir()
    return {p.stem: p for p in sorted(nb_dir.glob("*.ipynb")) if not p.name.startswith(".")}


def report_notebook(report: str, nb_dir: Path | None = None) -> Path:
    reports = list_reports(nb_dir)
    if report not in reports:
        raise ReportError(f"no report named {report!r}; available: {', '.join(reports) or '(none)'}", code=2)
    return reports[report]


def report_parameters(report: str, nb_dir: Path | None = None) -> list[Parameter]:
    return notebook_parameters(report_notebook(report, nb_dir))


def report_title(path: Path) -> str:
    """The first Markdown heading of a notebook."""
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return path.stem


@dataclass
class RunResult:
    report: str
    run_id: str
    status: str  # "succeeded" or "failed"
    folder: Path
    duration_s: float
    error: str | None = None
    results: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                             timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for pkg in VERSIONED_PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return versions


def _write_json(path: Path, payload: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n")
    os.replace(tmp, path)


def _open_data(data: Path | str):
    """The data source behind a data folder, a mapping file or ``env:NAME``."""
    from ..data.source import DataError, connect

    try:
        return connect(data)
    except DataError as exc:
        raise ReportError(f"the data in {data} cannot be read: {exc}", code=1) from None


CHECK_CACHE = ".cache"  # in the reports folder: validations remembered per version of the data


def _validate(source, where: str, cache_dir: Path) -> tuple[str, str]:
    """Validate the data before any kernel starts (once per version of the data: see
    :func:`~pco_lib.data.checks.check_source_cached`); return its fingerprint and the period it covers."""
    from ..data.checks import check_source_cached
    from ..data.summaries import observed_period

    report, _ = check_source_cached(source, cache_dir, location=where)
    if not report.ok:
        raise ReportError(f"the data in {where} did not pass validation:\n{report.summary()}", code=1)
    first, last = observed_period(source)
    return source.fingerprint(), f"{first:%d %b %Y} – {last:%d %b %Y}"


STALE_AFTER_S = 24 * 3600  # a staging folder of unknown owner older than this is left over


def _stale(staging: Path) -> bool:
    """Whether a staging folder was left by a run that is no longer running (killed, machine rebooted)."""
    try:
        host, pid = (staging / ".owner").read_text().split()
        if host == platform.node():
            os.kill(int(pid), 0)  # raises when the process is gone
            return False
    except ProcessLookupError:
        return True
    except (OSError, ValueError):
        pass  # no owner file, another machine, or no permission to signal: judge by age
    try:
        return time.time() - staging.stat().st_mtime > STALE_AFTER_S
    except OSError:
        return False


def _clean_staging(report_dir: Path, log: Callable[[str], None]) -> None:
    for staging in report_dir.glob(".tmp-*"):
        if staging.is_dir() and _stale(staging):
            shutil.rmtree(staging, ignore_errors=True)
            log(f"removed {staging.name}, left by a run that did not finish")


def _add_results(results: dict, notes: list[str], null_results: list[str]) -> dict:
    """results.json with the runner's notes first and a null for every result of a part left out."""
    for key in null_results:
        target = results
        *parents, leaf = key.split(".")
        for part in parents:
            target = target.setdefault(part, {})
        target.setdefault(leaf, None)
    if notes or results.get("notes"):
        results["notes"] = notes + results.pop("notes", [])
    return results


def run_report(
    report: str,
    data_dir: str | Path | None = None,
    out_dir: str | Path = "reports",
    params: dict[str, Any] | None = None,
    nb_dir: Path | None = None,
    progress: bool = False,
    log: Callable[[str], None] = lambda msg: None,
    pseudonymize: bool = False,
    name: str | None = None,
) -> RunResult:
    """Run one report and publish it under ``out_dir/report/RUN_ID``.

    ``name``: the run's name in a schedule (e.g. ``ab_test_onboarding_email``; default the report's name), which
    the index groups runs by.

    ``pseudonymize``: customer-level CSV files the report writes beside itself get salted hashes instead of
    ids (salt from the ``PCO_PSEUDONYM_SALT`` environment variable, checked before the kernel starts).

    Raises :class:`ReportError` (unknown report, invalid data, unwritable output) or
    :class:`~pco_lib.report.params.ParameterError` before any kernel starts. A notebook that raises gives a
    published run with status ``failed``; earlier runs are never touched.
    """
    from ..data.source import CONNECTION_PREFIX, default_data

    notebook = report_notebook(report, nb_dir)
    salt = None
    if pseudonymize:
        from ..data.privacy import PseudonymError, pseudonym_salt

        try:
            salt = pseudonym_salt()
        except PseudonymError as exc:
            raise ReportError(str(exc), code=2) from None
    schema = notebook_parameters(notebook)
    params = dict(params or {})
    names = {p.name for p in schema}
    if data_dir is not None:
        if "data_dir" not in names:
            raise ParameterError(f"{report} does not read a data folder (it has no data_dir parameter)")
        if "data_dir" in params:
            raise ParameterError("the data is given twice (--data and -p data_dir): give one")
        params["data_dir"] = (str(data_dir) if str(data_dir).startswith(CONNECTION_PREFIX)
                              else str(Path(data_dir).resolve()))
    values = resolve(schema, params, report=report)
    full = {p.name: p.default for p in schema} | values

    if "currency" in full:  # "" means $PCO_CURRENCY, else USD: the manifest records the code the page shows
        from ..data.currencies import ENV, CurrencyError
        from ..data.currencies import resolve as resolve_currency

        try:
            values["currency"] = full["currency"] = resolve_currency(full["currency"])
        except CurrencyError as exc:
            raise ParameterError(f"${ENV}: {exc}") from None
    out_dir = Path(out_dir).resolve()  # absolute: Papermill changes the working directory while it runs
    fingerprint = period = None
    plan = RunPlan()
    if "data_dir" in full:
        where = str(full["data_dir"]) or default_data()
        if not where.startswith(CONNECTION_PREFIX):  # a folder or mapping file; env:NAME names a database
            data_path = Path(where)
            if not data_path.is_absolute():
                data_path = (notebook.parent / data_path).resolve()
            values["data_dir"] = full["data_dir"] = where = str(data_path)
        source = _open_data(where)
        plan = plan_run(report, Needs.of_notebook(notebook), schema, full, set(params), source, where)
        if plan.missing:
            raise ReportError(plan.missing, code=1, skipped=True)
        fingerprint, period = _validate(source, where, out_dir / CHECK_CACHE)
        del source
    used = {**values, **plan.values}  # what the kernel gets; the manifest keeps what was asked

    report_dir = out_dir / report
    try:
        report_dir.mkdir(parents=True, exist_ok=True)
        probe = report_dir / f".write-test-{secrets.token_hex(4)}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ReportError(f"cannot write reports to {out_dir}: {exc.strerror or exc}", code=1) from None
    _clean_staging(report_dir, log)

    started = dt.datetime.now(dt.UTC)
    run_id = started.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(2)
    staging = report_dir / f".tmp-{run_id}"
    try:
        staging.mkdir()
        (staging / ".owner").write_text(f"{platform.node()} {os.getpid()}\n")
        return _execute(report, name or report, notebook, staging, used, full, plan, fingerprint, period,
                        started, salt, progress, log)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise ReportError(f"cannot write the report to {report_dir}: {exc.strerror or exc}; nothing was "
                          "published and earlier runs are unchanged", code=1) from None


@contextlib.contextmanager
def _kernel_config(check_cache: Path):
    """Kernel configuration for one run.

    - On POSIX the kernel talks over Unix sockets in a private temporary folder. Over TCP the client picks
      free ports, closes them and the kernel binds them a moment later, so two kernels starting together
      (``run-all -j 2``) can pick the same port: "Address already in use", then "Kernel died before replying
      to kernel_info" (seen in CI).
    - The kernel inherits ``PCO_CHECK_CACHE``, so a notebook that shows the validation (data_overview) reads
      the one the runner just did instead of validating again.
    """
    from traitlets.config import Config

    from ..data.checks import CACHE_ENV

    before = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(check_cache)
    try:
        if os.name != "posix":
            yield Config()
            return
        with tempfile.TemporaryDirectory(prefix="pco-kernel-") as folder:
            yield Config({"KernelManager": {"transport": "ipc", "ip": os.path.join(folder, "k")}})
    finally:
        if before is None:
            os.environ.pop(CACHE_ENV, None)
        else:
            os.environ[CACHE_ENV] = before


def _execute(report, name, notebook, staging, values, full, plan, fingerprint, period, started, salt, progress,
             log) -> RunResult:
    """Execute the notebook in ``staging``, write the HTML, results.json and manifest.json, and publish the
    folder by renaming it. An OSError (disk full, output folder gone) propagates to :func:`run_report`."""
    import nbformat
    import papermill as pm

    run_id = staging.name.removeprefix(".tmp-")
    executed = staging / "report.ipynb"
    t0 = time.perf_counter()
    status, error = "succeeded", None
    log(f"running {name} ({report}, {run_id})" if name != report else f"running {report} ({run_id})")
    try:
        with _kernel_config(staging.parent.parent / CHECK_CACHE) as config:
            pm.execute_notebook(
                str(notebook), str(executed), parameters=values, kernel_name="python3", cwd=str(staging),
                progress_bar=progress, log_output=False, report_mode=False, config=config,
                # written once at the end (and on failure), not after every cell: each write serializes every
                # chart so far, 47 writes per lifecycle run (1.0 of the runner's 2.7 s of CPU on the tiny sample)
                request_save_on_cell_execute=False,
                # the kernel's own log is not the report's: at shutdown it may log "KeyboardInterrupt caught
                # in kernel" as an ERROR into pco's output, which a scheduler would read as a failure
                extra_arguments=["--IPKernelApp.log_level=CRITICAL"],
            )
    except pm.PapermillExecutionError as exc:
        status = "failed"
        error = f"cell {exc.exec_count}: {exc.ename}: {exc.evalue}"
    except OSError:
        raise
    except Exception as exc:  # kernel died, notebook unreadable, ...
        status = "failed"
        error = f"{type(exc).__name__}: {exc}"
    duration = time.perf_counter() - t0

    manifest = {
        "report": report,
        "run_name": name,
        "run_id": run_id,
        "status": status,
        "error": error,
        "parameters": full,
        "data_fingerprint": fingerprint,
        "data_period": period,
        "started_at": started.isoformat(timespec="microseconds"),  # two runs a second apart stay in order
        "duration_s": round(duration, 2),
        "git_commit": _git_commit(),
        "versions": _versions(),
        "platform": platform.platform(),
    }
    if plan.values:
        manifest["parameters_used"] = dict(plan.values)
    if plan.notes:
        manifest["notes"] = list(plan.notes)
    results = {}
    if executed.exists():
        try:
            results = collect_results(nbformat.read(str(executed), as_version=4))
            if results.get("parameters_used"):
                manifest["parameters_used"] = {**manifest.get("parameters_used", {}), **results["parameters_used"]}
            export_html(executed, staging / "report.html", manifest, results)
        except OSError:
            raise
        except Exception as exc:  # keep the run debuggable even if export fails
            if manifest["status"] == "succeeded":
                manifest["status"], manifest["error"] = "failed", f"HTML export failed: {exc}"
    results = _add_results(results, plan.notes, plan.null_results)
    status, error = manifest["status"], manifest["error"]
    if salt is not None:
        from ..data.privacy import pseudonymize_csv_files

        manifest["pseudonymized"] = pseudonymize_csv_files(staging, salt)
    _write_json(staging / "results.json", results)
    _write_json(staging / "manifest.json", manifest)
    (staging / ".owner").unlink()
    final = staging.parent / run_id
    os.rename(staging, final)  # atomic publish
    write_index(staging.parent.parent)
    log(f"{name}: {status} in {duration:.1f}s -> {final / 'report.html'}")
    return RunResult(report, run_id, status, final, duration, error, results)
