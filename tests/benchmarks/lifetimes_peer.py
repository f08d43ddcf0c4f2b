"""`lifetimes` in a virtualenv of its own: the package is archived and needs pandas < 2, which pco cannot
share a virtualenv with. The benchmark creates the virtualenv when it is missing (once; a few seconds from
the package index) and runs lifetimes_script.py in it.

PCO_BENCH_LIFETIMES_VENV: where (default ~/.cache/pco-bench/lifetimes-venv, outside the work tree);
PCO_BENCH_PYTHON: the Python that creates it (default python3.11);
PCO_BENCH_LIFETIMES_TIMEOUT: seconds the script may take (default 1800); steps done by then are reported.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

VENV = Path(os.environ.get("PCO_BENCH_LIFETIMES_VENV", Path.home() / ".cache" / "pco-bench" / "lifetimes-venv"))
PACKAGES = ["lifetimes==0.11.3", "pandas<2", "numpy<2", "scipy<1.12", "pyarrow<20"]  # pyarrow 20+ needs numpy 2
SCRIPT = Path(__file__).with_name("lifetimes_script.py")
TIMEOUT = float(os.environ.get("PCO_BENCH_LIFETIMES_TIMEOUT", "1800"))


def lifetimes_python() -> tuple[Path | None, str]:
    """The virtualenv's python, created when missing; (None, why) when it cannot be made (e.g. no network)."""
    python = VENV / "bin" / "python"
    check = [str(python), "-c", "import lifetimes, pyarrow"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python, ""
    base = os.environ.get("PCO_BENCH_PYTHON", "python3.11")
    print(f"\ncreating the lifetimes virtualenv in {VENV} with {base} ...", file=sys.stderr)
    for command in ([base, "-m", "venv", "--clear", str(VENV)],
                    [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *PACKAGES]):
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=900)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return None, f"could not create the lifetimes virtualenv ({type(exc).__name__}: {exc})"
        if done.returncode != 0:
            return None, f"could not create the lifetimes virtualenv ({' '.join(command[:3])}: {_last(done.stderr)})"
    done = subprocess.run(check, capture_output=True, text=True)
    if done.returncode != 0:
        return None, f"the lifetimes virtualenv does not work ({_last(done.stderr)})"
    return python, ""


def _last(stderr: str) -> str:
    """The last line of a message (one line, so that it fits in a table cell)."""
    return (stderr.strip().splitlines() or ["no message"])[-1].replace("|", "/")


def run_lifetimes(python: Path, orders: Path, per_customer: Path, end: str, out: Path) -> tuple[dict, str]:
    """Run the script; the steps it finished ({step: record}) and, when it did not finish, why."""
    command = [str(python), str(SCRIPT), str(orders), str(per_customer), end, str(out)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT)
        stdout, problem = done.stdout, "" if done.returncode == 0 else f"failed: {_last(done.stderr)}"
    except subprocess.TimeoutExpired as exc:
        stdout = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        problem = f"stopped after the {TIMEOUT:.0f} s timeout (PCO_BENCH_LIFETIMES_TIMEOUT)"
    steps = {}
    for line in stdout.splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            steps[record["step"]] = record
    return steps, problem
