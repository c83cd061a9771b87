import pytest
from django.urls import reverse

from clients.models import Client
from clients.serializers import ClientSerializer
from clients.tests.factories import ClientFactory
from clients.views import ClientViewSet
from mailing_service.api import Conflict
from messages_app.tests.factories import MessageFactory

pytestmark = pytest.mark.django_db

LIST_URL = reverse("client-list")


def detail_url(client: Client) -> str:
    return reverse("client-detail", args=[client.pk])


def test_create_client_derives_operator_code_and_default_timezone(api_client, settings):
    settings.DEFAULT_CLIENT_TIMEZONE = "Asia/Tokyo"

    response = api_client.post(LIST_URL, {"phone": "79161234567"})

    assert response.status_code == 201, response.data
    client = Client.objects.get()
    assert response.data == {
        "id": client.pk,
        "phone": "79161234567",
        "operator_code": "916",
        "tag": "",
        "timezone": "Asia/Tokyo",
        "attributes": {},
        "created_at": response.data["created_at"],
        "updated_at": response.data["updated_at"],
    }
    assert (client.operator_code, client.timezone) == ("916", "Asia/Tokyo")


def test_create_client_keeps_an_explicit_operator_code_tag_and_timezone(api_client):
    response = api_client.post(
        LIST_URL,
        {"phone": "79161234567", "operator_code": "999", "tag": "vip", "timezone": "Asia/Vladivostok"},
    )

    assert response.status_code == 201, response.data
    client = Client.objects.get()
    assert (client.operator_code, client.tag, client.timezone) == ("999", "vip", "Asia/Vladivostok")


def test_empty_operator_code_is_derived_from_the_phone(api_client):
    response = api_client.post(LIST_URL, {"phone": "79161234567", "operator_code": ""})

    assert response.status_code == 201, response.data
    assert response.data["operator_code"] == "916"


def test_phone_surrounded_by_spaces_is_trimmed(api_client):
    response = api_client.post(LIST_URL, {"phone": " 79161234567 "})

    assert response.status_code == 201, response.data
    assert response.data["phone"] == "79161234567"


@pytest.mark.parametrize("field", ["tag", "operator_code"])
def test_whitespace_counts_toward_a_blank_allowed_fields_max_length(api_client, field):
    limit = Client._meta.get_field(field).max_length

    response = api_client.post(LIST_URL, {"phone": "79161234567", field: " " * (limit + 1)}, format="json")

    assert response.status_code == 400
    assert response.data == {field: [f"Ensure this field has no more than {limit} characters."]}
    assert not Client.objects.exists()


@pytest.mark.parametrize(
    "phone",
    [
        pytest.param("7916123456", id="10 digits"),
        pytest.param("791612345678", id="12 digits"),
        pytest.param("89161234567", id="starts with 8"),
        pytest.param("7916abc4567", id="letters"),
        pytest.param("+79161234567", id="plus prefix"),
        pytest.param("7 916 123 45 67", id="spaces inside"),
        pytest.param("", id="empty"),
        pytest.param(79161234567, id="number instead of string"),
        pytest.param(7.9161234567e10, id="float"),
        pytest.param(["79161234567"], id="list"),
        pytest.param({"number": "79161234567"}, id="object"),
        pytest.param(True, id="boolean"),
        pytest.param(None, id="null"),
        pytest.param("7" * 10_000, id="huge string"),
    ],
)
def test_malformed_phone_is_a_field_error(api_client, phone):
    response = api_client.post(LIST_URL, {"phone": phone})

    assert response.status_code == 400
    assert list(response.data) == ["phone"]
    assert not Client.objects.exists()


def test_missing_phone_is_a_field_error(api_client):
    response = api_client.post(LIST_URL, {"tag": "vip"})

    assert response.status_code == 400
    assert list(response.data) == ["phone"]


def test_duplicate_phone_is_a_conflict_naming_the_field(api_client):
    ClientFactory(phone="79161234567")

    response = api_client.post(LIST_URL, {"phone": "79161234567"})

    assert response.status_code == 409
    assert list(response.data) == ["phone"]
    assert Client.objects.count() == 1


def test_changing_phone_to_another_clients_phone_is_a_conflict(api_client):
    ClientFactory(phone="79161234567")
    client = ClientFactory(phone="79167654321")

    response = api_client.patch(detail_url(client), {"phone": "79161234567"})

    assert response.status_code == 409
    assert list(response.data) == ["phone"]
    client.refresh_from_db()
    assert client.phone == "79167654321"


def test_a_duplicate_created_after_validation_is_still_a_conflict():
    """Two requests racing for one phone both pass validation; the database decides."""
    serializer = ClientSerializer(data={"phone": "79161234567"})
    assert serializer.is_valid(), serializer.errors
    ClientFactory(phone="79161234567")  # the other request wins

    with pytest.raises(Conflict) as raised:
        ClientViewSet._save(serializer)

    assert list(raised.value.detail) == ["phone"]
    assert Client.objects.count() == 1


