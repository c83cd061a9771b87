"""`make run` as a user runs it: the Procfile's services under scripts/run_local.py, on free ports,
with its state (SQLite, broker folder, cache) in a temporary VAR_DIR. Needs nothing but Python."""

import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from honcho.environ import parse_procfile

from fake_provider.client import free_port
from harness.processes import REPO_ROOT, Process, process_tree

STOP_TIMEOUT = 30  # RUN_STOP_TIMEOUT: the services' grace period
SERVICES = ("provider", "worker", "beat", "web")


@pytest.fixture
def run_env(tmp_path) -> dict[str, str]:
    """The defaults of a fresh clone, except for the ports and the state folder."""
    provider_port = free_port()
    return os.environ | {
        "VAR_DIR": str(tmp_path / "var"),
        # Explicit, so that neither the tests' environment nor a developer's .env is used.
        "DATABASE_URL": f"sqlite:///{tmp_path / 'var' / 'db.sqlite3'}",
        "CACHE_URL": f"filecache://{tmp_path / 'var' / 'cache'}",
        "CELERY_BROKER_URL": "filesystem://localhost/",
        "DJANGO_SECRET_KEY": "",
        "PROVIDER_URL": f"http://127.0.0.1:{provider_port}/v1",
        "PROVIDER_TOKEN": "",
        "RUN_PROVIDER_CONTROL_PORT": str(free_port()),
        "RUN_WEB_ADDR": f"127.0.0.1:{free_port()}",
        "RUN_STOP_TIMEOUT": str(STOP_TIMEOUT),
        "LOG_LEVEL": "INFO",
    }


@pytest.fixture
def processes():
    """Every process a test started, found through /proc; whatever is left is killed at the end."""
    seen: set[int] = set()

    def snapshot(root: Process) -> set[int]:
        seen.update(process_tree(root.pid))
        return set(seen)

    yield snapshot
    for pid in alive(seen):
        os.kill(pid, signal.SIGKILL)


def command_line(pid: int) -> bytes:
    """A process's command line; empty once it has ended (a short-lived child of the services may
    end between the snapshot and this read: CI once failed on it)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def alive(pids: set[int]) -> set[int]:
    """The pids that still run (a zombie has ended: it only waits for its parent to read its status)."""
    running = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            running.add(pid)
    return running


def test_make_run_sends_the_demo_mailing_and_stops_every_service_cleanly_on_sigterm_to_its_group(
    run_env, tmp_path, processes
):
    make = Process(["make", "run"], env=run_env, log=tmp_path / "make-run.log").start()
    make.wait_for_log("Ctrl-C stops everything.", timeout=120)
    log = (tmp_path / "make-run.log").read_text()
    web = f"http://{run_env['RUN_WEB_ADDR']}"

    # A fresh clone's state made by setup_demo, which sums the migrations up in one line.
    assert stat.S_IMODE((tmp_path / "var" / "secret_key").stat().st_mode) == 0o600
    assert re.search(r"Database: \d+ migrations applied\.", log) and "Applying " not in log, log
    # The summary tells the truth: the demo mailing is sent, the token and the addresses work.
    assert re.search(r"Demo mailing (\d+): 20 of 20 messages sent", log)
    mailing_id = re.search(r"Demo mailing (\d+)", log)[1]
    token = re.search(r"API token: (\w+)", log)[1]
    assert f"Admin: {web}/admin/  user: admin" in log
    statistics = requests.get(
        f"{web}/api/v1/mailings/{mailing_id}/statistics/",
        headers={"Authorization": f"Token {token}"},
        timeout=5,
    )
    assert statistics.json()["message_counts"]["sent"] == 20, statistics.json()
    assert requests.get(f"{web}/metrics", timeout=5).status_code == 200
    # No collectstatic: WhiteNoise serves the admin's files from the apps.
    assert requests.get(f"{web}/static/admin/css/base.css", timeout=5).status_code == 200
    provider_stats = f"http://127.0.0.1:{run_env['RUN_PROVIDER_CONTROL_PORT']}/stats"
    assert f"Fake provider's counts: {provider_stats}" in log
    assert requests.get(provider_stats, timeout=5).json()["unique_accepted"] == 20

    # make, the supervisor, four services and the worker's two pool children.
    started = processes(make)
    assert len(started) == 8, log

    # What a terminal multiplexer, an IDE or `timeout` sends: make passes it on, so it comes twice.
    os.killpg(make.pid, signal.SIGTERM)
    make.wait(STOP_TIMEOUT + 15)
    log = (tmp_path / "make-run.log").read_text()

    # Beat ran long enough to send its scan (every 5 s), which is quiet at INFO.
    assert "beat: Starting..." in log
    assert "Sending due task" not in log and "launch_due_mailings[" not in log
    assert log.count("SIGTERM received") == 1, log
    assert "worker: Warm shutdown" in log
    for service in SERVICES:
        assert re.search(rf"run +\| {service} stopped \((exit 0|SIGTERM)\)", log), log
    assert "SIGKILL" not in log
    assert log.rstrip().endswith("stopped cleanly"), log
    assert not alive(started)


def start_supervisor(run_env, tmp_path, processes) -> tuple[Process, set[int]]:
    """The supervisor alone, with the same Procfile (no database needed), once the worker is up; the
    local state (secret key, broker folder) made first, as make run's setup_demo does."""
    subprocess.run(
        [sys.executable, "manage.py", "ensure_local_state"],
        cwd=REPO_ROOT,
        env=run_env,
        check=True,
        timeout=60,
    )
    command = [sys.executable, "-m", "scripts.run_local"]
    supervisor = Process(command, env=run_env, log=tmp_path / "supervisor.log").start()
    supervisor.wait_for_log(" ready.", timeout=60)
    return supervisor, processes(supervisor)


def test_when_a_service_dies_the_others_stop_and_the_exit_status_names_it(run_env, tmp_path, processes):
    supervisor, started = start_supervisor(run_env, tmp_path, processes)
    [beat] = [pid for pid in started if b"\0beat\0" in command_line(pid)]

    os.kill(beat, signal.SIGKILL)
    supervisor.wait(STOP_TIMEOUT + 15)
    log = (tmp_path / "supervisor.log").read_text()

    services = list(parse_procfile((REPO_ROOT / "Procfile").read_text()).processes)
    assert supervisor.returncode == 10 + services.index("beat") + 1 == 13
    assert "beat exited by itself (SIGKILL): stopping the others" in log
    assert "worker: Warm shutdown" in log
    assert log.rstrip().endswith("stopped: beat had exited by itself (exit status 13)"), log
    assert not alive(started)


def test_a_second_signal_a_second_later_kills_what_is_still_stopping(run_env, tmp_path, processes):
    supervisor, started = start_supervisor(run_env, tmp_path, processes)

    supervisor.send_signal(signal.SIGTERM)
    first = time.monotonic()
    supervisor.send_signal(signal.SIGTERM)  # at once: the same stop, as when make passes it on
    supervisor.wait_for_log("worker: Warm shutdown", timeout=10)
    time.sleep(max(0.0, first + 1.5 - time.monotonic()))
    supervisor.send_signal(signal.SIGINT)  # a second Ctrl-C, while the worker still shuts down
    supervisor.wait(10)
    log = (tmp_path / "supervisor.log").read_text()

    assert log.count("SIGTERM received") == 1, log
    assert "SIGINT received again: SIGKILL to worker and its children" in log
    assert supervisor.returncode == 1
    assert re.search(r"stopped, not cleanly: .*worker", log), log
    assert not alive(started)
