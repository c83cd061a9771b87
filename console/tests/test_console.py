"""The operator console's pages: a mailing's page, its live progress, the dashboard."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from clients.models import OptOut
from clients.tests.factories import ClientFactory
from mailings.models import Mailing, TestSend
from mailings.tests.factories import MailingFactory
from messages_app.models import CAP_ERROR, MessageStatus, WaitingFor
from messages_app.sending.store import WeightChange
from messages_app.services import provider_pause
from messages_app.tests.factories import MessageFactory
from ops.models import ProviderAttemptsHourly, ProviderPauseEvent
from providers.models import Provider
from providers.services import provider_weight_changes_record

pytestmark = pytest.mark.django_db

DASHBOARD = reverse("console:dashboard")


def running_mailing(**statuses: int):
    now = timezone.now()
    mailing = MailingFactory(
        start_at=now - timedelta(minutes=10), end_at=now + timedelta(hours=1), launched_at=now
    )
    for status, number in statuses.items():
        extra = {"sent_at": now - timedelta(seconds=30)} if status == MessageStatus.SENT else {}
        MessageFactory.create_batch(number, mailing=mailing, status=status, **extra)
    return mailing


def test_mailing_page_shows_progress_counts_errors_and_timezones(admin_client):
    mailing = running_mailing(sent=6, pending=2)
    MessageFactory.create_batch(
        2,
        mailing=mailing,
        status=MessageStatus.FAILED,
        last_error="400: bad phone",
        client__timezone="Asia/Omsk",
    )
    MessageFactory(mailing=mailing, status=MessageStatus.FAILED, last_error="code 7: rejected")

    response = admin_client.get(reverse("admin:mailings_mailing_change", args=[mailing.pk]))

    content = response.content.decode()
    assert response.status_code == 200
    assert 'data-percent="81"' in content  # 9 final of 11
    assert '<td data-count="failed">3</td>' in content
    assert response.context["top_errors"] == [("400: bad phone", 2), ("code 7: rejected", 1)]
    assert f"status__exact=failed&amp;mailing__id__exact={mailing.pk}" in content or (
        f"mailing__id__exact={mailing.pk}&amp;status__exact=failed" in content
    )
    assert ("Asia/Omsk", 2) in [(name, number) for name, number, _ in response.context["timezones"]]
    assert "<title>Accepted per minute</title>" in content
    assert "1 SMS segment</strong>" in content
    # Running: the page polls its progress; bookkeeping is folded away.
    assert f'data-poll-url="{reverse("console:mailing-progress", args=[mailing.pk])}"' in content
    assert "console/progress.js" in content
    assert "<details" in content and "Internal bookkeeping" in content


def test_a_finished_mailing_is_not_polled_and_an_unlaunched_one_shows_its_matching_clients(admin_client):
    now = timezone.now()
    mailing = MailingFactory(
        filter_tag="vip", start_at=now - timedelta(hours=2), end_at=now - timedelta(hours=1)
    )
    ClientFactory.create_batch(3, tag="vip", timezone="Europe/Samara")
    ClientFactory(tag="other")

    response = admin_client.get(reverse("admin:mailings_mailing_change", args=[mailing.pk]))

    assert response.context["poll_url"] == ""
    assert "data-poll-url" not in response.content.decode()
    assert [(name, number) for name, number, _ in response.context["timezones"]] == [("Europe/Samara", 3)]


def test_progress_endpoint_returns_counts_percent_rate_and_the_bar(admin_client):
    mailing = running_mailing(sent=3, pending=1)

    response = admin_client.get(reverse("console:mailing-progress", args=[mailing.pk]))

    assert response.status_code == 200
    body = response.json()
    assert body["counts"]["sent"] == 3 and body["counts"]["total"] == 4
    assert body["percent"] == 75
    assert body["send_rate_per_second"] == 0.05  # 3 in the last minute
    assert body["estimated_finish"]  # running, with 1 message left at that pace
    assert body["bar"].startswith('<svg class="progress-bar"')


def test_console_pages_need_the_permission_to_view_mailings(client, django_user_model):
    staff = django_user_model.objects.create_user("nosy", password="x", is_staff=True)
    client.force_login(staff)
    mailing = MailingFactory()

    assert client.get(DASHBOARD).status_code == 403
    assert client.get(reverse("console:mailing-progress", args=[mailing.pk])).status_code == 403


def test_console_pages_send_anonymous_visitors_to_the_login(client):
    response = client.get(DASHBOARD)

    assert response.status_code == 302
    assert response.url.startswith(reverse("admin:login"))


def test_dashboard_totals_chart_and_mailings(admin_client):
    now = timezone.now()
    running = running_mailing(sent=4, pending=1)
    MessageFactory(mailing=running, status=MessageStatus.FAILED, next_attempt_at=now - timedelta(minutes=5))
    scheduled = MailingFactory(text="Next week's offer")
    old = MailingFactory(start_at=now - timedelta(days=30), end_at=now - timedelta(days=29))
    MessageFactory(mailing=old, status=MessageStatus.SENT, sent_at=now - timedelta(days=29, hours=1))

    response = admin_client.get(DASHBOARD)

    assert response.status_code == 200
    totals = {
        period: {series.key: number for series, number in figures}
        for period, figures in response.context["totals"]
    }
    assert totals["Last 7 days"] == {
        "sent": 4,
        "delivered": 0,
        "undelivered": 0,
        "failed": 1,
        "expired": 0,
        "unknown": 0,
        "opted_out": 0,
    }
    listed = [(mailing.pk, state) for mailing, state, _, _ in response.context["mailings"]]
    assert listed == [(running.pk, "running"), (scheduled.pk, "scheduled")]
    assert "<title>Messages per hour, last 24 hours</title>" in response.content.decode()


def test_dashboard_provider_health_reads_ops_attempts_and_pauses(admin_client):
    now = timezone.now()
    this_hour = now.replace(minute=0, second=0, microsecond=0)
    for hours_ago, outcome, count in [
        (1, "sent", 80),
        (1, "retry", 10),
        (0, "sent", 8),
        (0, "failed", 2),
        (2, "failed", 50),
    ]:
        ProviderAttemptsHourly.objects.create(
            hour=this_hour - timedelta(hours=hours_ago), outcome=outcome, count=count
        )
    ProviderPauseEvent.objects.create(
        started_at=now - timedelta(minutes=10), until=now - timedelta(minutes=9)
    )
    ProviderPauseEvent.objects.create(started_at=now - timedelta(hours=3), until=now - timedelta(hours=2))

    response = admin_client.get(DASHBOARD)

    health = response.context["health"]
    assert dict(health["attempts"]) == {"sent": 88, "failed": 2, "retry": 10, "unanswered": 0, "unknown": 0}
    assert health["error_percent"] == 12.0
    assert (health["pauses"], health["paused_seconds"]) == (1, 60.0)
    since = timezone.localtime(this_hour - timedelta(hours=1))
    assert f"Providers since {since:%H:%M}" in response.content.decode()
    assert '<td data-health="error-percent">12.0 %</td>' in response.content.decode()


def test_dashboard_query_count_does_not_grow_with_mailings(admin_client, django_assert_max_num_queries):
    running_mailing(sent=1)
    MailingFactory()
    admin_client.get(DASHBOARD)
    with django_assert_max_num_queries(16) as few:
        admin_client.get(DASHBOARD)
    for _ in range(8):
        running_mailing(sent=2, pending=1)
        MailingFactory()

    with django_assert_max_num_queries(len(few.captured_queries)):
        admin_client.get(DASHBOARD)


def test_the_dashboard_shows_each_provider_its_weights_pause_and_why_a_weight_moved(admin_client):
    for name in ("acme", "backup"):
        Provider.objects.create(name=name, url="https://sms.example/v1", credentials_env="T", weight=200)
    now = timezone.now()
    provider_weight_changes_record(
        changes=[WeightChange("acme", 200, 180, "50 errors within 60 s", now.timestamp())], holder="w1"
    )
    provider_pause(until=now + timedelta(seconds=30), provider="acme")

    response = admin_client.get(DASHBOARD)

    rows = {row.name: row for row in response.context["providers"]["providers"]}
    assert (rows["acme"].resting_weight, rows["acme"].weight, rows["backup"].weight) == (200, 180, 200)
    assert rows["acme"].paused_until is not None and rows["backup"].paused_until is None
    page = response.content.decode()
    assert "200 → 180" in page and "50 errors within 60 s" in page


def test_admin_index_links_to_the_dashboard(admin_client):
    assert f'href="{DASHBOARD}"' in admin_client.get(reverse("admin:index")).content.decode()


def action_url(mailing, name: str) -> str:
    return reverse("console:mailing-action", args=[mailing.pk, name])


def test_a_running_mailing_offers_pause_and_cancel_which_call_the_services(admin_client):
    mailing = running_mailing(pending=2)
    page = admin_client.get(reverse("admin:mailings_mailing_change", args=[mailing.pk]))
    assert [action["name"] for action in page.context["actions"]] == ["pause", "cancel"]

    response = admin_client.post(action_url(mailing, "pause"), follow=True)

    mailing.refresh_from_db()
    assert mailing.paused_at is not None
    assert [action["name"] for action in response.context["actions"]] == ["resume", "cancel"]
    assert "pause done" in response.content.decode()

    admin_client.post(action_url(mailing, "resume"))
    mailing.refresh_from_db()
    assert mailing.paused_at is None


def test_an_action_refused_in_the_mailings_state_says_the_state(admin_client):
    mailing = running_mailing(pending=1)

    response = admin_client.post(action_url(mailing, "resume"), follow=True)

    assert "is running: it cannot be resumed" in response.content.decode()


def test_actions_need_post_with_csrf_and_the_change_permission(client, django_user_model):
    mailing = running_mailing(pending=1)
    viewer = django_user_model.objects.create_user("viewer", password="x", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_mailing"))
    client.force_login(viewer)

    assert client.get(action_url(mailing, "pause")).status_code == 405
    assert client.post(action_url(mailing, "pause")).status_code == 403
    page = client.get(reverse("admin:mailings_mailing_change", args=[mailing.pk]))
    assert page.context["actions"] == []
    assert client.post(action_url(mailing, "explode")).status_code == 404

    viewer.user_permissions.add(Permission.objects.get(codename="change_mailing"))
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(viewer)
    assert strict.post(action_url(mailing, "pause")).status_code == 403
    mailing.refresh_from_db()
    assert mailing.paused_at is None


def test_changelist_shows_and_filters_by_state(admin_client):
    running = running_mailing(pending=1)
    scheduled = MailingFactory()

    content = admin_client.get(reverse("admin:mailings_mailing_changelist")).content.decode()
    assert '<span class="state state-running">Running</span>' in content
    assert '<span class="state state-scheduled">Scheduled</span>' in content

    filtered = admin_client.get(reverse("admin:mailings_mailing_changelist"), {"state": "scheduled"})
    assert [mailing.pk for mailing in filtered.context["cl"].result_list] == [scheduled.pk]
    assert running.pk not in [mailing.pk for mailing in filtered.context["cl"].result_list]


def finished_mailing(**statuses: int):
    now = timezone.now()
    mailing = MailingFactory(
        start_at=now - timedelta(hours=2),
        end_at=now - timedelta(hours=1),
        launched_at=now - timedelta(hours=2),
    )
    for status, number in statuses.items():
        MessageFactory.create_batch(number, mailing=mailing, status=status)
    return mailing


def test_a_finished_mailing_with_failures_offers_a_resend_that_creates_a_new_mailing(admin_client):
    mailing = finished_mailing(sent=3, failed=2, expired=1)
    page = admin_client.get(reverse("admin:mailings_mailing_change", args=[mailing.pk]))
    assert page.context["resend"]["messages"] == 3
    start = timezone.localtime() + timedelta(days=1)

    response = admin_client.post(
        page.context["resend"]["url"],
        {"start_at": f"{start:%Y-%m-%dT%H:%M}", "end_at": f"{start + timedelta(hours=2):%Y-%m-%dT%H:%M}"},
    )

    resend = Mailing.objects.get(resend_of=mailing)
    assert response.url == reverse("admin:mailings_mailing_change", args=[resend.pk])
    assert resend.start_at == start.replace(second=0, microsecond=0)
    assert resend.text == mailing.text


def test_a_resend_with_a_bad_window_or_in_a_wrong_state_says_why_and_creates_nothing(admin_client):
    mailing = finished_mailing(failed=1)
    url = reverse("console:mailing-resend", args=[mailing.pk])

    response = admin_client.post(
        url, {"start_at": "2030-01-01T10:00", "end_at": "2030-01-01T09:00"}, follow=True
    )
    assert "end_at: The end must come after the start." in response.content.decode()
    response = admin_client.post(url, {"start_at": "soon"}, follow=True)
    assert "start_at: Enter a valid date/time." in response.content.decode()
    running = running_mailing(failed=1)
    response = admin_client.post(
        reverse("console:mailing-resend", args=[running.pk]),
        {"start_at": "2030-01-01T10:00", "end_at": "2030-01-01T11:00"},
        follow=True,
    )
    assert "is running: it cannot be resent" in response.content.decode()
    assert not Mailing.objects.filter(resend_of__isnull=False).exists()
    assert (
        admin_client.get(reverse("admin:mailings_mailing_change", args=[running.pk])).context["resend"] == {}
    )


def test_test_send_picks_clients_and_calls_the_service_after_commit(
    admin_client, django_capture_on_commit_callbacks, monkeypatch
):
    mailing = running_mailing(pending=1)
    clients = ClientFactory.create_batch(2)
    page = admin_client.get(reverse("admin:mailings_mailing_change", args=[mailing.pk]))
    content = page.content.decode()
    assert "admin/js/autocomplete.js" in content and 'data-action="test-send"' in content
    sent = []
    monkeypatch.setattr("ops.enqueue.current_app.send_task", lambda name, args: sent.append((name, args)))

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            reverse("console:mailing-test-send", args=[mailing.pk]),
            {"clients": [client.pk for client in clients]},
            follow=True,
        )

    rows = TestSend.objects.filter(mailing=mailing)
    assert sorted(rows.values_list("client_id", flat=True)) == sorted(client.pk for client in clients)
    assert sent == [("messages_app.tasks.send_test_messages", (sorted(rows.values_list("pk", flat=True)),))]
    ids = ", ".join(str(pk) for pk in sorted(rows.values_list("pk", flat=True)))
    assert f"Test sends {ids} queued" in response.content.decode()
    assert len(response.context["test_send"]["recent"]) == 2


def test_the_client_picker_searches_clients_by_phone(admin_client):
    wanted = ClientFactory(phone="79161112233")
    ClientFactory(phone="79990000000")

    response = admin_client.get(
        reverse("admin:autocomplete"),
        {"app_label": "mailings", "model_name": "testsend", "field_name": "client", "term": "7916111"},
    )

    assert [result["id"] for result in response.json()["results"]] == [str(wanted.pk)]


def test_test_send_refuses_no_client_too_many_and_viewers(admin_client, client, django_user_model, settings):
    mailing = running_mailing(pending=1)
    url = reverse("console:mailing-test-send", args=[mailing.pk])
    settings.TEST_SEND_MAX_CLIENTS = 1

    response = admin_client.post(url, {"clients": [c.pk for c in ClientFactory.create_batch(2)]}, follow=True)
    assert "At most 1 clients per test send." in response.content.decode()
    response = admin_client.post(url, {}, follow=True)
    assert "Test send not started: This field is required." in response.content.decode()
    viewer = django_user_model.objects.create_user("viewer", password="x", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_mailing"))
    client.force_login(viewer)
    assert client.post(url, {"clients": [ClientFactory().pk]}).status_code == 403
    assert (
        client.get(reverse("admin:mailings_mailing_change", args=[mailing.pk])).context["test_send"]["form"]
        is None
    )
    assert not mailing.test_sends.exists()


def test_mailing_page_says_who_was_left_out_and_why(admin_client):
    mailing = running_mailing(sent=2, opted_out=1)
    Mailing.objects.filter(pk=mailing.pk).update(audience_opted_out=3)
    MessageFactory(
        mailing=mailing, waiting_for=WaitingFor.CAP, next_attempt_at=timezone.now() + timedelta(hours=3)
    )
    MessageFactory(mailing=mailing, status=MessageStatus.EXPIRED, last_error=CAP_ERROR)

    response = admin_client.get(reverse("admin:mailings_mailing_change", args=[mailing.pk]))

    assert response.context["left_out"] == [
        ("on the opt-out list at launch", 3),
        ("opted out while it ran", 1),
        ("waiting for the frequency cap", 1),
        ("expired under the frequency cap", 1),
    ]
    assert "<h2>Left out</h2>" in response.content.decode()


def test_an_unlaunched_mailing_page_counts_its_matching_clients_on_the_opt_out_list(admin_client):
    mailing = MailingFactory(filter_tag="vip")
    opted_out, _ = ClientFactory(tag="vip"), ClientFactory(tag="vip")
    OptOut.objects.create(phone=opted_out.phone, source="api")

    response = admin_client.get(reverse("admin:mailings_mailing_change", args=[mailing.pk]))

    assert response.context["left_out"] == [("on the opt-out list", 1)]


def test_a_mailing_added_as_a_draft_offers_launch_which_starts_it(
    admin_client, django_capture_on_commit_callbacks
):
    now = timezone.localtime()
    added = admin_client.post(
        reverse("admin:mailings_mailing_add"),
        {
            "start_at_0": f"{now - timedelta(minutes=5):%Y-%m-%d}",
            "start_at_1": f"{now - timedelta(minutes=5):%H:%M:%S}",
            "end_at_0": f"{now + timedelta(hours=1):%Y-%m-%d}",
            "end_at_1": f"{now + timedelta(hours=1):%H:%M:%S}",
            "text": "Hello, {name|customer}",
            "filter_operator_code": "",
            "filter_tag": "",
            "save_as_draft": "on",
        },
    )
    assert added.status_code == 302
    draft = Mailing.objects.get()
    assert draft.draft
    page = admin_client.get(reverse("admin:mailings_mailing_change", args=[draft.pk]))
    assert [action["name"] for action in page.context["actions"]] == ["launch"]

    with django_capture_on_commit_callbacks() as launches:
        response = admin_client.post(action_url(draft, "launch"), follow=True)

    assert "launch done" in response.content.decode()
    draft.refresh_from_db()
    assert not draft.draft
    assert len(launches) == 1  # the launch task, enqueued after commit


def test_the_admin_refuses_a_placeholder_without_fallback(admin_client):
    start = timezone.localtime() + timedelta(days=1)
    response = admin_client.post(
        reverse("admin:mailings_mailing_add"),
        {
            "start_at_0": f"{start:%Y-%m-%d}",
            "start_at_1": "10:00:00",
            "end_at_0": f"{start:%Y-%m-%d}",
            "end_at_1": "12:00:00",
            "text": "Hello, {name}",
            "filter_operator_code": "",
            "filter_tag": "",
        },
    )

    assert response.status_code == 200
    assert "{name} needs a fallback" in response.content.decode()
    assert not Mailing.objects.exists()


def test_a_mailings_page_exports_its_messages_as_csv(admin_client, client, django_user_model):
    mailing = finished_mailing(sent=2)
    page = admin_client.get(reverse("admin:mailings_mailing_change", args=[mailing.pk]))
    assert f'href="{page.context["export_url"]}"' in page.content.decode()

    export = admin_client.get(page.context["export_url"])
    viewer = django_user_model.objects.create_user("viewer", password="x", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_mailing"))
    client.force_login(viewer)
    masked = client.get(page.context["export_url"])

    lines = b"".join(export.streaming_content).decode().splitlines()
    assert lines[0].startswith("message_id,client_id,phone,status")
    assert len(lines) == 3
    phones = [line.split(",")[2] for line in b"".join(masked.streaming_content).decode().splitlines()[1:]]
    assert all("*****" in phone for phone in phones)
