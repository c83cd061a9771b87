from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from mailings.models import TEXT_MAX_LENGTH, Mailing
from mailings.services import MailingLaunchedError, mailing_update
from mailings.tests.factories import MailingFactory
from messages_app.tests.factories import MessageFactory

pytestmark = pytest.mark.django_db

LIST_URL = reverse("mailing-list")
START = datetime(2100, 1, 1, 9, 0, tzinfo=UTC)
END = START + timedelta(hours=8)


def detail_url(mailing: Mailing) -> str:
    return reverse("mailing-detail", args=[mailing.pk])


def body(**changes) -> dict:
    return {"start_at": START.isoformat(), "end_at": END.isoformat(), "text": "Sale today", **changes}


def launched_mailing(**fields) -> Mailing:
    return MailingFactory(launched_at=timezone.now(), **fields)


def test_create_mailing_with_an_empty_filter_goes_to_all_clients(api_client):
    response = api_client.post(LIST_URL, body())

    assert response.status_code == 201, response.data
    mailing = Mailing.objects.get()
    assert response.data == {
        "id": mailing.pk,
        "start_at": "2100-01-01T09:00:00Z",
        "end_at": "2100-01-01T17:00:00Z",
        "text": "Sale today",
        "filter_operator_code": "",
        "filter_operator_codes": [],
        "filter_tag": "",
        "filter_tags": [],
        "local_window_start": None,
        "local_window_end": None,
        "send_at_any_hour": True,
        "cap_exempt": False,
        "audience": "all clients",
        "audience_size": None,
        "audience_opted_out": None,
        "resend_of": None,
        "segments": {"encoding": "GSM-7", "count": 1, "units": 10, "per_segment": 160},
        "state": "scheduled",
        "draft": False,
        "launched_at": None,
        "paused_at": None,
        "cancelled_at": None,
        "created_at": response.data["created_at"],
        "updated_at": response.data["updated_at"],
    }


def test_create_mailing_with_a_filter_describes_its_audience(api_client):
    response = api_client.post(LIST_URL, body(filter_operator_code="916", filter_tag="vip"))

    assert response.status_code == 201, response.data
    assert response.data["audience"] == "clients with operator code 916 and tag 'vip'"
    mailing = Mailing.objects.get()
    assert (mailing.filter_operator_code, mailing.filter_tag) == ("916", "vip")


def test_launched_at_cannot_be_set_by_the_caller(api_client):
    response = api_client.post(LIST_URL, body(launched_at=timezone.now().isoformat()))

    assert response.status_code == 201, response.data
    assert Mailing.objects.get().launched_at is None


@pytest.mark.parametrize("end_at", [START, START - timedelta(seconds=1)], ids=["equal", "before"])
def test_end_not_after_start_is_a_field_error_on_create(api_client, end_at):
    response = api_client.post(LIST_URL, body(end_at=end_at.isoformat()))

    assert response.status_code == 400
    assert list(response.data) == ["end_at"]
    assert not Mailing.objects.exists()


def test_a_mailing_that_has_already_ended_cannot_be_created(api_client):
    start_at = timezone.now() - timedelta(hours=2)
    end_at = timezone.now() - timedelta(hours=1)

    response = api_client.post(LIST_URL, body(start_at=start_at.isoformat(), end_at=end_at.isoformat()))

    assert response.status_code == 400
    assert list(response.data) == ["end_at"]


@pytest.mark.parametrize(
    ("change", "stored"),
    [
        ({"end_at": START.isoformat()}, "start_at"),
        ({"end_at": (START - timedelta(minutes=1)).isoformat()}, "start_at"),
        ({"start_at": END.isoformat()}, "end_at"),
        ({"start_at": (END + timedelta(days=1)).isoformat()}, "end_at"),
    ],
)
def test_one_side_out_of_order_with_the_stored_other_is_a_conflict_naming_it(api_client, change, stored):
    """The body is well formed; it conflicts with the mailing as stored (a 409 naming the stored side)."""
    mailing = MailingFactory(start_at=START, end_at=END)

    response = api_client.patch(detail_url(mailing), change)

    assert response.status_code == 409
    assert list(response.data) == [stored]
    mailing.refresh_from_db()
    assert (mailing.start_at, mailing.end_at) == (START, END)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("   \n\t ", id="whitespace"),
        pytest.param("x" * (TEXT_MAX_LENGTH + 1), id="too long"),
        pytest.param(None, id="null"),
        pytest.param(42, id="number"),
        pytest.param(["Sale"], id="list"),
    ],
)
def test_bad_text_is_a_field_error(api_client, text):
    response = api_client.post(LIST_URL, body(text=text))

    assert response.status_code == 400
    assert list(response.data) == ["text"]


