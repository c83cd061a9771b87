"""The process harness on small Python commands: waits, stops, restarts, the environment."""

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from harness.processes import Process, ProcessExited, process_tree
from harness.waiting import wait_until

# Prints a line, then runs until stopped; ignoring SIGTERM when told to.
SERVICE = """
import signal, sys, time
if "--stubborn" in sys.argv:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("up", flush=True)
time.sleep(60)
"""


def service(tmp_path, *flags: str, **options) -> Process:
    return Process([sys.executable, "-c", SERVICE, *flags], log=tmp_path / "service.log", **options)


def test_wait_until_returns_what_the_predicate_returned_and_names_what_it_waited_for():
    calls = iter([0, 0, "done"])
    assert wait_until(lambda: next(calls), timeout=5, interval=0.01, message="the third call") == "done"

    with pytest.raises(TimeoutError, match="waiting for nothing to happen"):
        wait_until(lambda: False, timeout=0.05, interval=0.01, message="nothing to happen")


def test_stop_sends_sigterm_to_the_group_and_sigkill_after_the_grace(tmp_path):
    with service(tmp_path) as polite:
        polite.wait_for_log("up", timeout=10)
        assert polite.stop() == -signal.SIGTERM

    stubborn = service(tmp_path, "--stubborn", stop_grace=0.5).start()
    stubborn.wait_for_log("up", timeout=10)
    started = time.monotonic()
    assert stubborn.stop() == -signal.SIGKILL
    assert 0.5 <= time.monotonic() - started < 5
    assert stubborn.stop() == -signal.SIGKILL  # again: nothing more to do


def test_a_process_that_exits_fails_the_wait_at_once(tmp_path):
    crashing = Process([sys.executable, "-c", "raise SystemExit(3)"], log=tmp_path / "crash.log").start()
    started = time.monotonic()

    with pytest.raises(ProcessExited, match="crash exited with status 3"):
        crashing.wait_for_log("never", timeout=30)
    assert time.monotonic() - started < 10


def test_a_process_that_does_not_get_there_in_time_is_stopped(tmp_path):
    process = service(tmp_path).start()

    with pytest.raises(TimeoutError):
        process.wait_for_log("never", timeout=0.5)
    assert not process.running()


def test_a_restarted_process_is_awaited_on_what_it_writes_after_the_restart(tmp_path):
    process = service(tmp_path).start()
    process.wait_for_log("up", timeout=10)
    process.kill()

    process.start()
    process.wait_for_log("up", timeout=10)
    assert (tmp_path / "service.log").read_text() == "up\nup\n"  # its second line, not the first
    process.stop()


def test_the_process_gets_exactly_the_environment_given(tmp_path, monkeypatch):
    monkeypatch.setenv("LEFT_OUT", "1")
    env = {name: value for name, value in os.environ.items() if name != "LEFT_OUT"} | {"GIVEN": "2"}
    code = "import os; print(os.environ.get('LEFT_OUT'), os.environ.get('GIVEN'))"
    process = Process([sys.executable, "-c", code], env=env, log=tmp_path / "env.log").start()

    assert process.wait(10) == 0
    assert (tmp_path / "env.log").read_text() == "None 2\n"


def ended(pid: int) -> bool:
    """Gone, or a zombie (ended; only its status is left for a parent to read)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_stop_ends_children_in_the_process_group(tmp_path):
    code = "import subprocess, sys, time; "
    code += "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
    code += "print('up', flush=True); time.sleep(60)"
    process = Process([sys.executable, "-c", code], log=tmp_path / "parent.log").start()
    process.wait_for_log("up", timeout=10)
    wait_until(lambda: len(process_tree(process.pid)) == 2, timeout=10, message="the child to start")
    [_, child] = process_tree(process.pid)

    process.stop()

    wait_until(lambda: ended(child), timeout=10, message="the child to end")
