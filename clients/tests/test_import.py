"""Client import from CSV, through the API and the admin."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import DatabaseError
from django.urls import reverse

from clients import services
from clients.models import Client
from clients.tests.factories import ClientFactory

pytestmark = pytest.mark.django_db

IMPORT_URL = reverse("client-import")
HEADER = "phone,operator_code,tag,timezone\n"


def upload(api_client, text: str | bytes):
    data = text.encode() if isinstance(text, str) else text
    return api_client.post(
        IMPORT_URL, {"file": SimpleUploadedFile("clients.csv", data, "text/csv")}, format="multipart"
    )


def test_valid_rows_are_created_or_updated_by_phone(api_client):
    ClientFactory(phone="79160000001", tag="old", timezone="Europe/Moscow")

    response = upload(
        api_client,
        HEADER + "79160000001,916,vip,Asia/Tokyo\n79250000002,,new,\n79990000003,901,,Europe/Berlin\n",
    )

    assert response.status_code == 200, response.data
    assert response.data == {
        "created": 2,
        "updated": 1,
        "unchanged": 0,
        "changed": {"operator_code": 0, "tag": 1, "timezone": 1},
        "invalid_count": 0,
        "invalid": [],
    }
    updated = Client.objects.get(phone="79160000001")
    assert (updated.tag, updated.timezone) == ("vip", "Asia/Tokyo")
    derived = Client.objects.get(phone="79250000002")
    assert (derived.operator_code, derived.timezone) == ("925", "Europe/Moscow")
    assert Client.objects.get(phone="79990000003").operator_code == "901"


def test_the_body_can_be_the_csv_itself(api_client):
    response = api_client.generic("POST", IMPORT_URL, "phone\n79160000001\n", content_type="text/csv")

    assert response.status_code == 200, response.data
    assert response.data["created"] == 1


def test_invalid_rows_come_back_with_row_number_and_reason(api_client):
    response = upload(
        api_client,
        HEADER
        + "79160000001,916,vip,Europe/Moscow\n"  # row 2: valid
        + "8916000000,,,\n"  # row 3: bad phone
        + "79160000002,91,,Mars/Olympus\n"  # row 4: bad code and timezone
        + "79160000003,916,"
        + "t" * 65
        + ",\n"  # row 5: tag too long
        + "79160000004,916\n"  # row 6: too few columns
        + "79160000001,916,again,\n",  # row 7: phone of row 2
    )

    assert response.status_code == 200, response.data
    assert response.data["created"] == 1
    assert response.data["invalid_count"] == 5
    invalid = {row["row"]: set(row["errors"]) for row in response.data["invalid"]}
    assert invalid == {3: {"phone"}, 4: {"operator_code", "timezone"}, 5: {"tag"}, 6: {"row"}, 7: {"phone"}}
    assert list(Client.objects.values_list("phone", "tag")) == [("79160000001", "vip")]


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"\xff\xfephone\n",  # not UTF-8
        b"name,phone\nx,79160000001\n",  # unknown column
        b"operator_code,tag\n916,vip\n",  # no phone column
        b"phone,phone\n79160000001,79160000002\n",
        b'phone,tag\n79160000001,"unterminated\n',
        b'phone,tag\n79160000001,"a"b\n',
    ],
)
def test_a_malformed_file_is_a_bad_request_and_writes_nothing(api_client, content):
    response = upload(api_client, content)

    assert response.status_code == 400
    assert "file" in response.data
    assert not Client.objects.exists()


def test_no_file_is_a_field_error(api_client):
    response = api_client.post(IMPORT_URL, {}, format="multipart")

    assert response.status_code == 400
    assert "file" in response.data


def test_a_failing_batch_is_rolled_back_whole_and_earlier_batches_stay(api_client, settings, monkeypatch):
    settings.CLIENT_IMPORT_BATCH_SIZE = 2
    real_write = services._BatchWriter._write
    batches = []

    def write_failing_on_the_second_batch(writer):
        batches.append(writer.batch)
        written = real_write(writer)  # written, then lost with its transaction
        if len(batches) == 2:
            raise DatabaseError("disk full")
        return written

    monkeypatch.setattr(services._BatchWriter, "_write", write_failing_on_the_second_batch)
    rows = "".join(f"7916000000{n},,,\n" for n in range(5))

    response = upload(api_client, HEADER + rows)

    assert response.status_code == 503
    assert "rows 4 to 5" in response.data["detail"]
    assert sorted(Client.objects.values_list("phone", flat=True)) == ["79160000000", "79160000001"]


def test_the_admin_imports_the_same_way(admin_client):
    changelist = admin_client.get(reverse("admin:clients_client_changelist"))
    data = (HEADER + "79160000001,,vip,\nbad,,,\n").encode()

    response = admin_client.post(
        reverse("admin:clients_client_import"), {"file": SimpleUploadedFile("c.csv", data, "text/csv")}
    )

    assert reverse("admin:clients_client_import") in changelist.content.decode()
    assert response.status_code == 200
    assert response.context["report"].created == 1
    assert response.context["report"].invalid[0]["row"] == 3
    assert Client.objects.get().tag == "vip"


def test_the_admin_refuses_a_malformed_file_on_the_form(admin_client):
    bad = SimpleUploadedFile("c.csv", b"name\nx\n", "text/csv")

    response = admin_client.post(reverse("admin:clients_client_import"), {"file": bad})

    assert response.status_code == 200
    assert "file" in response.context["form"].errors
    assert not Client.objects.exists()


def test_the_file_may_also_be_a_text_form_field(api_client):
    body = "phone,operator_code,tag,timezone\n79161234567,,vip,\n"

    response = api_client.post(IMPORT_URL, {"file": body}, format="multipart")

    assert response.status_code == 200, response.data
    assert response.data["created"] == 1