@pytest.mark.parametrize("timezone", ["Europe/Moscow", "Asia/Yekaterinburg", "UTC"])
def test_valid_timezone_is_stored(api_client, timezone):
    response = api_client.post(LIST_URL, {"phone": "79161234567", "timezone": timezone})

    assert response.status_code == 201, response.data
    assert Client.objects.get().timezone == timezone


@pytest.mark.parametrize("timezone", ["Mars/Olympus", "europe/moscow", "+03:00", 3, None, "x" * 65])
def test_invalid_timezone_is_a_field_error(api_client, timezone):
    response = api_client.post(LIST_URL, {"phone": "79161234567", "timezone": timezone})

    assert response.status_code == 400
    assert list(response.data) == ["timezone"]


def test_timezone_left_out_on_create_is_the_default_one(api_client, settings):
    settings.DEFAULT_CLIENT_TIMEZONE = "Asia/Omsk"

    response = api_client.post(LIST_URL, {"phone": "79161234567"})

    assert response.status_code == 201, response.data
    assert Client.objects.get().timezone == "Asia/Omsk"


@pytest.mark.parametrize("method", ["post", "patch"])
def test_an_empty_timezone_is_a_field_error_not_a_reset(api_client, method):
    client = ClientFactory(phone="79161234567", timezone="Asia/Tokyo")
    url = LIST_URL if method == "post" else detail_url(client)

    response = getattr(api_client, method)(url, {"phone": "79161234568", "timezone": ""})

    assert response.status_code == 400
    assert list(response.data) == ["timezone"]
    assert list(Client.objects.values_list("phone", "timezone")) == [("79161234567", "Asia/Tokyo")]


@pytest.mark.parametrize("operator_code", ["91", "9161", "9a6", 916])
def test_malformed_operator_code_is_a_field_error(api_client, operator_code):
    response = api_client.post(LIST_URL, {"phone": "79161234567", "operator_code": operator_code})

    assert response.status_code == 400
    assert list(response.data) == ["operator_code"]


def test_too_long_tag_is_a_field_error(api_client):
    response = api_client.post(LIST_URL, {"phone": "79161234567", "tag": "t" * 65})

    assert response.status_code == 400
    assert list(response.data) == ["tag"]


def test_unknown_fields_are_rejected_by_name(api_client):
    response = api_client.post(LIST_URL, {"phone": "79161234567", "nickname": "Bob", "tags": "vip"})

    assert response.status_code == 400
    assert response.data == {"nickname": ["Unknown field."], "tags": ["Unknown field."]}
    assert not Client.objects.exists()


def test_unknown_fields_are_reported_beside_other_field_errors(api_client):
    response = api_client.post(LIST_URL, {"phone": "8", "nickname": "Bob"})

    assert response.status_code == 400
    assert set(response.data) == {"phone", "nickname"}


def test_read_only_fields_sent_back_are_ignored(api_client):
    client = ClientFactory(tag="old")
    representation = api_client.get(detail_url(client)).data

    response = api_client.put(detail_url(client), {**representation, "id": 999, "tag": "new"})

    assert response.status_code == 200, response.data
    assert response.data["id"] == client.pk
    client.refresh_from_db()
    assert client.tag == "new"


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        ("{not json", "application/json", 400),
        ("[]", "application/json", 400),
        ('["79161234567"]', "application/json", 400),
        ("null", "application/json", 400),
        ('"79161234567"', "application/json", 400),
        ("phone=79161234567", "text/plain", 415),
    ],
)
def test_a_body_that_is_not_a_json_object_is_refused(api_client, body, content_type, status):
    response = api_client.generic("POST", LIST_URL, body, content_type=content_type)

    assert response.status_code == status
    assert not Client.objects.exists()


def test_patch_phone_alone_derives_the_new_operator_code_where_it_was_derived(api_client):
    client = ClientFactory(phone="79161234567", operator_code="916")

    response = api_client.patch(detail_url(client), {"phone": "79251234567"})

    assert response.status_code == 200, response.data
    client.refresh_from_db()
    assert (client.phone, client.operator_code) == ("79251234567", "925")


def test_patch_phone_alone_keeps_a_ported_numbers_operator_code(api_client):
    client = ClientFactory(phone="79161234567", operator_code="999")

    response = api_client.patch(detail_url(client), {"phone": "79251234567"})

    assert response.status_code == 200, response.data
    client.refresh_from_db()
    assert (client.phone, client.operator_code) == ("79251234567", "999")


def test_patch_an_empty_operator_code_asks_for_the_one_of_the_phone(api_client):
    client = ClientFactory(phone="79161234567", operator_code="999", tag="vip", timezone="Asia/Tokyo")

    response = api_client.patch(detail_url(client), {"operator_code": ""})

    assert response.status_code == 200, response.data
    client.refresh_from_db()
    assert (client.operator_code, client.tag, client.timezone) == ("916", "vip", "Asia/Tokyo")


