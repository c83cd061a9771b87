"""One validator per field: the API, the CSV import, the bulk upsert and the admin refuse the same values."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from clients.models import Client

pytestmark = pytest.mark.django_db

GOOD = {"phone": "79161234567", "operator_code": "916", "tag": "vip", "timezone": "Europe/Moscow"}
BAD_VALUES = [
    ("timezone", "US/Eastern"),
    ("timezone", "localtime"),
    ("timezone", "Etc/GMT+3"),
    ("timezone", "EST5EDT"),
    ("phone", "89161234567"),
    ("phone", "7916123456"),
    ("phone", "+79161234567"),
    ("operator_code", "91"),
    ("tag", "t" * 65),
    ("tag", "a\x00b"),
    ("tag", "a\nb"),
]


def refused_by_the_api(api_client, field, value) -> bool:
    response = api_client.post(reverse("client-list"), {**GOOD, field: value}, format="json")
    return response.status_code == 400 and field in response.data


def refused_by_the_import(api_client, field, value) -> bool:
    quoted = {name: '"' + text.replace('"', '""') + '"' for name, text in {**GOOD, field: value}.items()}
    text = ",".join(quoted) + "\n" + ",".join(quoted.values()) + "\n"
    upload = SimpleUploadedFile("c.csv", text.encode(), "text/csv")
    response = api_client.post(reverse("client-import"), {"file": upload}, format="multipart")
    return response.status_code == 200 and any(field in row["errors"] for row in response.data["invalid"])


def refused_by_the_bulk_upsert(api_client, field, value) -> bool:
    response = api_client.post(reverse("client-bulk"), {"clients": [{**GOOD, field: value}]}, format="json")
    return response.status_code == 200 and any(field in row["errors"] for row in response.data["invalid"])


def refused_by_the_admin(admin_client, field, value) -> bool:
    response = admin_client.post(reverse("admin:clients_client_add"), {**GOOD, field: value})
    return response.status_code == 200 and field in response.context["adminform"].form.errors


@pytest.mark.parametrize(("field", "value"), BAD_VALUES, ids=[f"{f}={v[:12]!r}" for f, v in BAD_VALUES])
def test_every_door_refuses_the_same_bad_value(api_client, admin_client, field, value):
    refused = {
        "api": refused_by_the_api(api_client, field, value),
        "import": refused_by_the_import(api_client, field, value),
        "bulk": refused_by_the_bulk_upsert(api_client, field, value),
        "admin": refused_by_the_admin(admin_client, field, value),
    }

    assert refused == dict.fromkeys(refused, True)
    assert not Client.objects.exists()


def test_every_door_takes_the_good_values(api_client, admin_client):
    assert api_client.post(reverse("client-list"), GOOD, format="json").status_code == 201
    Client.objects.all().delete()
    assert not refused_by_the_import(api_client, "tag", "vip") and Client.objects.exists()
    Client.objects.all().delete()
    assert not refused_by_the_bulk_upsert(api_client, "tag", "vip") and Client.objects.exists()
    Client.objects.all().delete()
    assert admin_client.post(reverse("admin:clients_client_add"), GOOD).status_code == 302
