"""Drive notebooks and kernels from a child process (the test's reactor serves device and proxy).

    python tests/support/notebooks.py run NOTEBOOK --workdir DIR [--times 2]
    python tests/support/notebooks.py interrupt --workdir DIR     (reads "interrupt" on stdin)

``run`` executes every cell of ``NOTEBOOK`` headless with nbclient, ``--times`` times in one
kernel (re-running all cells), and prints ``PASSED <n>`` per pass; a failing cell prints its
error and exits 1.

``interrupt`` starts a kernel, connects to ``$PYBRID_TARGET`` with ``pybrid.client.blocking``,
starts a long run, prints ``RUNNING`` once the run cell is executing, waits for the line
``interrupt`` on stdin, interrupts the kernel, then runs a short run on the same connection and
prints one JSON line: the interrupted cell's error name and the second run's shape.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

CELL_TIMEOUT = 120


def run(path: str, workdir: str, times: int) -> int:
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3",
                            resources={"metadata": {"path": workdir}})
    with client.setup_kernel():
        for n in range(1, times + 1):
            for index, cell in enumerate(nb.cells):
                try:
                    client.execute_cell(cell, index)
                except CellExecutionError as e:
                    print(f"FAILED pass {n} cell {index}:\n{e}", flush=True)
                    return 1
            print(f"PASSED {n}", flush=True)
    return 0


def _execute(kc: Any, code: str) -> str:
    return str(kc.execute(code))


def _reply(kc: Any, msg_id: str) -> dict[str, Any]:
    while True:
        msg = kc.get_shell_msg(timeout=CELL_TIMEOUT)
        if msg["parent_header"].get("msg_id") == msg_id:
            return dict(msg["content"])


def _wait_busy(kc: Any, msg_id: str) -> None:
    while True:
        msg = kc.get_iopub_msg(timeout=CELL_TIMEOUT)
        if (msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "status"
                and msg["content"]["execution_state"] == "busy"):
            return


def interrupt(workdir: str) -> int:
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3", cwd=workdir)
    try:
        setup = _execute(kc, "from pybrid.client import blocking\nimport os\n"
                             "c = blocking.connect(os.environ['PYBRID_TARGET'])")
        content = _reply(kc, setup)
        if content["status"] != "ok":
            print(json.dumps({"setup": content}), flush=True)
            return 1
        long_run = _execute(kc, "r = c.run(60, channels=1, sample_rate=1000)")
        _wait_busy(kc, long_run)
        print("RUNNING", flush=True)
        if sys.stdin.readline().strip() != "interrupt":
            return 1
        km.interrupt_kernel()
        interrupted = _reply(kc, long_run)
        after = _execute(kc, "r2 = c.run(0.01, channels=2, sample_rate=10_000)\n"
                             "shape = [list(x.samples.shape) for x in r2.carriers.values()]\n"
                             "c.close()")
        second = _reply(kc, after)
        probe = kc.execute("", user_expressions={"shape": "shape"})
        values = _reply(kc, probe).get("user_expressions", {})
        print(json.dumps({
            "interrupted": interrupted.get("ename"),
            "second": second["status"],
            "second_error": second.get("evalue"),
            "shape": values.get("shape", {}).get("data", {}).get("text/plain"),
        }), flush=True)
        return 0
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=("run", "interrupt"))
    ap.add_argument("notebook", nargs="?")
    ap.add_argument("--workdir", default=os.getcwd())
    ap.add_argument("--times", type=int, default=2)
    args = ap.parse_args()
    if args.mode == "run":
        sys.exit(run(args.notebook, args.workdir, args.times))
    sys.exit(interrupt(args.workdir))


if __name__ == "__main__":
    main()
