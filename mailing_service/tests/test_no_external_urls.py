"""No page of the console, the admin or the API documentation loads anything from another host.

Every admin page (index, each model's list, add and change pages), the dashboard, a mailing's
progress JSON, the login page, /docs and /redoc, and the console's own stylesheet and script:
no src, href, action or CSS url() may point at a host (an absolute http(s):// or // address).
"""

import re

import pytest
from django.contrib import admin
from django.contrib.staticfiles import finders
from django.urls import reverse
from django.utils import timezone
from rest_framework.authtoken.models import Token

from messages_app.tests.factories import MessageFactory

pytestmark = pytest.mark.django_db

ATTRIBUTE_URL = re.compile(
    r"""\b(?:src|href|action|srcset|poster|data)\s*=\s*["']?\s*((?:https?:)?//[^"'\s>]*)""", re.I
)
CSS_URL = re.compile(r"""(?:url\(\s*["']?|@import\s+["'])((?:https?:)?//[^"')\s]*)""", re.I)


def external_urls(text: str) -> list[str]:
    return ATTRIBUTE_URL.findall(text) + CSS_URL.findall(text)


@pytest.fixture
def every_kind_of_row(admin_user):
    message = MessageFactory(status="failed", last_error="400 bad phone")
    message.mailing.launched_at = timezone.now()
    message.mailing.save()
    Token.objects.create(user=admin_user)


def admin_pages() -> list[str]:
    pages = [reverse("admin:index"), reverse("console:dashboard")]
    for model in admin.site._registry:
        opts = model._meta
        pages.append(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"))
        pages.append(reverse(f"admin:{opts.app_label}_{opts.model_name}_add"))
        instance = model.objects.first()
        if instance is not None:
            pages.append(reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[instance.pk]))
    return pages


def test_every_admin_page_and_the_dashboard_reference_no_external_url(admin_client, every_kind_of_row):
    checked = 0
    for url in admin_pages():
        response = admin_client.get(url)
        if response.status_code == 403:  # the add page of a read-only model
            continue
        assert response.status_code == 200, url
        assert external_urls(response.content.decode()) == [], url
        checked += 1
    assert checked >= 10


def test_a_mailings_progress_json_draws_nothing_external(admin_client, every_kind_of_row):
    mailing = MessageFactory._meta.model.objects.first().mailing
    response = admin_client.get(reverse("console:mailing-progress", args=[mailing.pk]))

    assert external_urls(response.json()["bar"]) == []


@pytest.mark.parametrize("page", ["/docs/", "/redoc/", "/admin/login/"])
def test_documentation_and_login_pages_reference_no_external_url(client, page):
    response = client.get(page)

    assert response.status_code == 200
    assert external_urls(response.content.decode()) == []


@pytest.mark.parametrize("asset", ["console/console.css", "console/progress.js"])
def test_the_consoles_own_assets_reference_no_external_url(asset):
    with open(finders.find(asset)) as source:
        assert external_urls(source.read()) == []


def test_the_check_itself_catches_external_references():
    page = '<script src="https://cdn.example.com/x.js"></script><a href="//evil.example/">'
    css = "body { background: url('https://img.example.com/a.png') }"

    assert external_urls(page) == ["https://cdn.example.com/x.js", "//evil.example/"]
    assert external_urls(css) == ["https://img.example.com/a.png"]
    assert external_urls('<svg xmlns="http://www.w3.org/2000/svg"><a href="/admin/">') == []
