import pytest
from django.urls import reverse

from clients.models import Client, OptOut
from clients.tests.factories import ClientFactory

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:clients_client_changelist")


def listed_ids(response) -> set[int]:
    return {client.pk for client in response.context["cl"].result_list}


def test_changelist_renders_clients_with_masked_phones(admin_client):
    client = ClientFactory(phone="79161234567", tag="vip")

    response = admin_client.get(CHANGELIST)

    assert response.status_code == 200
    content = response.content.decode()
    assert "7916*****67" in content
    assert "79161234567" not in content
    assert listed_ids(response) == {client.pk}


def test_change_form_shows_the_full_phone(admin_client):
    client = ClientFactory(phone="79161234567")

    response = admin_client.get(reverse("admin:clients_client_change", args=[client.pk]))

    assert response.status_code == 200
    assert 'value="79161234567"' in response.content.decode()


def test_add_form_renders_and_creates_a_client(admin_client):
    url = reverse("admin:clients_client_add")
    assert admin_client.get(url).status_code == 200

    response = admin_client.post(
        url, {"phone": "79031112233", "operator_code": "903", "tag": "new", "timezone": "Asia/Tokyo"}
    )

    assert response.status_code == 302
    assert Client.objects.get(phone="79031112233").timezone == "Asia/Tokyo"


@pytest.mark.parametrize("query", ["79161234567", "1234567", "vip"], ids=["full-phone", "phone-part", "tag"])
def test_search_finds_a_client_by_phone_or_tag(admin_client, query):
    wanted = ClientFactory(phone="79161234567", tag="vip")
    ClientFactory(phone="79030000000", tag="new")

    response = admin_client.get(CHANGELIST, {"q": query})

    assert listed_ids(response) == {wanted.pk}


def test_search_finds_a_ported_number_by_its_operator_code(admin_client):
    ported = ClientFactory(phone="79030000001", operator_code="916")
    ClientFactory(phone="79030000002")

    response = admin_client.get(CHANGELIST, {"q": "916"})

    assert listed_ids(response) == {ported.pk}


def test_filters_narrow_the_list_by_operator_code_tag_and_timezone(admin_client):
    wanted = ClientFactory(phone="79161234567", tag="vip", timezone="Asia/Tokyo")
    ClientFactory(phone="79161234568", tag="vip", timezone="Europe/Moscow")
    ClientFactory(phone="79031234567", tag="vip", timezone="Asia/Tokyo")

    response = admin_client.get(CHANGELIST, {"operator_code": "916", "tag": "vip", "timezone": "Asia/Tokyo"})

    assert listed_ids(response) == {wanted.pk}


def test_an_opt_out_added_in_the_admin_has_source_admin_and_lists_masked(admin_client, admin_user):
    response = admin_client.post(
        reverse("admin:clients_optout_add"), {"phone": "79161234567", "reason": "letter"}
    )

    assert response.status_code == 302, response.content
    optout = OptOut.objects.get()
    assert (optout.source, optout.created_by) == ("admin", admin_user)
    listing = admin_client.get(reverse("admin:clients_optout_changelist")).content.decode()
    assert "7916*****67" in listing and "79161234567" not in listing


def test_the_admin_removes_an_opt_out_only_with_a_reason(admin_client):
    optout = OptOut.objects.create(phone="79161234567", source="api")
    url = reverse("admin:clients_optout_reconsent", args=[optout.pk])

    assert admin_client.get(reverse("admin:clients_optout_change", args=[optout.pk])).status_code == 200
    assert admin_client.post(url, {"reason": ""}).status_code == 200  # the form again, with its error
    assert OptOut.objects.exists()
    assert admin_client.post(url, {"reason": "called back to subscribe"}).status_code == 302
    assert not OptOut.objects.exists()
