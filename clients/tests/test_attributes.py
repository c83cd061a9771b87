"""A client's personal fields through the API and the admin."""

import pytest
from django.urls import reverse

from clients.models import Client
from clients.tests.factories import ClientFactory

pytestmark = pytest.mark.django_db


def test_attributes_are_set_and_replaced_through_the_api(api_client):
    created = api_client.post(
        reverse("client-list"), {"phone": "79161234567", "attributes": {"name": "Анна"}}, format="json"
    )
    assert created.status_code == 201, created.data

    changed = api_client.patch(
        reverse("client-detail", args=[created.data["id"]]), {"attributes": {"city": "Kazan"}}, format="json"
    )

    assert changed.data["attributes"] == {"city": "Kazan"}
    assert Client.objects.get().attributes == {"city": "Kazan"}


@pytest.mark.parametrize(
    ("attributes", "error"),
    [
        ({"Name": "x"}, "'Name': a name is a lowercase letter"),
        ({"first name": "x"}, "'first name': a name is a lowercase letter"),
        ({"n" * 33: "x"}, "a name is a lowercase letter"),
        ({"name": ""}, "name: a value is a string of 1 to 64 characters."),
        ({"name": "x" * 65}, "name: a value is a string of 1 to 64 characters."),
        ({"name": 5}, "name: a value is a string of 1 to 64 characters."),
        ({"name": {"first": "x"}}, "name: a value is a string of 1 to 64 characters."),
        ({f"k{n}": "x" for n in range(11)}, "At most 10 attributes; got 11."),
        (["name"], "Enter an object of named strings"),
    ],
)
def test_bad_attributes_are_a_400_naming_them(api_client, attributes, error):
    response = api_client.post(
        reverse("client-list"), {"phone": "79161234567", "attributes": attributes}, format="json"
    )

    assert response.status_code == 400
    assert any(error in message for message in response.data["attributes"])
    assert not Client.objects.exists()


def test_the_admin_validates_attributes(admin_client):
    client = ClientFactory()
    url = reverse("admin:clients_client_change", args=[client.pk])
    form = {"phone": client.phone, "operator_code": "900", "tag": "", "timezone": "Europe/Moscow"}

    refused = admin_client.post(url, {**form, "attributes": '{"Bad key": "x"}'})
    saved = admin_client.post(url, {**form, "attributes": '{"name": "Анна"}'})

    assert refused.status_code == 200 and "a name is a lowercase letter" in refused.content.decode()
    assert saved.status_code == 302
    client.refresh_from_db()
    assert client.attributes == {"name": "Анна"}
