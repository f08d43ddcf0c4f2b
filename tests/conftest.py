import os
import shutil
import signal
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CDNOW_FILE = ROOT / "tests" / "data" / "cdnow_sample.txt"  # lifetimes' CDNOW_sample.txt (FHL 2005's 1/10 sample)


@pytest.fixture(scope="session")
def cdnow_orders():
    """The CDNOW transactions as orders (customer_id, ordered_at, revenue), read with pandas from the raw file."""
    import pandas as pd

    raw = pd.read_csv(CDNOW_FILE, sep=r"\s+", header=None, names=["master_id", "sample_id", "date", "cds", "value"],
                      dtype={"master_id": str, "sample_id": str, "date": str})
    return pd.DataFrame({"customer_id": raw.sample_id, "ordered_at": pd.to_datetime(raw.date, format="%Y%m%d"),
                         "revenue": raw.value.astype(float)})


_TINY: list[Path] = []  # the tiny sample of this test process, generated on first use


def _tiny_sample() -> Path:
    """A small sample business (1,500 customers, seed 7), generated once per test process (each xdist worker
    is one): shared by the tests that take ``tiny_sample`` and by the notebooks nbval runs."""
    if not _TINY:
        import tempfile

        from pco_lib.data.sample import generate_sample

        out = Path(tempfile.mkdtemp(prefix="pco-tiny-")) / "sample"
        generate_sample(out, customers=1500, seed=7, progress=False)
        _TINY.append(out)
    return _TINY[0]


_KERNEL_SERVER: list = []  # (process, folder) of this test process's kernel servers (tests/forked_kernels.py)


def pytest_configure(config):
    os.environ.pop("PCO_DATA", None)  # an analyst's own data never leaks into the tests
    _start_kernel_server(config)


def pytest_unconfigure(config):
    for folder in _TINY:
        shutil.rmtree(folder.parent, ignore_errors=True)
    for process, folder in _KERNEL_SERVER:
        try:
            os.killpg(process.pid, signal.SIGKILL)  # the server and any kernel a test left behind
        except ProcessLookupError:
            pass
        process.wait()
        shutil.rmtree(folder, ignore_errors=True)


def _start_kernel_server(config):
    """Every kernel of this test process (Papermill's through the runner, nbval's) is forked from one warm
    process that has the imports done (tests/forked_kernels.py): a ``python3`` kernelspec first on
    ``JUPYTER_PATH`` asks it for one. PCO_TEST_REAL_KERNELS=1 turns it off; the xdist controller runs no
    test and starts none."""
    if os.environ.get("PCO_TEST_REAL_KERNELS") or os.name != "posix" or sys.platform == "darwin":
        return
    if getattr(config, "workerinput", None) is None and getattr(config.option, "numprocesses", None):
        return
    if config.option.markexpr.strip() == "bench":  # make bench: its reports run in real kernels
        return
    import json
    import tempfile

    from forked_kernels import SERVER_ENV

    folder = Path(tempfile.mkdtemp(prefix="pco-kernels-"))
    script = Path(__file__).with_name("forked_kernels.py")
    spec = folder / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, str(script), "-f", "{connection_file}"], "language": "python",
        "display_name": "Python 3 (forked from a warm process)"}))
    paths = [str(folder / "jupyter"), os.environ.get("JUPYTER_PATH")]
    os.environ["JUPYTER_PATH"] = os.pathsep.join(filter(None, paths))
    os.environ[SERVER_ENV] = _serve_kernels(folder / "server")


def _serve_kernels(socket_path: Path, env: dict | None = None) -> str:
    """Start a kernel server (tests/forked_kernels.py) on ``socket_path``; it is ended with the test process."""
    import subprocess

    script = Path(__file__).with_name("forked_kernels.py")
    process = subprocess.Popen([sys.executable, str(script), "serve", str(socket_path)], stdin=subprocess.DEVNULL,
                               start_new_session=True, env=env)
    _KERNEL_SERVER.append((process, socket_path.parent))
    return str(socket_path)


@pytest.fixture(scope="session")
def other_hash_seed_kernels():
    """The socket of a second kernel server, started with another hash seed than the first (for the
    determinism tests: forked from it, a kernel iterates sets and dicts of strings in another order, as a
    fresh interpreter would, without paying ~4 s of imports), or None when kernels are not forked."""
    import random
    import tempfile

    from forked_kernels import SERVER_ENV

    if not os.environ.get(SERVER_ENV):
        return None
    env = {**os.environ, "PYTHONHASHSEED": str(random.SystemRandom().randint(1, 2**32 - 1))}
    return _serve_kernels(Path(tempfile.mkdtemp(prefix="pco-kernels-")) / "server", env)