def test_patch_tag_alone_keeps_phone_and_operator_code(api_client):
    client = ClientFactory(phone="79161234567", operator_code="999")

    response = api_client.patch(detail_url(client), {"tag": "vip"})

    assert response.status_code == 200, response.data
    client.refresh_from_db()
    assert (client.phone, client.operator_code, client.tag) == ("79161234567", "999", "vip")


def test_put_replaces_the_client(api_client):
    client = ClientFactory(phone="79161234567", tag="old")

    response = api_client.put(
        detail_url(client), {"phone": "79031234567", "tag": "new", "timezone": "Asia/Omsk"}
    )

    assert response.status_code == 200, response.data
    client.refresh_from_db()
    assert (client.phone, client.operator_code, client.tag, client.timezone) == (
        "79031234567",
        "903",
        "new",
        "Asia/Omsk",
    )


def test_put_without_phone_is_a_field_error(api_client):
    client = ClientFactory()

    response = api_client.put(detail_url(client), {"tag": "new"})

    assert response.status_code == 400
    assert list(response.data) == ["phone"]


@pytest.mark.parametrize(
    "body",
    [
        {"phone": "89161234567", "tag": "changed"},
        {"tag": "changed", "timezone": "Nowhere/Town"},
        {"tag": None},
        {"tag": "changed", "unknown": 1},
    ],
)
def test_failed_update_changes_nothing(api_client, body):
    client = ClientFactory(phone="79161234567", tag="kept", timezone="Europe/Moscow")
    before = Client.objects.values().get(pk=client.pk)

    response = api_client.patch(detail_url(client), body)

    assert response.status_code == 400
    assert Client.objects.values().get(pk=client.pk) == before


def test_retrieve_gives_the_client(api_client):
    client = ClientFactory(phone="79161234567", tag="vip")

    response = api_client.get(detail_url(client))

    assert response.status_code == 200
    assert (response.data["id"], response.data["phone"], response.data["tag"]) == (
        client.pk,
        "79161234567",
        "vip",
    )


@pytest.mark.parametrize("pk", ["999", "abc"])
def test_unknown_client_is_not_found(api_client, pk):
    response = api_client.get(f"{LIST_URL}{pk}/")

    assert response.status_code == 404


def test_delete_removes_the_client_but_keeps_its_messages(api_client):
    message = MessageFactory()
    client = message.client

    response = api_client.delete(detail_url(client))

    assert response.status_code == 204
    assert not Client.objects.filter(pk=client.pk).exists()
    message.refresh_from_db()
    assert message.client is None


def test_list_filters_by_tag_operator_code_and_timezone(api_client):
    wanted = ClientFactory(phone="79161234567", tag="vip", timezone="Asia/Omsk")
    ClientFactory(phone="79161234568", tag="other", timezone="Asia/Omsk")
    ClientFactory(phone="79251234567", tag="vip", timezone="Asia/Omsk")
    ClientFactory(phone="79161234569", tag="vip", timezone="Europe/Moscow")

    response = api_client.get(LIST_URL, {"tag": "vip", "operator_code": "916", "timezone": "Asia/Omsk"})

    assert response.status_code == 200
    assert [row["id"] for row in response.data["results"]] == [wanted.pk]


@pytest.mark.parametrize(
    ("ordering", "expected"),
    [("phone", ["79031111111", "79162222222", "79250000000"]), ("-phone", None), ("-id", None)],
)
def test_list_orders_by_the_requested_field(api_client, ordering, expected):
    clients = [ClientFactory(phone=phone) for phone in ("79162222222", "79250000000", "79031111111")]

    response = api_client.get(LIST_URL, {"ordering": ordering})

    phones = [row["phone"] for row in response.data["results"]]
    if ordering == "phone":
        assert phones == expected
    elif ordering == "-phone":
        assert phones == sorted(phones, reverse=True)
    else:
        assert phones == [client.phone for client in reversed(clients)]


def test_list_is_paginated(api_client, settings):
    ClientFactory.create_batch(3)

    response = api_client.get(LIST_URL)

    assert response.data["count"] == 3
    assert {"next", "previous", "results"} <= set(response.data)


def test_list_takes_a_constant_number_of_queries(api_client, django_assert_max_num_queries):
    ClientFactory.create_batch(30)

    with django_assert_max_num_queries(5):  # token, role permissions (user, groups), count, page
        response = api_client.get(LIST_URL, {"ordering": "-created_at"})

    assert response.data["count"] == 30


def test_a_long_bad_timezone_is_quoted_cut_short(api_client):
    response = api_client.post(LIST_URL, {"phone": "79161234567", "timezone": "x" * 10_000}, format="json")

    assert response.status_code == 400
    assert response.data["timezone"] == [
        f"'{'x' * 40}...' is not the IANA name of a place's time zone, such as Europe/Moscow."
    ]
