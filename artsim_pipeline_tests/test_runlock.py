"""One `artsim materialize` per ARTSIM_HOME, and a Dagster instance that several processes can
create at once on a fresh home."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from artsim_pipeline.runlock import RunLockBusy, run_lock

REPO = Path(__file__).resolve().parents[1]

HOLD = textwrap.dedent(
    """
    import sys, time
    from artsim_pipeline.runlock import run_lock
    with run_lock(sys.argv[1]):
        print("held", flush=True)
        time.sleep(600)
    """
)


def env_for(home: Path) -> dict:
    return {**os.environ, "ARTSIM_HOME": str(home), "PYTHONPATH": str(REPO), "DAGSTER_HOME": str(REPO),
            "DAGSTER_DISABLE_TELEMETRY": "1"}


@pytest.fixture
def holder(tmp_path):
    """A process holding the run lock of a fresh home (as a running `artsim materialize` does)."""
    home = tmp_path / "home"
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(home)], env=env_for(home), stdout=subprocess.PIPE,
                            text=True, start_new_session=True)
    assert proc.stdout.readline().strip() == "held"
    yield home, proc
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_a_second_materialize_exits_with_a_clear_message(holder):
    home, proc = holder
    second = subprocess.run([sys.executable, "-m", "artsim_pipeline.cli", "materialize"], env=env_for(home),
                            capture_output=True, text=True, timeout=120)
    assert second.returncode == 75, second.stderr
    assert f"pid {proc.pid}" in second.stderr and "already running on this ARTSIM_HOME" in second.stderr
    assert "--wait" in second.stderr and "Traceback" not in second.stderr
    assert not (home / "dagster" / "runs.db").exists()  # it touched nothing


def test_the_lock_waits_when_asked_and_is_freed_when_its_holder_dies(holder):
    home, proc = holder
    with pytest.raises(RunLockBusy):
        with run_lock(home):
            pass
    told = []
    os.killpg(proc.pid, signal.SIGKILL)  # even a killed run leaves no stale lock behind
    proc.wait()
    with run_lock(home, wait=True, poll_s=0.05, on_wait=told.append):
        with pytest.raises(RunLockBusy):
            with run_lock(home):  # held by this process now: a second holder is refused
                pass


def test_wait_blocks_until_the_holder_finishes(tmp_path):
    home = tmp_path / "home"
    release = tmp_path / "release"
    script = textwrap.dedent(
        """
        import sys, time, pathlib
        from artsim_pipeline.runlock import run_lock
        with run_lock(sys.argv[1]):
            print("held", flush=True)
            while not pathlib.Path(sys.argv[2]).exists():
                time.sleep(0.05)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(home), str(release)], env=env_for(home),
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    told = []

    def on_wait(holder):
        told.append(holder)
        release.touch()  # the first run finishes while the second waits

    with run_lock(home, wait=True, poll_s=0.05, on_wait=on_wait):
        assert proc.wait(timeout=30) == 0  # the lock was only ours once the holder had finished
    assert len(told) == 1 and f"pid {proc.pid}" in told[0]


INSTANCE = textwrap.dedent(
    """
    import sys, time
    start = float(sys.argv[1])
    while time.time() < start:
        pass
    from dagster import DagsterInstance
    instance = DagsterInstance.get()
    instance.get_runs(limit=1)
    print("ok", flush=True)
    """
)


def test_several_processes_create_the_instance_of_a_fresh_home_at_once(tmp_path):
    procs = []
    for trial in range(2):
        home = tmp_path / f"home{trial}"
        start = time.time() + 5  # after every process has imported dagster
        procs += [subprocess.Popen([sys.executable, "-c", INSTANCE, str(start)], env=env_for(home),
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
        for p in procs[-3:]:
            out, err = p.communicate(timeout=180)
            assert p.returncode == 0 and out.strip() == "ok", err[-2000:]
