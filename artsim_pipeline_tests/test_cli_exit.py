"""`artsim materialize` ends its process without tearing every module down
(`cli.exit_without_teardown`), after everything Python's own exit does that matters."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

EXITING = textwrap.dedent(
    """
    import atexit, pathlib, sys, tempfile, threading
    from artsim_pipeline.cli import exit_without_teardown

    marker = pathlib.Path(sys.argv[1])
    atexit.register(lambda: marker.write_text("atexit ran"))
    kept = tempfile.TemporaryDirectory(dir=marker.parent, prefix="scratch-")  # cleaned by its finalizer at exit
    release = threading.Event()
    worker = threading.Thread(target=release.wait)
    if sys.argv[2] == "busy":
        worker.start()
    sys.stdout.write("y" * 100000)  # buffered, no newline: flushed before the end
    exit_without_teardown(3)
    sys.stdout.write("|returned")
    release.set()
    """
)


def run(tmp_path: Path, mode: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", EXITING, str(tmp_path / "marker"), mode], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)


def test_it_ends_with_the_code_after_the_exit_handlers_and_flushed_output(tmp_path):
    done = run(tmp_path, "idle")
    assert done.returncode == 3, done.stderr
    assert done.stdout == "y" * 100000
    assert (tmp_path / "marker").read_text() == "atexit ran"
    assert not list(tmp_path.glob("scratch-*"))


def test_it_leaves_the_ordinary_exit_to_a_process_with_a_thread_still_running(tmp_path):
    done = run(tmp_path, "busy")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "y" * 100000 + "|returned"
    assert (tmp_path / "marker").read_text() == "atexit ran"
