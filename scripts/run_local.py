"""Runs the services of the Procfile for `make run`, each line prefixed with its name, and prints
where to click once they answer.

honcho's documented API reads the Procfile (honcho.environ) and runs each service in a session of
its own, its lines and its start and exit sent to a queue (honcho.process.Process); this script
prints them, prefixed with the time and the service's name. The stopping is ours too, because
`honcho start` falls short there (honcho 2.0.0, manager.py): it sends
SIGTERM to each service's whole process group, so Celery's pool children die mid-task instead of
the main process finishing them (warm shutdown); it sends SIGKILL 5 s after the first service
exits, whatever the others still have to finish; a second Ctrl-C does nothing; its .env overrides
the environment, the reverse of settings.py; and it reads each service's output in a Python process
of its own, where threads of this one do.

Stopping, on Ctrl-C or SIGTERM (to this process or to its whole group): SIGTERM to each service's
main process, SIGKILL to the process group of any still running RUN_STOP_TIMEOUT seconds later.
The same stop often arrives twice at once (make forwards SIGTERM to us while the group gets it
too): signals within SAME_STOP seconds of the first count once; a later one kills at once.
When a service exits on its own, the others are stopped the same way and the exit status is
10 + its line among the services (11 for the first), with its name in the last line.

Variables (environment, then .env): RUN_WEB_ADDR, RUN_PROVIDER_CONTROL_PORT, RUN_STOP_TIMEOUT,
RUN_STARTED_AT (unix time `make run` started, for the summary), PROVIDER_URL, PROVIDER_TOKEN,
LOG_LEVEL. See .env.example.
"""

import contextlib
import datetime
import itertools
import os
import queue
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from functools import partial
from pathlib import Path
from typing import TextIO
from urllib.parse import urlsplit

from honcho.environ import parse, parse_procfile
from honcho.process import Process

from harness.waiting import url_answers, wait_until

REPO_ROOT = Path(__file__).resolve().parent.parent
SAME_STOP = 1.0
READY_TIMEOUT = 120.0
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
OWN_NAME = "run"
# What a service without an address prints once it is up: the summary waits for these lines, so
# that it comes after their banners.
READY_LINES = {"worker": b" ready.", "beat": b"beat: Starting..."}
# Each service's prefix in its own colour on a terminal: cyan, yellow, green, magenta, red, blue.
COLOURS = ("36", "33", "32", "35", "31", "34")


def run_environment() -> dict[str, str]:
    """.env under the environment (the environment wins, as in settings.py), with this script's
    defaults and what the Procfile needs."""
    dotenv = REPO_ROOT / ".env"
    env = parse(dotenv.read_text()) if dotenv.exists() else {}
    env.update(os.environ)
    env.setdefault("RUN_WEB_ADDR", "127.0.0.1:8000")
    env.setdefault("RUN_STOP_TIMEOUT", "30")
    env.setdefault("LOG_LEVEL", "INFO")
    env.setdefault("PROVIDER_URL", "http://127.0.0.1:8070/v1")
    provider = urlsplit(env["PROVIDER_URL"])
    env["RUN_PROVIDER_HOST"] = provider.hostname or ""
    env["RUN_PROVIDER_PORT"] = str(provider.port or (443 if provider.scheme == "https" else 80))
    env.setdefault("RUN_PROVIDER_CONTROL_PORT", str(int(env["RUN_PROVIDER_PORT"]) + 1))
    if not env.get("PROVIDER_TOKEN"):
        # Nothing configured: a fresh token for this run, shared by the fake provider and the senders.
        env["PROVIDER_TOKEN"] = secrets.token_urlsafe(24)
    # The Procfile's `python` is the one running this script (.venv's).
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    # Children write to pipes: without this, Python would hold their lines back in a buffer.
    env["PYTHONUNBUFFERED"] = "1"
    return env


def describe(returncode: int) -> str:
    return f"exit {returncode}" if returncode >= 0 else signal.Signals(-returncode).name


