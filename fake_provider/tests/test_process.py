"""The fake provider as a process: start line, raw load, shutdown."""

import contextlib
import json
import os
import subprocess
import sys
import threading
import time

import requests

from fake_provider.client import FakeProviderControl, free_port, start_fake_provider, stop_fake_provider
from fake_provider.rawload import ID_OFFSET, measure, measure_threads

TOKEN = "test-token"


def test_start_prints_where_it_listens_and_sigterm_stops_it_cleanly_despite_a_hang():
    port, control_port = free_port(), free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "fake_provider", "--port", str(port), "--control-port", str(control_port)]
        + ["--token", TOKEN, "--hang-rate", "1"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()
        assert line == f"fake provider listening on http://127.0.0.1:{port}/v1 (control on :{control_port})\n"
        hanging = threading.Thread(target=_send_ignoring_errors, args=(port,), daemon=True)
        hanging.start()
        control = FakeProviderControl(f"http://127.0.0.1:{control_port}")
        deadline = time.monotonic() + 3
        while control.stats()["in_flight"] == 0:
            assert time.monotonic() < deadline
            time.sleep(0.02)

        started = time.monotonic()
        assert stop_fake_provider(process) == 0
        assert time.monotonic() - started < 3
    finally:
        stop_fake_provider(process)
        process.stdout.close()


def _send_ignoring_errors(port):
    with contextlib.suppress(requests.RequestException):
        requests.post(
            f"http://127.0.0.1:{port}/v1/send/1",
            json={"id": 1, "phone": 79001234567, "text": "hi"},
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=10,
        )


def test_start_fails_loudly_when_the_port_is_taken():
    port, control_port = free_port(), free_port()
    first = start_fake_provider(port, control_port, TOKEN)
    try:
        try:
            second = start_fake_provider(port, free_port(), TOKEN)
        except RuntimeError as error:
            assert "exited" in str(error)
        else:
            stop_fake_provider(second)
            raise AssertionError("a second fake provider started on a taken port")
    finally:
        stop_fake_provider(first)


def test_raw_load_keeps_requests_in_flight_with_ids_far_from_real_ones():
    port, control_port = free_port(), free_port()
    process = start_fake_provider(port, control_port, TOKEN, latency=0.01)
    try:
        result = measure(f"http://127.0.0.1:{port}/v1", TOKEN, concurrency=10, seconds=0.5)

        assert result["requests"] > 50
        assert result["errors"] == 0
        assert result["rate"] > 0
        control = FakeProviderControl(f"http://127.0.0.1:{control_port}")
        stats = control.stats()
        assert stats["accepted_total"] == result["requests"]
        assert stats["duplicates"] == 0
        assert min(msg_id for msg_id, _ in control.accepted()) >= ID_OFFSET
    finally:
        stop_fake_provider(process)


def test_raw_load_from_the_command_line_takes_the_token_from_the_environment_and_prints_json():
    port, control_port = free_port(), free_port()
    process = start_fake_provider(port, control_port, TOKEN, latency=0.01)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "fake_provider.rawload", "--url", f"http://127.0.0.1:{port}/v1"]
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
        control = FakeProviderControl(f"http://127.0.0.1:{control_port}")
        assert control.stats()["accepted_total"] == result["requests"]
        assert min(msg_id for msg_id, _ in control.accepted()) == ID_OFFSET + 7
    finally:
        stop_fake_provider(process)


def test_raw_load_counts_errors():
    port, control_port = free_port(), free_port()
    process = start_fake_provider(port, control_port, TOKEN, error_rate=1.0)
    try:
        result = measure(f"http://127.0.0.1:{port}/v1", TOKEN, concurrency=2, seconds=0.2)

        assert result["requests"] == result["errors"] > 0
    finally:
        stop_fake_provider(process)


def test_thread_pool_load_with_requests_sends_valid_requests_from_every_thread():
    port, control_port = free_port(), free_port()
    process = start_fake_provider(port, control_port, TOKEN, latency=0.01)
    try:
        result = measure_threads(f"http://127.0.0.1:{port}/v1", TOKEN, threads=4, seconds=0.5)

        assert result["requests"] > 20
        assert result["errors"] == 0
        stats = FakeProviderControl(f"http://127.0.0.1:{control_port}").stats()
        assert stats["accepted_total"] == result["requests"]
        assert stats["duplicates"] == 0
    finally:
        stop_fake_provider(process)
