"""Client import from CSV, through the API and the admin."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import DatabaseError
from django.test import Client as BrowserClient
from django.urls import reverse
from rest_framework.test import APIClient

from clients import services, views
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
        "changed": {"operator_code": 0, "tag": 1, "timezone": 1, "attributes": 0},
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


def test_the_admin_counts_its_imports_with_the_apis(admin_client, settings, own_cache):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {
            **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"],
            "client_import": "1/hour",
        },
    }
    files = [SimpleUploadedFile("c.csv", f"{HEADER}7916000000{n},,,\n".encode(), "text/csv") for n in (1, 2)]

    answers = [admin_client.post(reverse("admin:clients_client_import"), {"file": file}) for file in files]

    assert answers[0].context["report"].created == 1
    assert answers[1].context["report"] is None
    assert "Too many imports" in answers[1].content.decode()
    assert Client.objects.count() == 1


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


def test_a_column_absent_from_the_file_leaves_the_field_as_stored(api_client):
    ported = ClientFactory(phone="79160000001", operator_code="999", tag="vip", timezone="Asia/Tokyo")
    stamped = ported.updated_at

    response = upload(api_client, "phone\n79160000001\n79160000002\n")

    assert response.status_code == 200, response.data
    assert (response.data["created"], response.data["updated"], response.data["unchanged"]) == (1, 0, 1)
    ported.refresh_from_db()
    assert (ported.operator_code, ported.tag, ported.timezone, ported.updated_at) == (
        "999",
        "vip",
        "Asia/Tokyo",
        stamped,
    )


def test_a_file_naming_only_the_tag_changes_only_the_tag(api_client):
    ported = ClientFactory(phone="79160000001", operator_code="999", tag="old", timezone="Asia/Tokyo")

    response = upload(api_client, "tag,phone\nnew,79160000001\n")

    assert response.data["changed"] == {"operator_code": 0, "tag": 1, "timezone": 0, "attributes": 0}
    ported.refresh_from_db()
    assert (ported.operator_code, ported.tag, ported.timezone) == ("999", "new", "Asia/Tokyo")


def test_empty_cells_derive_the_operator_code_clear_the_tag_and_keep_the_timezone(api_client, settings):
    settings.DEFAULT_CLIENT_TIMEZONE = "Asia/Omsk"
    stored = ClientFactory(phone="79160000001", operator_code="999", tag="vip", timezone="Asia/Tokyo")

    response = upload(api_client, HEADER + "79160000001,,,\n79160000002,,,\n")

    assert response.status_code == 200, response.data
    assert response.data["changed"] == {"operator_code": 1, "tag": 1, "timezone": 0, "attributes": 0}
    stored.refresh_from_db()
    assert (stored.operator_code, stored.tag, stored.timezone) == ("916", "", "Asia/Tokyo")
    new = Client.objects.get(phone="79160000002")
    assert (new.operator_code, new.tag, new.timezone) == ("916", "", "Asia/Omsk")


@pytest.mark.parametrize("char", ["\x00", "\t", "\x1b", "\x7f"], ids=["NUL", "tab", "escape", "DEL"])
def test_a_control_character_in_a_cell_is_a_row_error(api_client, char):
    response = upload(api_client, f"phone,tag\n79160000001,a{char}b\n79160000002,ok\n")

    assert response.status_code == 200, response.data
    assert [(row["row"], set(row["errors"])) for row in response.data["invalid"]] == [(2, {"tag"})]
    assert list(Client.objects.values_list("phone", flat=True)) == ["79160000002"]


def test_values_echoed_in_errors_are_cut_short(api_client):
    huge = "x" * 100_000

    bad_header = upload(api_client, f"phone,{huge}\n")
    bad_cell = upload(api_client, f"phone,timezone\n79160000001,{huge}\n")

    assert bad_header.status_code == 400
    assert len(str(bad_header.data)) < 500
    assert len(str(bad_cell.data)) < 500
    assert bad_cell.data["invalid"][0]["errors"]["timezone"].startswith(f"'{'x' * 40}...'")


def test_a_file_over_the_row_cap_is_refused_before_anything_is_written(api_client, settings):
    settings.CLIENT_IMPORT_MAX_ROWS = 2

    too_many = upload(api_client, "phone\n79160000001\n79160000002\n79160000003\n")
    enough = upload(api_client, "phone\n79160000001\n79160000002\n")

    assert too_many.status_code == 400
    assert "more than 2 rows" in too_many.data["file"][0]
    assert enough.data["created"] == 2


def huge_content_length(client, url: str, content_type: str):
    """A request that claims a 1 GB body and has a few bytes: the test client's payload raises if
    anything reads past them, so an answer proves the size was judged from the header alone."""
    return client.generic("POST", url, b"phone\n", content_type=content_type, CONTENT_LENGTH=str(2**30))


@pytest.mark.parametrize("content_type", ["text/csv", "multipart/form-data; boundary=x"])
def test_the_api_refuses_a_large_body_from_its_content_length(api_client, operator, content_type):
    response = huge_content_length(api_client, IMPORT_URL, content_type)

    assert response.status_code == 413
    assert "CLIENT_IMPORT_MAX_BYTES" in response.data["detail"]

    # A browser session checks CSRF, which reads a form body: the size is judged before it.
    session = APIClient(enforce_csrf_checks=True)
    session.force_login(operator)
    assert huge_content_length(session, IMPORT_URL, content_type).status_code == 413


def test_the_admin_refuses_a_large_body_before_its_csrf_check_reads_it(admin_user):
    browser = BrowserClient(enforce_csrf_checks=True)
    browser.force_login(admin_user)
    url = reverse("admin:clients_client_import")

    response = huge_content_length(browser, url, "multipart/form-data; boundary=x")

    assert response.status_code == 413
    assert browser.post(url, {"file": SimpleUploadedFile("c.csv", b"phone\n")}).status_code == 403  # no token


def test_an_audit_line_per_written_batch_and_one_for_the_whole(api_client, settings, caplog):
    settings.CLIENT_IMPORT_BATCH_SIZE = 2
    caplog.set_level("INFO", logger="ops.audit")

    upload(api_client, "phone\n" + "".join(f"7916000000{n}\n" for n in range(5)))

    lines = [record.getMessage() for record in caplog.records if record.name == "ops.audit"]
    assert [line.split(": ", 1)[1].split(" by ")[0] for line in lines[:3]] == [
        "rows 2-3 written (2 created, 0 updated)",
        "rows 4-5 written (2 created, 0 updated)",
        "rows 6-6 written (1 created, 0 updated)",
    ]
    assert "done (5 created, 0 updated, 0 unchanged, 0 invalid rows)" in lines[3]
    assert len({line.split(":")[0] for line in lines}) == 1  # one import id ties them together


def test_uploads_kept_on_disk_import_the_same(api_client, settings, monkeypatch):
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 10  # a multipart file larger than this waits on disk
    monkeypatch.setattr(views, "SPOOLED_IN_MEMORY", 10)  # so does a text/csv body
    rows = "phone,tag\n79160000001,a\n79160000002,b\n"

    as_file = upload(api_client, rows)
    as_body = api_client.generic("POST", IMPORT_URL, rows.replace(",a", ",c"), content_type="text/csv")

    assert (as_file.data["created"], as_body.data["updated"]) == (2, 1)
    assert list(Client.objects.values_list("tag", flat=True)) == ["c", "b"]


def test_a_body_without_content_length_is_not_read(api_client):
    # As a chunked upload reaches Django: no Content-Length, so nothing of the body is read.
    response = api_client.generic(
        "POST", IMPORT_URL, b"phone\n79160000001\n", content_type="text/csv", CONTENT_LENGTH=""
    )

    assert response.status_code == 400
    assert response.data["file"] == ["No file was submitted."]
    assert not Client.objects.exists()


def test_attribute_columns_set_change_or_remove_only_the_attributes_they_name(api_client):
    kept = ClientFactory(phone="79160000001", attributes={"name": "Anna", "city": "Kazan"})
    ClientFactory(phone="79160000002", attributes={"name": "Boris"})
    text = "phone,attr_name,attr_city\n79160000001,Анна,\n79160000002,Boris,Omsk\n79160000003,Вера,\n"

    response = upload(api_client, text)

    assert response.status_code == 200, response.data
    assert (response.data["created"], response.data["updated"]) == (1, 2)
    assert response.data["changed"]["attributes"] == 2
    assert dict(Client.objects.values_list("phone", "attributes")) == {
        kept.phone: {"name": "Анна"},  # an empty cell removes that attribute
        "79160000002": {"name": "Boris", "city": "Omsk"},
        "79160000003": {"name": "Вера"},
    }


def test_a_bad_attribute_column_is_that_rows_error(api_client):
    text = "phone,attr_name,attr_Bad\n79160000001,Anna,x\n79160000002," + "x" * 65 + ",\n"

    response = upload(api_client, text)

    assert response.status_code == 200
    assert [sorted(row["errors"]) for row in response.data["invalid"]] == [["attr_Bad"], ["attr_name"]]
    assert not Client.objects.exists()


def test_attributes_past_their_number_refuse_the_row(api_client):
    ClientFactory(phone="79160000001", attributes={f"a{n}": "x" for n in range(10)})

    response = upload(api_client, "phone,attr_one_more\n79160000001,x\n")

    assert response.data["invalid"] == [
        {"row": 2, "errors": {"attributes": "At most 10 attributes; got 11."}}
    ]
    assert len(Client.objects.get().attributes) == 10
