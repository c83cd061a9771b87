"""The API documentation pages render in a real browser with no network beyond this machine.

Swagger UI and ReDoc load their JavaScript from drf-spectacular-sidecar's static files; if any
asset still came from a CDN, the host resolver rules below make that fetch fail and the page
would stay empty. Needs Chromium (Debian: `apt-get install -y chromium`).
"""

import os
import re
import subprocess
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
# Every host name fails to resolve except the loopback address the live server listens on.
OFFLINE_RESOLVER = "MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"


@pytest.fixture(scope="module")
def chromium() -> Path:
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing; CI must install it: apt-get install -y chromium")
        pytest.skip(f"{CHROMIUM} is missing; install it with: apt-get install -y chromium")
    return CHROMIUM


@pytest.fixture
def base_url(live_server) -> str:
    # The resolver rules let only 127.0.0.1 through, so use the address rather than "localhost".
    port = live_server.url.rsplit(":", 1)[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def rendered_dom(chromium, tmp_path):
    """Load a page in headless Chromium, let its scripts run, return the DOM it ended with."""

    def render(url: str) -> str:
        result = subprocess.run(
            [
                str(chromium),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={tmp_path / 'chromium-profile'}",
                f"--host-resolver-rules={OFFLINE_RESOLVER}",
                "--virtual-time-budget=10000",
                "--dump-dom",
                url,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        return result.stdout

    return render


def test_swagger_ui_renders_the_api_operations_offline(base_url, rendered_dom):
    dom = rendered_dom(f"{base_url}/docs/")

    assert re.search(r'class="[^"]*\bopblock\b', dom), dom[-2000:]
    # Swagger UI writes data-path on each operation it renders from the fetched schema.
    assert 'data-path="/api/v1/clients/"' in dom
    assert 'data-path="/api/v1/mailings/"' in dom
    assert "Mailing service API" in dom


def test_redoc_renders_the_api_title_and_operations_offline(base_url, rendered_dom):
    dom = rendered_dom(f"{base_url}/redoc/")

    assert re.search(r"<h1[^>]*>\s*Mailing service API", dom), dom[-2000:]
    assert "/api/v1/clients/" in dom
    assert "/api/v1/mailings/" in dom
