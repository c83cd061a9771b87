"""The console's buttons count against the API's rate limits, under the same keys: a test send made
with the form and one made through the API share TEST_SEND_RATE."""

import pytest
from django.core.cache import cache
from django.urls import reverse

from clients.tests.factories import ClientFactory
from mailings.models import TestSend
from mailings.tests.factories import MailingFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def own_cache(settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    cache.clear()


@pytest.fixture
def staff_operator(client, operator, api_client):
    """The operator logged in to the console; the same person holds the API client's token."""
    operator.is_staff = True
    operator.save(update_fields=["is_staff"])
    client.force_login(operator)
    return client


def rates(settings, **rates: str) -> None:
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": rates}


def test_test_sends_from_the_console_and_the_api_share_one_limit(
    staff_operator, api_client, settings, django_capture_on_commit_callbacks, monkeypatch
):
    monkeypatch.setattr("ops.enqueue.current_app.send_task", lambda name, args: None)
    rates(settings, test_send="2/minute")
    mailing, picked = MailingFactory(), ClientFactory()
    form = reverse("console:mailing-test-send", args=[mailing.pk])

    assert (
        api_client.post(reverse("mailing-test", args=[mailing.pk]), {"client_ids": [picked.pk]}).status_code
        == 202
    )
    answers = [staff_operator.post(form, {"clients": [picked.pk]}, follow=True) for _ in range(2)]

    assert "queued" in answers[0].content.decode()
    assert "Too many requests: try again in" in answers[1].content.decode()
    assert TestSend.objects.count() == 2


def test_the_console_actions_count_against_the_users_write_limit(staff_operator, settings):
    rates(settings, user_write="1/minute")
    mailing = MailingFactory()
    pause, resume = (
        reverse("console:mailing-action", args=[mailing.pk, name]) for name in ("pause", "resume")
    )

    staff_operator.post(pause)
    refused = staff_operator.post(resume, follow=True)

    assert "Too many requests: try again in" in refused.content.decode()
    mailing.refresh_from_db()
    assert mailing.paused_at is not None
