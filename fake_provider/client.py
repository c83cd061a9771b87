"""Drive a fake provider from tests and benchmarks: start it, read its records, change its behaviour."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

REPO_ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 10.0


class FakeProviderControl:
    """The control API of a running fake provider, e.g. ``FakeProviderControl("http://127.0.0.1:8071")``."""

    def __init__(self, base_url: str, timeout: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._session = requests.Session()

    def stats(self, after: float | None = None) -> dict[str, Any]:
        """Counts since the last reset; with `after` (unix time), also `accepted_after`."""
        return self._call("GET", "/stats", params=None if after is None else {"after": repr(after)})

    def accepted(self) -> list[tuple[int, float]]:
        """One (msg_id, accepted_at) per acceptance, duplicates included."""
        return [(msg_id, accepted_at) for msg_id, accepted_at in self._call("GET", "/accepted")]

    def reset(self) -> None:
        """Forget the records; the configuration stays."""
        self._call("POST", "/control/reset")

    def config(self) -> dict[str, Any]:
        return self._call("GET", "/config")

    def configure(self, **options: Any) -> dict[str, Any]:
        """Change some options (token, latency, error_rate, seed...); the others stay."""
        return self._call("PUT", "/control/config", json=options)

    def outage(self, mode: str, seconds: float = 0.0) -> dict[str, Any]:
        """ "refuse" connections or answer "503" for `seconds`; "none" ends an outage now."""
        return self._call("POST", "/control/outage", json={"mode": mode, "seconds": seconds})

    def close(self) -> None:
        self._session.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._session.request(method, self.base_url + path, timeout=self.timeout, **kwargs)
        response.raise_for_status()
        return response.json()


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (another process may still take it before we do)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def start_fake_provider(
    port: int, control_port: int | None, token: str, *, host: str = "127.0.0.1", **options: Any
) -> subprocess.Popen:
    """Start ``python -m fake_provider`` and return once both ports answer /health.

    `control_port` None means port + 1. Stop it with `stop_fake_provider`.

    `options` are the command line flags in Python spelling: ``latency=0.05, error_rate=0.3,
    access_log=True``. The token goes through the environment, not the command line.
    """
    control_port = port + 1 if control_port is None else control_port
    command = [sys.executable, "-m", "fake_provider", "--host", host, "--port", str(port)]
    command += ["--control-port", str(control_port)]
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        if value is True:
            command.append(flag)
        elif value is not None and value is not False:
            command += [flag, str(value)]
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=os.environ | {"PROVIDER_TOKEN": token})

    deadline = time.monotonic() + START_TIMEOUT
    for health_url in (f"http://{host}:{port}/health", f"http://{host}:{control_port}/health"):
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the fake provider exited with code {process.returncode}")
            try:
                if requests.get(health_url, timeout=0.5).ok:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                stop_fake_provider(process)
                raise RuntimeError(f"the fake provider did not answer {health_url} in {START_TIMEOUT} s")
            time.sleep(0.05)
    return process


def stop_fake_provider(process: subprocess.Popen, timeout: float = 5.0) -> int:
    """SIGTERM, then SIGKILL if it does not exit in `timeout` seconds; returns the exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode
