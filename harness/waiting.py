"""Polling until something is true, and the usual somethings: a port, a URL, a line in a log."""

import socket
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], *, timeout: float, interval: float = 0.1, message: str) -> T:
    """Calls `predicate` every `interval` seconds until it returns something true, and returns that;
    raises TimeoutError naming `message` (what was awaited) once `timeout` seconds have passed.
    Whatever `predicate` raises goes through: a check can give up early (a process that exited)."""
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {message}")
        time.sleep(interval)
    return result


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def url_answers(url: str) -> bool:
    """Whether a GET of `url` answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def log_contains(path: Path, text: str, *, start: int = 0) -> bool:
    """Whether the file has `text` after byte `start` (a restarted process appends to its old log)."""
    try:
        with open(path, "rb") as log:
            log.seek(start)
            return text.encode() in log.read()
    except FileNotFoundError:
        return False
