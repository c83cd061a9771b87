"""The opt-out list through the API and its CSV import: who may add, remove (re-consent) and see."""

import logging

import pytest
from django.urls import reverse

from clients.models import OptOut
from clients.services import optout_from_provider

pytestmark = pytest.mark.django_db

LIST_URL = reverse("optout-list")
PHONE = "79161234567"


def reconsent_url(optout: OptOut) -> str:
    return reverse("optout-reconsent", args=[optout.pk])


def test_an_operator_opts_a_phone_out_and_the_messages_are_ended_after_commit(
    api_client, operator, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as enqueued:
        response = api_client.post(
            LIST_URL, {"phone": PHONE, "reason": "said STOP on the phone"}, format="json"
        )

    assert response.status_code == 201, response.data
    optout = OptOut.objects.get()
    assert (optout.phone, optout.source, optout.created_by, optout.reason) == (
        PHONE,
        "api",
        operator,
        "said STOP on the phone",
    )
    assert response.data["created_by"] == "operator"
    assert len(enqueued) == 1  # messages_app.tasks.end_opted_out, by name


def test_a_phone_already_on_the_list_keeps_its_first_opt_out(api_client):
    first = api_client.post(LIST_URL, {"phone": PHONE, "reason": "first"}, format="json")
    again = api_client.post(LIST_URL, {"phone": PHONE, "reason": "second"}, format="json")

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.data["id"] == first.data["id"] and again.data["reason"] == "first"
    assert OptOut.objects.count() == 1


@pytest.mark.parametrize("phone", ["8916123456", "7916123456a", 79161234567, ""])
def test_a_bad_phone_is_a_field_error(api_client, phone):
    response = api_client.post(LIST_URL, {"phone": phone}, format="json")

    assert response.status_code == 400
    assert list(response.data) == ["phone"]


def test_a_viewer_sees_phones_masked_and_may_not_add(viewer_client):
    OptOut.objects.create(phone=PHONE, source="admin")

    listed = viewer_client.get(LIST_URL)
    refused = viewer_client.post(LIST_URL, {"phone": "79160000000"}, format="json")

    assert listed.status_code == 200
    assert listed.data["results"][0]["phone"] == "7916*****67"
    assert refused.status_code == 403


def test_a_reconsent_needs_a_reason_and_is_audited(api_client, caplog):
    optout = OptOut.objects.create(phone=PHONE, source="api")

    without = api_client.post(reconsent_url(optout), {}, format="json")
    assert without.status_code == 400 and list(without.data) == ["reason"]
    with caplog.at_level(logging.INFO, logger="ops.audit"):
        removed = api_client.post(
            reconsent_url(optout), {"reason": "signed up again at the shop"}, format="json"
        )

    assert removed.status_code == 204
    assert not OptOut.objects.exists()
    [line] = [record.getMessage() for record in caplog.records if record.name == "ops.audit"]
    assert "re-consent: signed up again at the shop" in line and "by operator" in line
    assert PHONE not in line  # masked
    assert api_client.post(reconsent_url(optout), {"reason": "again"}, format="json").status_code == 404


def test_opt_outs_cannot_be_deleted_without_a_reason(api_client):
    optout = OptOut.objects.create(phone=PHONE, source="api")

    assert api_client.delete(reverse("optout-detail", args=[optout.pk])).status_code == 405


def test_an_import_adds_valid_phones_keeps_existing_ones_and_reports_bad_rows(api_client):
    OptOut.objects.create(phone="79160000001", source="api", reason="kept")
    data = "phone,reason\n79160000001,again\n79160000002,STOP reply\n12345,bad\n79160000003,\n"

    response = api_client.post(reverse("optout-import"), data, content_type="text/csv")

    assert response.status_code == 200, response.data
    assert (response.data["added"], response.data["already"], response.data["invalid_count"]) == (2, 1, 1)
    assert response.data["invalid"][0]["row"] == 4
    assert dict(OptOut.objects.values_list("phone", "reason")) == {
        "79160000001": "kept",
        "79160000002": "STOP reply",
        "79160000003": "",
    }
    assert set(OptOut.objects.exclude(reason="kept").values_list("source", flat=True)) == {"import"}


def test_an_import_with_a_wrong_header_writes_nothing(api_client):
    response = api_client.post(reverse("optout-import"), "number\n79160000001\n", content_type="text/csv")

    assert response.status_code == 400 and list(response.data) == ["file"]
    assert not OptOut.objects.exists()


def test_an_inbound_stop_from_the_provider_opts_the_phone_out():
    optout, created = optout_from_provider(phone=PHONE, provider="kannel", text=" STOP ")

    assert created
    assert (optout.source, optout.reason, optout.created_by) == ("provider", "kannel: STOP", None)
