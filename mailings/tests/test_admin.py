from datetime import datetime, time, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from clients.tests.factories import ClientFactory
from mailings.admin import MailingAdmin
from mailings.models import Mailing, TestSend
from mailings.tests.factories import MailingFactory
from messages_app.models import MessageStatus
from messages_app.tests.factories import MessageFactory

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:mailings_mailing_changelist")


def listed(response) -> dict[int, Mailing]:
    return {mailing.pk: mailing for mailing in response.context["cl"].result_list}


def mailing_with_messages(**statuses: int) -> Mailing:
    """A launched mailing with the given number of messages in each status."""
    mailing = MailingFactory(launched_at=timezone.now())
    for status, number in statuses.items():
        MessageFactory.create_batch(number, mailing=mailing, status=status)
    return mailing


def test_changelist_renders_mailings_with_their_audience(admin_client):
    MailingFactory(filter_operator_code="916", filter_tag="vip")

    response = admin_client.get(CHANGELIST)

    assert response.status_code == 200
    assert "clients with operator code 916 and tag &#x27;vip&#x27;" in response.content.decode()


def test_changelist_shows_message_counts_per_status(admin_client):
    busy = mailing_with_messages(
        pending=1, sending=2, sent=3, failed=4, expired=5, unknown=6, opted_out=7, delivered=8, undelivered=9
    )
    quiet = mailing_with_messages(sent=2)
    unlaunched = MailingFactory()

    rows = listed(admin_client.get(CHANGELIST))

    def counts(mailing):
        row = rows[mailing.pk]
        return [row.message_counts[status] for status in MessageStatus] + [row.message_counts["total"]]

    assert counts(busy) == [1, 2, 3, 4, 5, 6, 7, 8, 9, 45]
    assert counts(quiet) == [0, 0, 2, 0, 0, 0, 0, 0, 0, 2]
    assert counts(unlaunched) == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0]


def test_changelist_draws_a_progress_bar_with_the_numbers_on_hover(admin_client):
    mailing_with_messages(sent=3, failed=1, pending=4)

    content = admin_client.get(CHANGELIST).content.decode()

    assert '<td class="field-progress"><div class="progress-cell"><svg class="progress-bar"' in content
    assert "<title>sent: 3</title>" in content
    assert "<title>failed: 1</title>" in content
    assert "<title>waiting: 4</title>" in content
    assert "<span>50 %</span>" in content
    assert '<td class="field-size">8</td>' in content


def test_changelist_shows_the_send_rate_of_the_last_minute(admin_client):
    mailing = mailing_with_messages(pending=1)
    now = timezone.now()
    MessageFactory.create_batch(
        4, mailing=mailing, status=MessageStatus.SENT, sent_at=now - timedelta(seconds=20)
    )
    MessageFactory.create_batch(
        2, mailing=mailing, status=MessageStatus.SENT, sent_at=now - timedelta(minutes=5)
    )

    content = admin_client.get(CHANGELIST).content.decode()

    assert '<td class="field-send_rate">4</td>' in content


def test_changelist_query_count_does_not_grow_with_mailings(admin_client, django_assert_num_queries):
    mailing_with_messages(pending=2, sent=1)
    admin_client.get(CHANGELIST)  # warm the session and content type caches
    with CaptureQueriesContext(connection) as one_mailing:
        assert len(listed(admin_client.get(CHANGELIST))) == 1

    for _ in range(19):
        mailing_with_messages(pending=2, sent=1, failed=1)

    with django_assert_num_queries(len(one_mailing)):
        rows = listed(admin_client.get(CHANGELIST))
    assert len(rows) == 20
    assert sorted(row.message_counts["total"] for row in rows.values()) == [3] + [4] * 19


def test_count_columns_are_not_sortable(admin_client):
    mailing_with_messages(sent=1)

    content = admin_client.get(CHANGELIST).content.decode()

    assert 'class="sortable column-window' in content
    assert 'class="column-progress"' in content
    assert 'class="column-send_rate"' in content