class Printer:
    """Writes each line as ``12:00:01 worker | text``, the prefix in the service's colour on a
    terminal (this script's own lines, under OWN_NAME, in none)."""

    def __init__(self, names: list[str], output: TextIO):
        self.output = output
        self.width = max(map(len, [*names, OWN_NAME]))
        colours = itertools.cycle(COLOURS) if output.isatty() else itertools.repeat(None)
        self.colours = dict(zip(names, colours, strict=False))

    def write(self, name: str, data: bytes | str, at: datetime.datetime) -> None:
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
        prefix = f"{at:%H:%M:%S} {name.ljust(self.width)} | "
        if self.colours.get(name):
            prefix = f"\033[0m\033[{self.colours[name]}m{prefix}\033[0m"
        for line in text.splitlines():
            print(prefix + line, file=self.output, flush=True)


class Supervisor:
    def __init__(self, services: dict[str, str], env: dict[str, str], *, stop_timeout: float):
        self.env = env
        self.stop_timeout = stop_timeout
        # honcho's events (line, start, stop) of every service, and this script's own lines (str).
        self.events: queue.Queue = queue.Queue()
        self.printer = Printer(list(services), sys.stdout)
        self.processes = {
            name: Process(command, name=name, env=env, cwd=str(REPO_ROOT))
            for name, command in services.items()
        }
        self.pids: dict[str, int] = {}
        self.exits: dict[str, int] = {}
        self.killed: set[str] = set()
        self.died: str | None = None
        self.stop_started: float | None = None
        self.first_signal: float | None = None
        # Written by the signal handler, read by the loop: handlers must not print or take locks.
        self.signals: list[int] = []
        self.summary_process: subprocess.Popen | None = None
        self.awaited_lines = {name: line for name, line in READY_LINES.items() if name in services}
        self.lines_seen = threading.Event()
        if not self.awaited_lines:
            self.lines_seen.set()

    def say(self, text: str) -> None:
        self.events.put(text)

    def run(self, ready_urls: list[str], summary_command: list[str]) -> int:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda signum, frame: self.signals.append(signum))
        for name, process in self.processes.items():
            threading.Thread(target=process.run, args=(self.events,), name=name, daemon=True).start()
        summary = threading.Thread(target=self.summarise_when_ready, args=(ready_urls, summary_command))
        summary.daemon = True
        summary.start()
        try:
            while len(self.exits) < len(self.processes):
                self.handle_signals()
                if self.stop_started is not None and time.monotonic() > self.stop_started + self.stop_timeout:
                    self.kill_running(f"still running {self.stop_timeout:g} s after SIGTERM")
                with contextlib.suppress(queue.Empty):
                    self.handle(self.events.get(timeout=0.1))
        except BaseException:
            # Leave nothing running behind a supervisor that fails.
            self.kill_running("the supervisor failed")
            raise
        while not self.events.empty():
            self.handle(self.events.get())
        status, closing = self.outcome()
        self.show(OWN_NAME, closing)
        return status

    def show(self, name: str, data: bytes | str, at: datetime.datetime | None = None) -> None:
        # Our output may be gone (`| tee` ends on Ctrl-C): the services still need stopping.
        with contextlib.suppress(OSError):
            self.printer.write(name, data, at or datetime.datetime.now())

    def handle(self, message) -> None:
        if isinstance(message, str):
            self.show(OWN_NAME, message)
        elif message.type == "line":
            self.show(message.name, message.data, message.time)
            if message.name in self.awaited_lines and self.awaited_lines[message.name] in message.data:
                del self.awaited_lines[message.name]
                if not self.awaited_lines:
                    self.lines_seen.set()
        elif message.type == "start":
            self.pids[message.name] = message.data["pid"]
            if self.stop_started is not None:
                self.terminate(message.name)
        elif message.type == "stop":
            returncode = self.exits[message.name] = message.data["returncode"]
            self.say(f"{message.name} stopped ({describe(returncode)})")
            if self.stop_started is None:
                self.died = message.name
                self.stop(f"{message.name} exited by itself ({describe(returncode)}): stopping the others")

    def handle_signals(self) -> None:
        while self.signals:
            name = signal.Signals(self.signals.pop(0)).name
            now = time.monotonic()
            if self.first_signal is None:
                self.first_signal = now
                if self.stop_started is None:
                    self.stop(f"{name} received: stopping")
                else:
                    self.say(f"{name} received: already stopping (again to kill now)")
            elif now - self.first_signal > SAME_STOP:
                self.kill_running(f"{name} received again")

    def stop(self, reason: str) -> None:
        if self.stop_started is not None:
            return
        self.stop_started = time.monotonic()
        self.say(f"{reason}; waiting up to {self.stop_timeout:g} s for each service (Ctrl-C again kills now)")
        if self.summary_process is not None:
            self.summary_process.terminate()
        for name in self.pids:
            self.terminate(name)

    def running(self) -> list[str]:
        return [name for name in self.pids if name not in self.exits]

    def terminate(self, name: str) -> None:
        # The main process only: Celery's worker stops its own pool once running tasks end.
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pids[name], signal.SIGTERM)

    def kill_running(self, reason: str) -> None:
        for name in self.running():
            if name not in self.killed:
                self.say(f"{reason}: SIGKILL to {name} and its children")
                self.killed.add(name)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pids[name], signal.SIGKILL)

    def outcome(self) -> tuple[int, str]:
        """The exit status and the closing line."""
        if self.died is not None:
            status = 10 + list(self.processes).index(self.died) + 1
            return status, f"stopped: {self.died} had exited by itself (exit status {status})"
        unclean = [
            name
            for name, returncode in self.exits.items()
            if name in self.killed or returncode not in (0, -signal.SIGTERM)
        ]
        if unclean:
            return 1, f"stopped, not cleanly: {', '.join(unclean)}"
        return 0, "stopped cleanly"

    def summarise_when_ready(self, ready_urls: list[str], summary_command: list[str]) -> None:
        # Started beside the services: its own start-up and its wait for the demo mailing overlap theirs.
        self.summary_process = subprocess.Popen(
            summary_command,
            cwd=REPO_ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # a Ctrl-C is ours to handle, not its
        )
        deadline = time.monotonic() + READY_TIMEOUT
        checks = [(f"{url} answers", partial(url_answers, url)) for url in ready_urls]
        checks.append((f"{' and '.join(self.awaited_lines)} say they are up", self.lines_seen.is_set))
        for what, ready in checks:
            try:
                wait_until(
                    lambda ready=ready: self.stop_started is not None or ready(),
                    timeout=max(0.0, deadline - time.monotonic()),
                    interval=0.2,
                    message=what,
                )
            except TimeoutError:
                self.say(f"not ready after {READY_TIMEOUT:g} s: waited until {what}")
                self.summary_process.terminate()
                return
            if self.stop_started is not None:
                return
        output, _ = self.summary_process.communicate()
        if self.stop_started is not None:
            return
        rule = "-" * 72
        lines = [rule, *output.splitlines()]
        started_at = self.env.get("RUN_STARTED_AT")
        if started_at:
            lines.append(f"Ready {time.time() - float(started_at):.0f} s after `make run` started.")
        lines += ["Ctrl-C stops everything.", rule]
        for line in lines:
            self.say(line)


