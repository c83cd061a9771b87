"""The processes a benchmark runs, as deployed, and the memory they use."""

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

from harness.processes import REPO_ROOT, Process, process_tree

WEB_WORKERS = 2  # gunicorn's sync worker processes in the bench's web


def run_json(command: list[str], env: dict[str, str], *, timeout: float) -> dict:
    """Run a command to its end and return the JSON it printed; what it says on stderr shows."""
    done = subprocess.run(
        command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, text=True, timeout=timeout, check=True
    )
    return json.loads(done.stdout)


def worker(
    env: dict[str, str],
    logdir: Path,
    *,
    concurrency: int,
    log_name: str = "worker",
    node: str | None = None,
    include: str | None = None,
) -> Process:
    """A Celery worker; `node` names it (``a@%h``) as a worker on another machine would be,
    `include` loads one more task module into it."""
    command = [sys.executable, "-m", "celery", "-A", "mailing_service", "worker"]
    command += ["--concurrency", str(concurrency), "--loglevel", env.get("LOG_LEVEL", "INFO")]
    if node:
        command += ["--hostname", node]
    if include:
        command += ["--include", include]
    return Process(command, env=env, log=logdir / f"{log_name}.log")


def beat(env: dict[str, str], logdir: Path) -> Process:
    command = [sys.executable, "-m", "celery", "-A", "mailing_service", "beat", "--loglevel", "WARNING"]
    command += ["--schedule", str(logdir / "beat-schedule")]
    return Process(command, env=env, log=logdir / "beat.log")


def web(
    env: dict[str, str], logdir: Path, *, port: int, workers: int = WEB_WORKERS, log_name: str = "web"
) -> Process:
    command = [sys.executable, "-m", "gunicorn", "mailing_service.wsgi", "--workers", str(workers)]
    command += ["--bind", f"127.0.0.1:{port}", "--access-logfile", "-"]
    return Process(command, env=env, log=logdir / f"{log_name}.log")


def receipt_server(env: dict[str, str], logdir: Path, *, port: int) -> Process:
    command = [sys.executable, "manage.py", "serve_receipts", "--bind", f"127.0.0.1:{port}"]
    return Process(command, env=env, log=logdir / "receipts.log")


def cpu_seconds(*roots: Process) -> float:
    """CPU time (user and system) the processes and their descendants have used so far: the
    living ones' own, and that of the children they have reaped."""
    ticks = 0
    for root in roots:
        for pid in process_tree(root.pid):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            ticks += sum(map(int, fields[11:15]))  # utime, stime, cutime, cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def machine_cpu_seconds() -> float:
    """CPU time every process of the machine has used (busy, all cores), from /proc/stat."""
    user, nice, system, _idle, _iowait, irq, softirq = map(
        int, Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]
    )
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class PeriodicSampler:
    """Calls `sample` every `interval` seconds in a thread while the `with` block runs."""

    interval = 0.25

    def __init__(self):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        raise NotImplementedError


class RssSampler(PeriodicSampler):
    """The resident memory of process trees (the worker nodes), keeping the peaks and every sample."""

    def __init__(self, *processes: Process):
        super().__init__()
        self._roots = [process.pid for process in processes]
        self.peak_process_mb = 0.0
        self.peak_total_mb = 0.0
        self.totals_mb: list[float] = []

    def sample(self) -> None:
        sizes = [_rss_mb(pid) for root in self._roots for pid in process_tree(root)]
        self.peak_process_mb = max(self.peak_process_mb, *sizes)
        self.peak_total_mb = max(self.peak_total_mb, sum(sizes))
        self.totals_mb.append(sum(sizes))