def test_change_form_renders_pipeline_fields_read_only_with_a_link_to_its_messages(admin_client):
    mailing = mailing_with_messages(sent=1)

    response = admin_client.get(reverse("admin:mailings_mailing_change", args=[mailing.pk]))

    assert response.status_code == 200
    form = response.context["adminform"].form
    assert "end_at" in form.fields
    assert not {"launched_at", "fanout_cursor", "fanout_completed_at"} & set(form.fields)
    assert "field-fanout_cursor" in response.content.decode()
    messages_url = reverse("admin:messages_app_message_changelist")
    assert f'href="{messages_url}?mailing__id__exact={mailing.pk}"' in response.content.decode()


def test_add_form_renders_and_creates_a_mailing(admin_client):
    url = reverse("admin:mailings_mailing_add")
    assert admin_client.get(url).status_code == 200
    start = timezone.now() + timedelta(days=2)

    response = admin_client.post(
        url,
        {
            "start_at_0": start.strftime("%Y-%m-%d"),
            "start_at_1": "10:00:00",
            "end_at_0": start.strftime("%Y-%m-%d"),
            "end_at_1": "12:00:00",
            "text": "Spring sale",
            "filter_operator_code": "",
            "filter_tag": "vip",
        },
    )

    assert response.status_code == 302
    mailing = Mailing.objects.get(text="Spring sale")
    assert mailing.filter_tag == "vip"
    assert mailing.launched_at is None


@pytest.mark.parametrize(
    ("fields", "window"),
    [
        ({}, (time(9), time(21))),  # the default
        ({"send_at_any_hour": "on"}, (None, None)),
        ({"local_window_start": "10:00", "local_window_end": "11:00"}, (time(10), time(11))),
    ],
)
def test_the_add_form_applies_the_default_window_unless_told_otherwise(
    admin_client, settings, fields, window
):
    settings.DEFAULT_LOCAL_WINDOW = "09:00-21:00"
    start = timezone.now() + timedelta(days=2)
    body = {"start_at_0": f"{start:%Y-%m-%d}", "start_at_1": "10:00:00", "end_at_0": f"{start:%Y-%m-%d}"}
    body |= {"end_at_1": "20:00:00", "text": "Spring sale", "filter_operator_code": "", "filter_tag": ""}

    response = admin_client.post(reverse("admin:mailings_mailing_add"), body | fields)

    assert response.status_code == 302, response.context["adminform"].form.errors
    mailing = Mailing.objects.get()
    assert (mailing.local_window_start, mailing.local_window_end) == window


def form_data(**values) -> dict[str, str]:
    """What the change form posts; datetimes are split into the admin's date and time inputs."""
    data = {"filter_operator_code": "", "filter_tag": ""}
    for name, value in values.items():
        if name in ("start_at", "end_at"):
            local = timezone.localtime(value)
            data[f"{name}_0"], data[f"{name}_1"] = f"{local:%Y-%m-%d}", f"{local:%H:%M:%S}"
        else:
            data[name] = value
    return data


def test_change_form_edits_a_mailing_not_yet_launched(admin_client):
    mailing = MailingFactory(text="Old text")

    response = admin_client.post(
        reverse("admin:mailings_mailing_change", args=[mailing.pk]),
        form_data(start_at=mailing.start_at, end_at=mailing.end_at, text="New text", filter_tag="vip"),
    )

    assert response.status_code == 302
    mailing.refresh_from_db()
    assert (mailing.text, mailing.filter_tag) == ("New text", "vip")


def test_a_launched_mailing_keeps_its_text_and_audience_but_its_end_can_move(admin_client):
    mailing = mailing_with_messages(sent=1)
    original = (mailing.text, mailing.filter_tag)
    later_end = mailing.end_at + timedelta(hours=1)
    url = reverse("admin:mailings_mailing_change", args=[mailing.pk])

    form = admin_client.get(url).context["adminform"].form
    assert set(form.fields) == {"end_at"}
    response = admin_client.post(
        url, form_data(start_at=mailing.start_at, end_at=later_end, text="Sneaky edit", filter_tag="vip")
    )

    assert response.status_code == 302
    mailing.refresh_from_db()
    assert (mailing.text, mailing.filter_tag) == original
    assert mailing.end_at == later_end.replace(microsecond=0)