def test_text_of_the_maximum_length_is_accepted(api_client):
    response = api_client.post(LIST_URL, body(text="x" * TEXT_MAX_LENGTH))

    assert response.status_code == 201, response.data


@pytest.mark.parametrize("code", ["91", "9161", "abc", 916])
def test_bad_operator_code_filter_is_a_field_error(api_client, code):
    response = api_client.post(LIST_URL, body(filter_operator_code=code))

    assert response.status_code == 400
    assert list(response.data) == ["filter_operator_code"]


@pytest.mark.parametrize(
    "value",
    ["tomorrow", "2100-13-01T00:00:00Z", "", None, 1700000000, ["2100-01-01T00:00:00Z"]],
)
def test_unparseable_start_is_a_field_error(api_client, value):
    response = api_client.post(LIST_URL, body(start_at=value))

    assert response.status_code == 400
    assert list(response.data) == ["start_at"]


def test_missing_fields_are_field_errors(api_client):
    response = api_client.post(LIST_URL, {})

    assert response.status_code == 400
    assert set(response.data) == {"start_at", "end_at", "text"}


def test_unknown_fields_are_rejected_by_name(api_client):
    response = api_client.post(LIST_URL, body(fliter_tag="vip"))

    assert response.status_code == 400
    assert response.data == {"fliter_tag": ["Unknown field."]}
    assert not Mailing.objects.exists()


def test_a_body_that_is_not_json_is_a_bad_request(api_client):
    response = api_client.generic(
        "POST", LIST_URL, "{'text': 'single quotes'}", content_type="application/json"
    )

    assert response.status_code == 400


def test_unlaunched_mailing_can_change_everything(api_client):
    mailing = MailingFactory(start_at=START, end_at=END, text="old")
    new_start = START + timedelta(hours=1)

    response = api_client.patch(
        detail_url(mailing),
        {
            "text": "new",
            "filter_tag": "vip",
            "filter_operator_code": "916",
            "start_at": new_start.isoformat(),
        },
    )

    assert response.status_code == 200, response.data
    assert response.data["audience"] == "clients with operator code 916 and tag 'vip'"
    mailing.refresh_from_db()
    assert (mailing.text, mailing.filter_tag, mailing.filter_operator_code, mailing.start_at) == (
        "new",
        "vip",
        "916",
        new_start,
    )


def test_put_replaces_an_unlaunched_mailing(api_client):
    mailing = MailingFactory(filter_tag="old")

    response = api_client.put(detail_url(mailing), body(text="Replaced"))

    assert response.status_code == 200, response.data
    mailing.refresh_from_db()
    assert (mailing.text, mailing.start_at, mailing.end_at, mailing.filter_tag) == (
        "Replaced",
        START,
        END,
        "old",  # left out of the body: kept
    )


@pytest.mark.parametrize(
    "change",
    [
        {"text": "Changed"},
        {"filter_operator_code": "916"},
        {"filter_tag": "vip"},
        {"start_at": (START + timedelta(minutes=5)).isoformat()},
        {"text": "Changed", "end_at": (END + timedelta(hours=1)).isoformat()},
    ],
    ids=["text", "operator code", "tag", "start", "text with end"],
)
def test_launched_mailing_refuses_changes_to_what_its_messages_were_made_from(api_client, change):
    mailing = launched_mailing(start_at=START, end_at=END, text="Original")
    before = Mailing.objects.values().get(pk=mailing.pk)

    response = api_client.patch(detail_url(mailing), change)

    assert response.status_code == 409
    assert list(response.data) == ["detail"]
    assert "only end_at can" in response.data["detail"]
    assert Mailing.objects.values().get(pk=mailing.pk) == before


@pytest.mark.parametrize(
    "new_end", [END + timedelta(hours=2), START + timedelta(minutes=1)], ids=["later", "earlier"]
)
def test_launched_mailing_can_move_its_end(api_client, new_end):
    mailing = launched_mailing(start_at=START, end_at=END)

    response = api_client.patch(detail_url(mailing), {"end_at": new_end.isoformat()})

    assert response.status_code == 200, response.data
    mailing.refresh_from_db()
    assert mailing.end_at == new_end


