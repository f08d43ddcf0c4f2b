"""Kernels forked from one warm process, for the test suite.

A report kernel spends ~3 s of CPU importing pandas, SciPy, statsmodels, Ibis and pco_lib before its first
cell does any work; the suite starts ~60 kernels. Here one server process per test process imports them once
and forks a real ipykernel for each kernel the tests ask for: the same kernel protocol, Papermill, nbclient
and nbval as a report run, only without the imports.

- ``python forked_kernels.py serve SOCKET``: the server (conftest.py starts one per test process).
- ``python forked_kernels.py -f CONNECTION_FILE``: the ``python3`` kernelspec conftest.py puts first on
  ``JUPYTER_PATH``. It asks the server named in ``$PCO_TEST_KERNEL_SERVER`` for a kernel and stands in for it
  (signals are passed on, its exit is the kernel's, the kernel ends when it is killed); without the variable
  it becomes an ordinary ``ipykernel_launcher``, which is how a test asks for a fresh interpreter
  (``monkeypatch.delenv(SERVER_ENV)``). The determinism tests, where hash seeds must differ between runs,
  point it at a second server started with another ``PYTHONHASHSEED`` (conftest's ``other_hash_seed_kernels``).

Not imported before the fork: ``matplotlib.pyplot`` (and seaborn, pco_lib.report.plots), whose inline
backend hooks into the IPython shell when pyplot is first imported, so it must happen inside the kernel.
"""

import json
import os
import signal
import socket
import sys
import threading

SERVER_ENV = "PCO_TEST_KERNEL_SERVER"
PRELOAD = (  # what every report kernel imports, except pyplot (see above)
    "ipykernel.kernelapp", "ipykernel.ipkernel", "ipykernel.zmqshell", "IPython.core.interactiveshell",
    "matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg",
    "numpy", "pandas", "scipy.stats", "scipy.optimize", "statsmodels.genmod.generalized_linear_model",
    "statsmodels.regression.linear_model", "lifelines", "duckdb", "ibis", "pyarrow.parquet",
    "pco_lib.data", "pco_lib.data.checks", "pco_lib.stats.survival", "pco_lib.report.notebook",
    "pco_lib.report.formats",
)


def serve(path: str) -> None:
    """Import PRELOAD, then fork one kernel per connection on the Unix socket ``path``, until the parent (the
    test process) is gone. The forked kernels report their own exit to their client, so the server just
    lets them be reaped."""
    import importlib

    parent = os.getppid()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(path)  # first: a kernel asked for meanwhile waits for the imports instead of doing its own
    listener.listen(16)
    listener.settimeout(1.0)
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"  # as ipykernel sets it
    for name in PRELOAD:
        importlib.import_module(name)
    assert not {"matplotlib.pyplot", "matplotlib_inline.backend_inline"} & set(sys.modules), "see the docstring"
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernels are reaped by the system
    while os.getppid() == parent:
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            continue
        fds = []
        try:
            conn.settimeout(None)
            message, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
            if os.fork() == 0:
                listener.close()
                _kernel(conn, fds, json.loads(message))  # does not return
        except OSError:  # the client went away before it was served: it has no kernel to end
            pass
        finally:
            conn.close()
            for fd in fds:
                os.close(fd)


def _kernel(conn: socket.socket, fds: list[int], request: dict) -> None:
    """In the forked child: take the client's standard streams, folder, environment and arguments, then run
    ipykernel. The kernel ends when the client does (its end of ``conn`` closes)."""
    code = 1
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # a notebook's subprocess.run must be able to wait
        for target, fd in zip((0, 1, 2), fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        os.environ.pop("JPY_PARENT_PID", None)  # the client watches the parent; our parent is the server
        sys.argv = request["argv"]
        sys.path[0] = request["cwd"]  # as ``python -m ipykernel_launcher`` would have it
        conn.sendall(f"{os.getpid()}\n".encode())

        def watch():
            conn.recv(1)  # returns when the client is gone (killed with the run)
            os._exit(1)

        threading.Thread(target=watch, daemon=True).start()
        from ipykernel import kernelapp

        kernelapp.launch_new_instance()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        import atexit

        atexit._run_exitfuncs()  # what a normal interpreter exit would run (IPython's history, ...)
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            conn.sendall(f"exit {code}\n".encode())
        finally:
            os._exit(code)


def client(argv: list[str]) -> int:
    """Stand in for a kernel forked by the server: pass signals on, end when the kernel does (with its exit
    code), and end the kernel when the process that started us is gone (ipykernel's parent poller)."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        conn.connect(os.environ[SERVER_ENV])
    except (KeyError, OSError):  # asked for a fresh interpreter, or no server (any more)
        os.execv(sys.executable, [sys.executable, "-m", "ipykernel_launcher", *argv])
    request = {"argv": [sys.argv[0], *argv], "cwd": os.getcwd(), "env": dict(os.environ)}
    socket.send_fds(conn, [json.dumps(request).encode()], [0, 1, 2])
    pid = int(conn.recv(64))
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(signum, lambda n, _frame: os.kill(pid, n))
    starter = int(os.environ.get("JPY_PARENT_PID") or 0)

    def watch_parent():
        while True:
            if starter and os.getppid() != starter:
                os._exit(1)  # our end of the socket closes and the kernel ends
            threading.Event().wait(1.0)

    threading.Thread(target=watch_parent, daemon=True).start()
    reply = conn.recv(64)  # "exit N", or nothing when the kernel was killed
    return int(reply.split()[1]) if reply.startswith(b"exit ") else 1


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        serve(sys.argv[2])
    else:
        sys.exit(client(sys.argv[1:]))
