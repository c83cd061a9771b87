"""Drive a fake provider from tests and benchmarks: start it, read its records, change its behaviour."""

import os
import socket
import sys
from pathlib import Path
from typing import Any

import requests

from harness.processes import Process

START_TIMEOUT = 10.0
STOP_GRACE = 5.0


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

    def accepted_texts(self) -> dict[int, str]:
        """The text of each of the latest (up to records.RECENT_TEXTS) acceptances, by msg_id."""
        return dict(self._call("GET", "/accepted/texts"))

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


class FakeProviderProcess:
    """``python -m fake_provider`` as a process of its own, on free ports unless given, with its
    control API: ``with FakeProviderProcess("token", latency=0.05) as fake: fake.url, fake.control``.

    `options` are the command line flags in Python spelling: ``latency=0.05, error_rate=0.3,
    access_log=True``. The token goes through the environment, not the command line. Its output is
    this process's unless `log` names a file.
    """

    def __init__(
        self,
        token: str,
        *,
        port: int | None = None,
        control_port: int | None = None,
        host: str = "127.0.0.1",
        log: Path | None = None,
        **options: Any,
    ) -> None:
        self.token = token
        self.port = port or free_port(host)
        self.control_port = control_port or free_port(host)
        self.url = f"http://{host}:{self.port}/v1"
        self.control_url = f"http://{host}:{self.control_port}"
        command = [sys.executable, "-m", "fake_provider", "--host", host, "--port", str(self.port)]
        command += ["--control-port", str(self.control_port)]
        for name, value in options.items():
            flag = "--" + name.replace("_", "-")
            if value is True:
                command.append(flag)
            elif value is not None and value is not False:
                command += [flag, str(value)]
        self.process = Process(
            command,
            env=os.environ | {"PROVIDER_TOKEN": token},
            log=log,
            name="the fake provider",
            stop_grace=STOP_GRACE,
        )
        self.control = FakeProviderControl(self.control_url)

    def start(self) -> "FakeProviderProcess":
        """Returns once both ports answer /health."""
        self.process.start()
        for health_url in (self.url.removesuffix("/v1") + "/health", self.control_url + "/health"):
            self.process.wait_for_url(health_url, timeout=START_TIMEOUT)
        return self

    def stop(self) -> int | None:
        """SIGTERM, SIGKILL after STOP_GRACE seconds; returns the exit status."""
        self.control.close()
        return self.process.stop()

    def __enter__(self) -> "FakeProviderProcess":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