def test_launched_mailing_end_must_stay_after_its_stored_start(api_client):
    mailing = launched_mailing(start_at=START, end_at=END)

    response = api_client.patch(detail_url(mailing), {"end_at": START.isoformat()})

    assert response.status_code == 409
    assert list(response.data) == ["start_at"]


def test_put_on_a_launched_mailing_repeating_frozen_fields_changes_the_end(api_client):
    mailing = launched_mailing(start_at=START, end_at=END, text="Sale today", filter_tag="vip")
    new_end = END + timedelta(hours=1)

    response = api_client.put(detail_url(mailing), body(end_at=new_end.isoformat(), filter_tag="vip"))

    assert response.status_code == 200, response.data
    mailing.refresh_from_db()
    assert mailing.end_at == new_end


def test_update_keeps_the_launchers_bookkeeping(api_client):
    mailing = launched_mailing(start_at=START, end_at=END)
    # The launcher moves on while the API works with the row it loaded.
    Mailing.objects.filter(pk=mailing.pk).update(fanout_cursor=1234)

    response = api_client.patch(detail_url(mailing), {"end_at": (END + timedelta(hours=1)).isoformat()})

    assert response.status_code == 200, response.data
    mailing.refresh_from_db()
    assert mailing.fanout_cursor == 1234


def test_service_refuses_a_change_when_the_mailing_was_launched_after_being_loaded():
    mailing = MailingFactory(start_at=START, end_at=END)
    Mailing.objects.filter(pk=mailing.pk).update(launched_at=timezone.now())

    with pytest.raises(MailingLaunchedError) as raised:
        mailing_update(mailing=mailing, data={"text": "Too late", "filter_tag": "vip"})

    assert raised.value.fields == ["filter_tag", "text"]
    mailing.refresh_from_db()
    assert mailing.text != "Too late"


def test_service_saves_nothing_when_nothing_changes():
    mailing = launched_mailing(start_at=START, end_at=END)
    updated_at = mailing.updated_at

    result = mailing_update(mailing=mailing, data={"start_at": START, "text": mailing.text})

    assert result.updated_at == updated_at


def test_failed_update_changes_nothing(api_client):
    mailing = MailingFactory(start_at=START, end_at=END, text="kept")
    before = Mailing.objects.values().get(pk=mailing.pk)

    response = api_client.patch(detail_url(mailing), {"text": "changed", "end_at": "soon"})

    assert response.status_code == 400
    assert Mailing.objects.values().get(pk=mailing.pk) == before


def test_list_filters_by_tag_operator_code_and_launch(api_client):
    wanted = launched_mailing(filter_tag="vip", filter_operator_code="916")
    MailingFactory(filter_tag="vip", filter_operator_code="916")
    launched_mailing(filter_tag="vip", filter_operator_code="925")
    launched_mailing(filter_tag="other", filter_operator_code="916")

    response = api_client.get(
        LIST_URL, {"filter_tag": "vip", "filter_operator_code": "916", "launched": "true"}
    )

    assert response.status_code == 200
    assert [row["id"] for row in response.data["results"]] == [wanted.pk]


def test_list_filters_by_start(api_client):
    MailingFactory(start_at=START - timedelta(days=1), end_at=END)
    wanted = MailingFactory(start_at=START, end_at=END)

    response = api_client.get(LIST_URL, {"start_at_after": START.isoformat()})

    assert [row["id"] for row in response.data["results"]] == [wanted.pk]


def test_bad_filter_value_is_a_bad_request(api_client):
    response = api_client.get(LIST_URL, {"start_at_after": "someday"})

    assert response.status_code == 400
    assert list(response.data) == ["start_at_after"]


def test_list_orders_by_the_requested_field(api_client):
    late_end = MailingFactory(start_at=START, end_at=END + timedelta(days=2))
    early_end = MailingFactory(start_at=START + timedelta(hours=1), end_at=END)

    by_end = api_client.get(LIST_URL, {"ordering": "end_at"}).data["results"]
    by_default = api_client.get(LIST_URL).data["results"]

    assert [row["id"] for row in by_end] == [early_end.pk, late_end.pk]
    assert [row["id"] for row in by_default] == [early_end.pk, late_end.pk]  # latest start first


def test_list_takes_a_constant_number_of_queries(api_client, django_assert_max_num_queries):
    for mailing in MailingFactory.create_batch(20):
        MessageFactory.create_batch(2, mailing=mailing)

    with django_assert_max_num_queries(5):  # token, role permissions (user, groups), count, page
        response = api_client.get(LIST_URL, {"ordering": "id"})

    assert response.data["count"] == 20