def test_saving_the_form_leaves_the_launchers_progress_alone(admin_client, monkeypatch):
    mailing = mailing_with_messages(sent=1)
    load = MailingAdmin.get_object

    def load_then_launcher_advances(self, request, object_id, from_field=None):
        loaded = load(self, request, object_id, from_field)
        Mailing.objects.filter(pk=object_id).update(fanout_cursor=99)
        return loaded

    monkeypatch.setattr(MailingAdmin, "get_object", load_then_launcher_advances)

    response = admin_client.post(
        reverse("admin:mailings_mailing_change", args=[mailing.pk]),
        form_data(end_at=mailing.end_at + timedelta(hours=1)),
    )

    assert response.status_code == 302
    mailing.refresh_from_db()
    assert mailing.fanout_cursor == 99


@pytest.mark.parametrize("query", ["spring", "vip"], ids=["text", "tag"])
def test_search_finds_a_mailing_by_text_or_tag(admin_client, query):
    wanted = MailingFactory(text="Spring sale", filter_tag="vip")
    MailingFactory(text="Autumn sale", filter_tag="new")

    response = admin_client.get(CHANGELIST, {"q": query})

    assert set(listed(response)) == {wanted.pk}


def test_launched_filter_separates_launched_mailings(admin_client):
    launched = mailing_with_messages(sent=1)
    waiting = MailingFactory()

    assert set(listed(admin_client.get(CHANGELIST, {"launched": "yes"}))) == {launched.pk}
    assert set(listed(admin_client.get(CHANGELIST, {"launched": "no"}))) == {waiting.pk}


def test_start_filter_keeps_mailings_starting_that_day(admin_client):
    day = timezone.make_aware(datetime(2030, 6, 15))
    that_day = MailingFactory(start_at=day + timedelta(hours=10))
    MailingFactory(start_at=day + timedelta(days=3))

    response = admin_client.get(
        CHANGELIST, {"start_at__gte": str(day), "start_at__lt": str(day + timedelta(days=1))}
    )

    assert set(listed(response)) == {that_day.pk}


def test_a_launched_mailing_cannot_be_deleted_here(admin_client):
    mailing = mailing_with_messages(sent=1)

    response = admin_client.get(reverse("admin:mailings_mailing_delete", args=[mailing.pk]))

    assert response.status_code == 403
    assert Mailing.objects.filter(pk=mailing.pk).exists()


def test_a_mailing_not_yet_launched_can_be_deleted(admin_client):
    mailing = MailingFactory()

    response = admin_client.post(reverse("admin:mailings_mailing_delete", args=[mailing.pk]), {"post": "yes"})

    assert response.status_code == 302
    assert not Mailing.objects.filter(pk=mailing.pk).exists()


def test_a_finished_mailing_is_deleted_here_with_its_messages_counted_not_listed(admin_client):
    mailing = mailing_with_messages(sent=3)
    Mailing.objects.filter(pk=mailing.pk).update(
        start_at=timezone.now() - timedelta(hours=2), end_at=timezone.now() - timedelta(hours=1)
    )
    url = reverse("admin:mailings_mailing_delete", args=[mailing.pk])

    confirmation = admin_client.get(url)
    response = admin_client.post(url, {"post": "yes"})

    assert confirmation.status_code == 200
    assert dict(confirmation.context["model_count"]) == {"mailings": 1, "messages": 3}
    assert response.status_code == 302
    assert not Mailing.objects.filter(pk=mailing.pk).exists()


def test_test_sends_are_listed_read_only(admin_client):
    send = TestSend.objects.create(mailing=MailingFactory(), client=ClientFactory(), status="sent")

    response = admin_client.get(reverse("admin:mailings_testsend_changelist"))
    add = admin_client.get(reverse("admin:mailings_testsend_add"))

    assert response.status_code == 200
    assert [row.pk for row in response.context["cl"].result_list] == [send.pk]
    assert send.client.phone not in response.content.decode()  # a client shows masked
    assert add.status_code == 403
