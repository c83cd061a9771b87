"""Phones in the admin follow the API's rule: clear to those with clients.view_phone, masked to the
others, who can neither search, filter nor sort by phone (no answer tells them a phone is stored)."""

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from accounts.roles import OPERATORS, VIEWERS
from clients.models import OptOut, OptOutSource
from clients.tests.factories import ClientFactory
from conftest import user_with_role

pytestmark = pytest.mark.django_db

PHONE, MASKED = "79260000001", "7926*****01"
CHANGELIST = reverse("admin:clients_client_changelist")
AUTOCOMPLETE = reverse("admin:autocomplete")
# The test send's client picker (console.forms.TestSendForm) asks this.
PICKER = {"app_label": "mailings", "model_name": "testsend", "field_name": "client"}


def staff_client(client, django_user_model, group: str):
    """The test client logged in to the admin as a staff member of the group."""
    user = user_with_role(django_user_model, f"staff-{group}", group)
    user.is_staff = True
    user.save(update_fields=["is_staff"])
    client.force_login(user)
    return client


@pytest.fixture
def staff_viewer(client, django_user_model):
    return staff_client(client, django_user_model, VIEWERS)


@pytest.fixture
def staff_operator(client, django_user_model):
    return staff_client(client, django_user_model, OPERATORS)


@pytest.fixture
def stored():
    ClientFactory(phone="79030000000", tag="other")
    return ClientFactory(phone=PHONE, tag="vip")


def picked_ids(response) -> list[str]:
    assert response.status_code == 200
    return [result["id"] for result in response.json()["results"]]


def test_a_viewer_sees_the_phone_masked_on_the_change_form(staff_viewer, stored):
    response = staff_viewer.get(reverse("admin:clients_client_change", args=[stored.pk]))

    assert response.status_code == 200
    content = response.content.decode()
    assert MASKED in content
    assert PHONE not in content


def test_an_operator_sees_the_phone_in_clear_on_the_change_form(staff_operator, stored):
    response = staff_operator.get(reverse("admin:clients_client_change", args=[stored.pk]))

    assert f'value="{PHONE}"' in response.content.decode()


@pytest.mark.parametrize("term", [PHONE, "7926000", "0001"])
def test_a_viewers_search_by_phone_finds_nothing(staff_viewer, stored, term):
    response = staff_viewer.get(CHANGELIST, {"q": term})

    assert response.status_code == 200
    assert list(response.context["cl"].result_list) == []


def test_a_viewer_still_searches_by_tag(staff_viewer, stored):
    response = staff_viewer.get(CHANGELIST, {"q": "vip"})

    assert [client.pk for client in response.context["cl"].result_list] == [stored.pk]


@pytest.mark.parametrize("lookup", ["phone", "phone__startswith", "phone__regex"])
def test_a_viewer_cannot_filter_the_list_by_phone_in_the_query_string(staff_viewer, stored, lookup):
    response = staff_viewer.get(CHANGELIST, {lookup: "7926"})

    assert response.status_code == 400  # the admin's answer to a lookup it does not allow


def test_a_viewer_cannot_sort_the_list_by_phone(staff_viewer, stored):
    response = staff_viewer.get(CHANGELIST)

    assert response.context["cl"].sortable_by == ["id", "operator_code", "tag", "timezone", "created_at"]


def test_the_client_picker_does_not_tell_a_viewer_whether_a_phone_is_stored(staff_viewer, stored):
    for term in (PHONE, "7926", "0001"):
        assert picked_ids(staff_viewer.get(AUTOCOMPLETE, {**PICKER, "term": term})) == []

    by_tag = staff_viewer.get(AUTOCOMPLETE, {**PICKER, "term": "vip"})
    assert picked_ids(by_tag) == [str(stored.pk)]
    assert PHONE not in by_tag.content.decode()


def test_the_client_picker_finds_a_phone_for_an_operator_and_shows_it_masked(staff_operator, stored):
    response = staff_operator.get(AUTOCOMPLETE, {**PICKER, "term": "7926"})

    assert picked_ids(response) == [str(stored.pk)]
    assert MASKED in response.content.decode()


def test_who_may_change_clients_but_not_see_phones_edits_the_rest_and_keeps_the_phone(
    client, django_user_model, stored
):
    editor = django_user_model.objects.create_user("editor", is_staff=True)
    editor.user_permissions.add(*Permission.objects.filter(codename__in=["view_client", "change_client"]))
    client.force_login(editor)
    url = reverse("admin:clients_client_change", args=[stored.pk])

    assert PHONE not in client.get(url).content.decode()
    response = client.post(
        url, {"phone": "79999999999", "operator_code": "926", "tag": "renamed", "timezone": "Europe/Moscow"}
    )

    assert response.status_code == 302
    stored.refresh_from_db()
    assert (stored.phone, stored.tag) == (PHONE, "renamed")


def test_a_viewer_sees_opt_outs_masked_and_cannot_find_one_by_phone(staff_viewer):
    optout = OptOut.objects.create(phone=PHONE, source=OptOutSource.API, reason="asked")
    changelist = reverse("admin:clients_optout_changelist")

    form = staff_viewer.get(reverse("admin:clients_optout_change", args=[optout.pk]))

    assert form.status_code == 200
    assert MASKED in form.content.decode() and PHONE not in form.content.decode()
    assert list(staff_viewer.get(changelist, {"q": PHONE}).context["cl"].result_list) == []
    assert staff_viewer.get(changelist, {"phone": PHONE}).status_code == 400
    assert "masked_phone" not in staff_viewer.get(changelist).context["cl"].sortable_by
