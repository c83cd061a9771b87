"""The operator console in headless Chromium, against a real worker and the fake provider.

An operator logs in, opens the dashboard, creates a mailing through the admin's form, watches its
progress bar move on the mailing's page (polled, never reloaded), pauses it and resumes it with the
buttons, and sees it reach 100 %. Screenshots of the dashboard and of the mailing's page land in
var/test-artifacts/. Needs Debian's chromium and chromium-driver; Chromium reaches nothing but
127.0.0.1 (the same resolver rules as the documentation pages' browser test).
"""

import os
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from clients.models import Client
from fake_provider.client import FakeProviderProcess
from harness.processes import REPO_ROOT
from mailing_service.tests.test_docs_browser import CHROMIUM, OFFLINE_RESOLVER
from mailings.models import Mailing
from messages_app.tests.e2e import FAKE_PROVIDER_SEED, Worker, in_flight_pinned_at

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = Path(os.environ.get("CONSOLE_ARTIFACTS_DIR", REPO_ROOT / "var" / "test-artifacts"))
TOKEN = "console-token"
CLIENTS = 600
TIMEZONES = ["Europe/Moscow"] * 3 + ["Asia/Yekaterinburg", "Asia/Novosibirsk", "Europe/Kaliningrad"]


@pytest.fixture
def browser(tmp_path):
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if missing:
        message = f"{', '.join(missing)} missing: apt-get install -y chromium chromium-driver"
        pytest.fail(message) if os.environ.get("CI") else pytest.skip(message)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1366,768",
        f"--host-resolver-rules={OFFLINE_RESOLVER}",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture
def sending(services_up, tmp_path):
    """The fake provider (0.5 s per answer, 3 % rejected) and a worker with few requests in flight,
    so that the mailing runs long enough (tens of seconds) to be paused mid-way on a busy machine."""
    with (
        FakeProviderProcess(TOKEN, latency=0.5, reject_rate=0.03, seed=FAKE_PROVIDER_SEED) as provider,
        Worker(
            broker_url=services_up,
            cache_url=services_up,
            provider=provider,
            workdir=tmp_path,
            **in_flight_pinned_at(5),
        ),
    ):
        yield provider


@pytest.fixture
def site(live_server) -> str:
    # Only 127.0.0.1 resolves in the browser, so use the address rather than "localhost".
    return f"http://127.0.0.1:{live_server.url.rsplit(':', 1)[1]}"


def screenshot(driver, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def percent_shown(driver) -> int:
    return int(driver.find_element(By.CSS_SELECTOR, "[data-progress-percent]").text)


def test_operator_watches_a_mailing_made_in_the_admin_through_pause_and_resume_to_100_percent(
    browser, sending, site, admin_user
):
    Client.objects.bulk_create(
        Client(phone=f"7916{n:07d}", operator_code="916", timezone=TIMEZONES[n % len(TIMEZONES)])
        for n in range(CLIENTS)
    )
    wait = WebDriverWait(browser, 30, poll_frequency=0.2)

    browser.get(f"{site}/admin/login/?next=/admin/dashboard/")
    browser.find_element(By.NAME, "username").send_keys("admin")
    browser.find_element(By.NAME, "password").send_keys("password")
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    wait.until(lambda driver: driver.find_elements(By.CSS_SELECTOR, ".console-health"))
    assert "Messages per hour" in browser.page_source

    browser.get(f"{site}/admin/mailings/mailing/add/")
    start, end = timezone.localtime(), timezone.localtime() + timedelta(minutes=10)
    for name, value in [
        ("start_at_0", f"{start:%Y-%m-%d}"),
        ("start_at_1", f"{start:%H:%M:%S}"),
        ("end_at_0", f"{end:%Y-%m-%d}"),
        ("end_at_1", f"{end:%H:%M:%S}"),
        ("text", "Autumn sale: 20 % off everything until Sunday"),
    ]:
        field = browser.find_element(By.NAME, name)
        field.clear()
        field.send_keys(value)
    browser.find_element(By.NAME, "_continue").click()  # "Save and continue editing": its page
    wait.until(lambda driver: driver.find_elements(By.ID, "mailing-console"))
    mailing = Mailing.objects.get()
    assert f"/admin/mailings/mailing/{mailing.pk}/change/" in browser.current_url

    # The page is not reloaded from here on: only its polling script moves the figures.
    browser.execute_script("document.body.dataset.loadedOnce = 'yes'")
    wait.until(lambda driver: percent_shown(driver) >= 5)
    browser.find_element(By.CSS_SELECTOR, "[data-action=pause]").click()
    wait.until(lambda driver: driver.find_element(By.CSS_SELECTOR, "[data-progress-state]").text == "Paused")
    mailing.refresh_from_db()
    assert mailing.paused_at is not None
    paused_at_percent = percent_shown(browser)
    assert paused_at_percent < 100

    # The dashboard while it is paused half-way: the picture in docs/console.md.
    browser.get(f"{site}/admin/dashboard/")
    assert "Paused" in browser.find_element(By.CSS_SELECTOR, ".console-mailings").text
    screenshot(browser, "dashboard")
    browser.get(f"{site}/admin/mailings/mailing/{mailing.pk}/change/")

    browser.execute_script("document.body.dataset.loadedOnce = 'yes'")
    browser.find_element(By.CSS_SELECTOR, "[data-action=resume]").click()
    wait.until(lambda driver: driver.find_elements(By.CSS_SELECTOR, "[data-action=pause]"))
    browser.execute_script("document.body.dataset.loadedOnce = 'yes'")
    WebDriverWait(browser, 120, poll_frequency=0.5).until(lambda driver: percent_shown(driver) == 100)
    assert browser.execute_script("return document.body.dataset.loadedOnce") == "yes"
    bar = browser.find_element(By.CSS_SELECTOR, "[data-progress-bar] svg")
    assert bar.get_attribute("data-percent") == "100"
    assert browser.find_element(By.CSS_SELECTOR, "[data-progress-state]").text == "Finished"
    counts = {
        cell.get_attribute("data-count"): int(cell.text)
        for cell in browser.find_elements(By.CSS_SELECTOR, "[data-count]")
    }
    assert counts["total"] == CLIENTS
    assert counts["sent"] + counts["failed"] == CLIENTS
    assert counts["pending"] == counts["sending"] == 0
    browser.refresh()  # the charts are drawn on the server: show the finished picture
    screenshot(browser, "mailing")

    browser.get(f"{site}/admin/dashboard/")
    today, last_7_days = browser.find_elements(By.CSS_SELECTOR, ".console-totals [data-total=sent]")
    assert int(last_7_days.text) == counts["sent"]
    screenshot(browser, "dashboard-after")
    browser.get(f"{site}/admin/mailings/mailing/")
    screenshot(browser, "mailing-list")
    # Fits 1366 px: the list's table needs no horizontal scrolling inside its box.
    results = browser.find_element(By.CSS_SELECTOR, "#changelist .results")
    assert browser.execute_script("return arguments[0].scrollWidth <= arguments[0].clientWidth", results)
    if readme_images := os.environ.get("CONSOLE_README_IMAGES"):
        for name in ("dashboard", "mailing"):
            shutil.copy(ARTIFACTS / f"{name}.png", Path(readme_images) / f"console-{name}.png")