def main() -> int:
    env = run_environment()
    # Web, worker and beat write their metrics to one folder, emptied at each start (old processes'
    # files would add their counts forever); /metrics adds them up.
    metrics = REPO_ROOT / (
        env.get("PROMETHEUS_MULTIPROC_DIR") or Path(env.get("VAR_DIR") or "var") / "metrics"
    )
    shutil.rmtree(metrics, ignore_errors=True)
    metrics.mkdir(parents=True)
    env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics)
    services = parse_procfile((REPO_ROOT / "Procfile").read_text()).processes
    web_url = f"http://{env['RUN_WEB_ADDR']}"
    ready_urls = [f"{web_url}/health/"]
    summary_command = [sys.executable, "manage.py", "demo_summary", "--base-url", web_url, "--wait", "60"]
    if env["RUN_PROVIDER_HOST"] in LOCAL_HOSTS:
        control_url = f"http://{env['RUN_PROVIDER_HOST']}:{env['RUN_PROVIDER_CONTROL_PORT']}"
        ready_urls.append(f"{control_url}/health")
        summary_command += ["--provider-stats-url", f"{control_url}/stats"]
    else:
        del services["provider"]
        print(f"PROVIDER_URL is {env['PROVIDER_URL']}: not starting the fake provider", flush=True)
    supervisor = Supervisor(services, env, stop_timeout=float(env["RUN_STOP_TIMEOUT"]))
    return supervisor.run(ready_urls, summary_command)


if __name__ == "__main__":
    sys.exit(main())
