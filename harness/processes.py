"""A command run as a service: in its own process group, its output in a log file, waited for until it
answers, stopped with SIGTERM to its group and SIGKILL after a grace period, and never left behind.

Starting and stopping go through mirakuru's SimpleExecutor rather than our own Popen calls: besides
the process group and the SIGTERM-then-SIGKILL stop, it marks each child with a variable in its
environment, so stop() also ends descendants that left the group (a daemonised helper) and, at
interpreter exit, whatever a crashed or interrupted test run left running. Its readiness checks are
not used: its output check wants a pipe (ours is a log file) and its HTTP check refuses to start a
process whose address already answers; `wait_until` with the checks of harness.waiting does both.
"""

import contextlib
import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from mirakuru import SimpleExecutor
from mirakuru.base import ENV_UUID
from mirakuru.exceptions import ProcessFinishedWithError

from harness.waiting import log_contains, port_open, url_answers, wait_until

REPO_ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


class ProcessExited(RuntimeError):
    """The process ended while it was waited for."""


class _Executor(SimpleExecutor):
    """mirakuru's SimpleExecutor with exactly the environment it is given (plus its marker): its own
    adds this process's environment, where a variable the caller left out would come back."""

    def __init__(self, command: list[str], *, env: dict[str, str], **options):
        super().__init__(command, envvars=env, **options)
        self._given = env

    @property
    def envvars(self) -> dict[str, str]:
        return {
            name: value for name, value in super().envvars.items() if name in self._given or name == ENV_UUID
        }


class Process:
    """`command` with `env` (the whole environment) in `cwd`, writing to `log` (appended to; None:
    this process's own output). `name` (the log's, by default) is what errors call it.
    `stop_grace`: seconds between SIGTERM and SIGKILL in stop()."""

    def __init__(
        self,
        command: list[str],
        *,
        env: dict[str, str] | None = None,
        cwd: Path = REPO_ROOT,
        log: Path | None = None,
        name: str | None = None,
        stop_grace: float = 20.0,
    ):
        self.command = command
        self.name = name or (log.stem if log else Path(command[0]).name)
        self.env = dict(os.environ if env is None else env)
        self.cwd = cwd
        self.log = log
        self.stop_grace = stop_grace
        self.returncode: int | None = None
        self._executor: _Executor | None = None
        self._log_start = 0

    @property
    def pid(self) -> int:
        return self._executor.process.pid

    def running(self) -> bool:
        return self._executor is not None and self._executor.running()

    def start(self) -> "Process":
        with contextlib.ExitStack() as opened:
            output = {"stdout": None}
            if self.log is not None:
                log = opened.enter_context(open(self.log, "a"))  # the child keeps its own copy
                self._log_start = log.tell()
                output = {"stdout": log, "stderr": subprocess.STDOUT}
            self._executor = _Executor(
                self.command,
                env=self.env,
                cwd=str(self.cwd),
                timeout=self.stop_grace,  # a SimpleExecutor's only wait is the one in stop()
                stdin=subprocess.DEVNULL,
                **output,
            ).start()
        self.returncode = None
        return self

    def wait_until(self, check: Callable[[], T], *, timeout: float, message: str) -> T:
        """`wait_until` that gives up as soon as this process has exited. A process that does not
        get there in time is stopped: whoever waited for it fails, and nothing is left running."""

        def alive_and_checked() -> T:
            if not self.running():
                output = f" (its output: {self.log})" if self.log else ""
                raise ProcessExited(f"{self.name} exited with status {self.stop()}{output} before {message}")
            return check()

        try:
            return wait_until(alive_and_checked, timeout=timeout, message=f"{message} ({self.name})")
        except BaseException:
            self.stop()
            raise

    def wait_for_log(self, text: str, *, timeout: float = 30) -> None:
        """Until `text` is in what this start of the process wrote to its log."""
        self.wait_until(
            lambda: log_contains(self.log, text, start=self._log_start),
            timeout=timeout,
            message=f"{text!r} in {self.log}",
        )

    def wait_for_url(self, url: str, *, timeout: float = 30) -> None:
        self.wait_until(lambda: url_answers(url), timeout=timeout, message=f"{url} to answer")

    def wait_for_port(self, port: int, *, timeout: float = 30) -> None:
        self.wait_until(lambda: port_open(port), timeout=timeout, message=f"port {port} to accept")

    def send_signal(self, signum: int) -> None:
        """`signum` to the main process only."""
        self._executor.process.send_signal(signum)

    def wait(self, timeout: float) -> int:
        """Until the process exits by itself; its exit status. subprocess.TimeoutExpired after `timeout`."""
        self.returncode = self._executor.process.wait(timeout)
        return self.returncode

    def terminate(self, timeout: float = 30) -> int:
        """SIGTERM to the main process only, as `docker stop` or Kubernetes sends it: a Celery worker
        then stops its pool itself once running tasks end (a warm shutdown)."""
        self.send_signal(signal.SIGTERM)
        self.wait(timeout)
        return self.stop()

    def kill(self) -> int | None:
        """SIGKILL to the whole process group at once; returns the exit status."""
        process = self._executor and self._executor.process
        if process is None:
            return self.returncode
        self._executor.kill()
        self.returncode = process.returncode
        return self.returncode

    def stop(self) -> int | None:
        """SIGTERM to the process group, SIGKILL after the grace period; returns the exit status
        (None if it was never started). Safe to call again, or on a process that already ended."""
        process = self._executor and self._executor.process
        if process is None:
            return self.returncode
        # mirakuru raises when the status is neither 0 nor -SIGTERM; the caller judges it.
        with contextlib.suppress(ProcessFinishedWithError):
            self._executor.stop()
        self.returncode = process.returncode
        return self.returncode

    def __enter__(self) -> "Process":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants, parents first (children started by any thread)."""
    pids, index = [pid], 0
    while index < len(pids):
        for task in Path(f"/proc/{pids[index]}/task").glob("*"):
            with contextlib.suppress(OSError):
                pids.extend(int(child) for child in (task / "children").read_text().split())
        index += 1
    return pids