def pytest_collection_finish(session):
    """nbval runs each committed notebook top to bottom with its defaults; its ``data_dir`` default ("")
    reads ``$PCO_DATA``, which points at the tiny sample here, set before nbval starts a kernel (which
    inherits the environment). A hook of this conftest on nbval's items would not run: they live outside
    tests/. The 20,000-customer sample stays for ``make report``."""
    if any(item.path.suffix == ".ipynb" for item in session.items):
        os.environ["PCO_DATA"] = str(_tiny_sample())


@pytest.fixture(scope="session", autouse=True)
def shared_check_cache(tmp_path_factory):
    """The report runs of the suite remember their validations in one folder, as the runs of one reports
    folder do (each test has a reports folder of its own): the ~40 runs on the tiny sample validate it once
    per test process instead of once each (0.7 s of CPU). Data a test makes is another version: validated."""
    from pco_lib.report import runner

    before = runner.CHECK_CACHE
    runner.CHECK_CACHE = tmp_path_factory.mktemp("check-cache")  # absolute: out_dir / CHECK_CACHE is itself
    yield runner.CHECK_CACHE
    runner.CHECK_CACHE = before


@pytest.fixture(scope="session")
def tiny_sample() -> Path:
    """A small sample business (1,500 customers), generated once per test process."""
    return _tiny_sample()


@pytest.fixture(scope="session")
def minimal_data(tiny_sample, tmp_path_factory) -> Path:
    """The tiny sample cut down to what the data model requires: customers (customer_id, converted_at) and
    orders (order_id, customer_id, ordered_at, revenue), nothing else."""
    import pandas as pd

    out = tmp_path_factory.mktemp("data") / "minimal"
    out.mkdir()
    pd.read_parquet(tiny_sample / "customers.parquet", columns=["customer_id", "converted_at"]).to_parquet(
        out / "customers.parquet", index=False)
    pd.read_parquet(tiny_sample / "orders.parquet", columns=["order_id", "customer_id", "ordered_at", "revenue"]
                    ).to_parquet(out / "orders.parquet", index=False)
    return out


@pytest.fixture
def no_kernel(monkeypatch):
    """Fail the test if Papermill is asked to start a kernel."""
    import papermill

    def forbidden(*args, **kwargs):
        raise AssertionError("a kernel was started")

    monkeypatch.setattr(papermill, "execute_notebook", forbidden)


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium (the system's, driven by Playwright), or None when there is none — unless
    PCO_REQUIRE_BROWSER is set (CI), where a missing browser fails."""
    executable = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    if executable is None or sync_playwright is None:
        message = "no Chromium (apt-get install chromium) or no playwright: the browser test cannot run"
        if os.environ.get("PCO_REQUIRE_BROWSER"):
            pytest.fail(message)
        yield None
        return
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def offline_page():
    """:func:`open_offline`, for the tests (a test module cannot ``from conftest import``: tests/benchmarks has a
    conftest.py of its own, and whichever was imported last is the module named ``conftest``)."""
    return open_offline


def open_offline(browser, html: Path, screenshot: Path | None = None) -> dict:
    """Load a report in the browser with the network cut off: every request other than the file itself is
    aborted and recorded. Returns the console messages, page errors, failed and outside requests, the number
    of visible code cells, the page title, the images' alt texts and the page's width on a 390 px phone."""
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    seen = {"console": [], "errors": [], "failed": [], "outside": []}

    def route(r):
        if r.request.url.startswith(("file:", "data:")):
            r.continue_()
        else:
            seen["outside"].append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.on("console", lambda m: seen["console"].append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: seen["errors"].append(str(e)))
    page.on("requestfailed", lambda r: seen["failed"].append(r.url))
    page.goto(html.resolve().as_uri())
    page.wait_for_load_state("load")
    seen["code_cells"] = page.locator(".jp-CodeCell .jp-InputArea:visible").count()
    seen["title"] = page.title()
    seen["summary_visible"] = page.locator(".pco-summary").first.is_visible()
    seen["alts"] = page.eval_on_selector_all("img", "images => images.map(i => i.alt)")
    if screenshot is not None:
        page.screenshot(path=str(screenshot), full_page=False)
    page.set_viewport_size({"width": 390, "height": 844})  # a phone: wide tables scroll inside their box
    seen["phone_scroll_width"] = page.evaluate("document.documentElement.scrollWidth")
    page.close()
    return seen
