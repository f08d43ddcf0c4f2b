"""The ``pco`` command.

Exit codes: 0 success · 1 a report failed or the data is invalid · 2 bad usage (unknown report or
parameter, wrong type, bad schedule file).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .report.params import ParameterError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _err(msg: str) -> None:
    print(f"pco: error: {msg}", file=sys.stderr)


def _log_to(quiet: bool):
    return (lambda msg: None) if quiet else (lambda msg: print(msg, file=sys.stderr))


def cmd_list(args) -> int:
    import re
    import shutil
    import textwrap

    from .report import list_reports, report_title
    from .report.needs import Needs
    from .report.params import notebook_parameters

    width = max(60, min(shutil.get_terminal_size((100, 24)).columns, 120))
    for name, path in list_reports().items():
        print(f"{name} — {report_title(path)}")
        needs = Needs.of_notebook(path).describe()
        if needs:
            print(textwrap.fill(needs, width, initial_indent="    ", subsequent_indent="      "))
        for p in notebook_parameters(path):
            print(textwrap.fill(f"{p.name}: {p.type} = {p.default!r}", width, initial_indent="  ",
                                subsequent_indent="        "))
            kept = re.sub(r"\{[^}]*\}", lambda m: m.group(0).replace(" ", "\0"), p.help)  # a rule stays whole
            print(textwrap.fill(kept, width, initial_indent="      ", subsequent_indent="      ").replace("\0", " "))
        print()
    return EXIT_OK


def _engine_memory(args, jobs: int = 1) -> None:
    """``--memory``: each of the ``jobs`` kernels' engines gets an equal share (``PCO_ENGINE_MEMORY``, which
    the kernels inherit)."""
    if args.memory is not None:
        from .data.source import ENGINE_MEMORY_ENV

        os.environ[ENGINE_MEMORY_ENV] = f"{args.memory // jobs // 10**6}MB"


def cmd_run(args) -> int:
    from .report import run_report

    _engine_memory(args)
    params = dict(args.param or [])
    result = run_report(args.report, data_dir=args.data, out_dir=args.out, params=params,
                        progress=sys.stderr.isatty() and not args.quiet, log=_log_to(args.quiet),
                        pseudonymize=args.pseudonymize)
    if not result.ok:
        _err(f"{args.report} failed: {result.error}\n  the executed notebook is in {result.folder}; "
             "the previous good run (if any) is unchanged")
        return EXIT_FAILED
    print(result.folder / "report.html")
    return EXIT_OK


def _run_one(run, out: str, quiet: bool, pseudonymize: bool = False) -> tuple[str, str, str, str]:
    from .report import ReportError, run_report

    try:
        result = run_report(run.report, data_dir=run.data, out_dir=out, params=run.parameters, log=_log_to(quiet),
                            pseudonymize=pseudonymize, name=run.name)
        return run.name, result.status, f"{result.duration_s:.1f}s", result.error or ""
    except ReportError as exc:
        return run.name, "skipped" if exc.skipped else "failed", "-", str(exc).splitlines()[0]
    except ParameterError as exc:
        return run.name, "failed", "-", str(exc).splitlines()[0]


def cmd_run_all(args) -> int:
    from concurrent.futures import ProcessPoolExecutor
    from functools import partial

    from .report import read_schedule, write_index
    from .report.index import write_skipped

    runs = read_schedule(args.schedule)
    if not args.quiet:
        print(f"{len(runs)} scheduled run(s), {args.jobs} at a time", file=sys.stderr)
    # Each run has its own folder and kernel, so runs can go side by side — in separate processes, because
    # Papermill changes the working directory of the process it runs in. One failing run stops no other.
    if args.pseudonymize:
        from .data.privacy import pseudonym_salt

        pseudonym_salt()  # a missing salt stops everything before any run
    _engine_memory(args, min(args.jobs, len(runs)))
    one = partial(_run_one, out=str(Path(args.out).resolve()), quiet=args.quiet, pseudonymize=args.pseudonymize)
    if args.jobs == 1:
        rows = [one(run) for run in runs]
    else:
        import multiprocessing

        # spawned, not forked: a fork of a process whose engine threads hold locks (DuckDB) can hang for ever
        with ProcessPoolExecutor(max_workers=args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            rows = list(pool.map(one, runs))
    write_skipped(args.out, [{"name": name, "report": run.report, "reason": error}
                             for run, (name, status, _, error) in zip(runs, rows) if status == "skipped"])
    write_index(args.out)
    width = max(len(r[0]) for r in rows)
    print(f"\n{'run':<{width}}  {'status':<9}  {'time':>7}  error or reason")
    for name, status, took, error in rows:
        print(f"{name:<{width}}  {status:<9}  {took:>7}  {error}")
    counts = {s: sum(r[1] == s for r in rows) for s in ("succeeded", "failed", "skipped")}
    skipped = f", {counts['skipped']} skipped (the data lacks a table they need)" if counts["skipped"] else ""
    print(f"\n{counts['succeeded']} succeeded, {counts['failed']} failed{skipped}. "
          f"Index: {(Path(args.out) / 'index.html').resolve()}")
    _report_changes(args.out, {name for name, status, _, _ in rows if status == "succeeded"}, args.changes)
    return EXIT_FAILED if counts["failed"] else EXIT_OK


def _report_changes(out: str, ran: set[str], path: str | None) -> None:
    """Print what changed since the previous good run of each run that just succeeded (verdicts, headlines
    outside their interval) and write it as JSON to ``path`` (a list, empty when nothing changed)."""
    import json

    from .report import list_runs
    from .report.changes import run_changes

    changed = [c for c in run_changes(out, list_runs(out)) if c["run"] in ran and c["changes"]]
    if changed:
        print("\nChanged since the previous good run:")
        for c in changed:
            print(f"  {c['run']}: " + "; ".join(c["changes"]))
    if path:
        payload = [{k: c[k] for k in ("run", "report", "run_id", "previous_run_id", "changes")} for c in changed]
        Path(path).write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def cmd_data_check(args) -> int:
    from .data.checks import check_folder

    report = check_folder(args.dir)
    print(report.summary())
    return EXIT_OK if report.ok else EXIT_FAILED


def cmd_data_sample(args) -> int:
    from .data.sample import generate_sample

    out = Path(args.out)
    if args.if_missing and (out / "truth.json").exists():
        print(f"sample data already in {out} (delete it to regenerate)", file=sys.stderr)
        return EXIT_OK
    truth = generate_sample(out, customers=args.customers, seed=args.seed, progress=None)
    counts = ", ".join(f"{k} {v:,}" for k, v in truth.get("counts", {}).items())
    print(f"wrote sample business to {out}: {counts}")
    return EXIT_OK


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be a positive integer")
    return value


def _memory_size(text: str) -> int:
    from .data.source import DataError, engine_memory

    try:
        return engine_memory(text, "--memory")
    except DataError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--memory: ")) from None


MEMORY_HELP = ("memory the data engine may use, e.g. 8GB (default: DuckDB's 80%% of the machine's per report); "
               "beyond it the engine spills to disk, which is slower. The per-customer tables a report keeps "
               "(clv, lifecycle) come on top")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pco", description="Post-conversion optimization reports.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="list reports and their parameters")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("run", help="run one report")
    p.add_argument("report")
    p.add_argument("--data", default=None,
                   help="data folder, mapping file (.yml) or env:NAME (default: $PCO_DATA, else data/sample)")
    p.add_argument("--out", default="reports", help="reports folder (default: reports)")
    p.add_argument("-p", "--param", nargs=2, action="append", metavar=("NAME", "VALUE"),
                   help="set a report parameter (repeatable)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress messages")
    p.add_argument("--pseudonymize", action="store_true",
                   help="salted hashes instead of customer ids in the CSV files beside the report "
                        "(salt from PCO_PSEUDONYM_SALT)")
    p.add_argument("--memory", type=_memory_size, default=None, metavar="SIZE", help=MEMORY_HELP)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("run-all", help="run every scheduled report")
    p.add_argument("--schedule", default="reports/schedule.yml")
    p.add_argument("--out", default="reports")
    p.add_argument("-j", "--jobs", type=_positive_int, default=1, help="runs side by side (default 1)")
    p.add_argument("-q", "--quiet", action="store_true", help="only the summary table")
    p.add_argument("--pseudonymize", action="store_true", help="as for pco run")
    p.add_argument("--memory", type=_memory_size, default=None, metavar="SIZE",
                   help=MEMORY_HELP + "; shared equally by the runs side by side")
    p.add_argument("--changes", metavar="FILE", default=None,
                   help="also write what changed since each run's previous good run as JSON (for alerts)")
    p.set_defaults(func=cmd_run_all)

    data = sub.add_parser("data", help="check or generate data").add_subparsers(dest="data_command",
                                                                                required=True)
    p = data.add_parser("check", help="validate a data folder or mapping file (.yml)")
    p.add_argument("dir")
    p.set_defaults(func=cmd_data_check)
    p = data.add_parser("sample", help="generate the sample business")
    p.add_argument("--out", default="data/sample")
    p.add_argument("--customers", type=_positive_int, default=20_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--if-missing", action="store_true", help="do nothing when OUT already holds a sample")
    p.set_defaults(func=cmd_data_sample)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .data import DataError
    from .data.privacy import PseudonymError
    from .report import ReportError

    try:
        return args.func(args)
    except ParameterError as exc:
        _err(str(exc))
        return EXIT_USAGE
    except ReportError as exc:
        _err(str(exc))
        return exc.code
    except DataError as exc:
        _err(str(exc))
        return EXIT_FAILED
    except PseudonymError as exc:
        _err(str(exc))
        return EXIT_USAGE
    except KeyboardInterrupt:
        _err("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
