"""The fake provider as a process: start line, raw load, shutdown."""

import contextlib
import json
import os
import subprocess
import sys
import threading
import time

import pytest
import requests

from fake_provider.client import STOP_GRACE, FakeProviderControl, FakeProviderProcess, free_port
from fake_provider.rawload import ID_OFFSET, measure, measure_threads
from harness.processes import Process, ProcessExited
from harness.waiting import wait_until

TOKEN = "test-token"


def test_start_prints_where_it_listens_and_sigterm_stops_it_cleanly_despite_a_hang(tmp_path):
    port, control_port = free_port(), free_port()
    command = [
        sys.executable,
        "-m",
        "fake_provider",
        "--port",
        str(port),
        "--control-port",
        str(control_port),
    ]
    log = tmp_path / "fake-provider.log"
    with Process(command + ["--token", TOKEN, "--hang-rate", "1"], log=log, stop_grace=STOP_GRACE) as process:
        process.wait_for_log("\n", timeout=10)
        line = log.read_text().splitlines(keepends=True)[0]
        assert line == f"fake provider listening on http://127.0.0.1:{port}/v1 (control on :{control_port})\n"
        hanging = threading.Thread(target=_send_ignoring_errors, args=(port,), daemon=True)
        hanging.start()
        control = FakeProviderControl(f"http://127.0.0.1:{control_port}")
        wait_until(
            lambda: control.stats()["in_flight"], timeout=3, interval=0.02, message="the request to hang"
        )

        started = time.monotonic()
        assert process.stop() == 0
        assert time.monotonic() - started < 3


def _send_ignoring_errors(port):
    with contextlib.suppress(requests.RequestException):
        requests.post(
            f"http://127.0.0.1:{port}/v1/send/1",
            json={"id": 1, "phone": 79001234567, "text": "hi"},
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=10,
        )


def test_start_fails_loudly_when_the_port_is_taken():
    with FakeProviderProcess(TOKEN) as first:
        second = FakeProviderProcess(TOKEN, port=first.port)
        with pytest.raises(ProcessExited, match="the fake provider exited"):
            second.start()
        assert not second.process.running()


def test_raw_load_keeps_requests_in_flight_with_ids_far_from_real_ones():
    with FakeProviderProcess(TOKEN, latency=0.01) as fake:
        result = measure(fake.url, TOKEN, concurrency=10, seconds=0.5)

        assert result["requests"] > 50
        assert result["errors"] == 0
        assert result["rate"] > 0
        stats = fake.control.stats()
        assert stats["accepted_total"] == result["requests"]
        assert stats["duplicates"] == 0
        assert min(msg_id for msg_id, _ in fake.control.accepted()) >= ID_OFFSET


def test_raw_load_from_the_command_line_takes_the_token_from_the_environment_and_prints_json():
    with FakeProviderProcess(TOKEN, latency=0.01) as fake:
        done = subprocess.run(
            [sys.executable, "-m", "fake_provider.rawload", "--url", fake.url]
            + ["--concurrency", "4", "--seconds", "0.5", "--first-id", str(ID_OFFSET + 7)],
            env={**os.environ, "PROVIDER_TOKEN": TOKEN},
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )

        result = json.loads(done.stdout)
        assert result["requests"] > 20
        assert result["errors"] == 0
        assert fake.control.stats()["accepted_total"] == result["requests"]
        assert min(msg_id for msg_id, _ in fake.control.accepted()) == ID_OFFSET + 7


def test_raw_load_counts_errors():
    with FakeProviderProcess(TOKEN, error_rate=1.0) as fake:
        result = measure(fake.url, TOKEN, concurrency=2, seconds=0.2)

        assert result["requests"] == result["errors"] > 0


def test_thread_pool_load_with_requests_sends_valid_requests_from_every_thread():
    with FakeProviderProcess(TOKEN, latency=0.01) as fake:
        result = measure_threads(fake.url, TOKEN, threads=4, seconds=0.5)

        assert result["requests"] > 20
        assert result["errors"] == 0
        stats = fake.control.stats()
        assert stats["accepted_total"] == result["requests"]
        assert stats["duplicates"] == 0
