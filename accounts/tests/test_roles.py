"""What each role may do through the API, and that the groups come from the data migration."""

import pytest
from django.contrib.auth.models import Group, Permission
from django.urls import reverse

from clients.models import Client
from clients.tests.factories import ClientFactory
from conftest import token_client
from mailings.tests.factories import MailingFactory
from messages_app.tests.factories import MessageFactory

pytestmark = pytest.mark.django_db

READ_PATHS = [
    "/api/v1/",
    "/api/v1/clients/",
    "/api/v1/mailings/",
    "/api/v1/mailings/statistics/",
    "/api/v1/messages/",
]


def test_the_migration_makes_the_three_groups():
    groups = {group.name: group for group in Group.objects.prefetch_related("permissions")}

    assert set(groups) == {"operators", "viewers", "admins"}
    viewer_permissions = {p.codename for p in groups["viewers"].permissions.all()}
    assert {"view_client", "view_mailing", "view_message"} <= viewer_permissions
    assert all(codename.startswith("view_") for codename in viewer_permissions)
    assert "view_phone" not in viewer_permissions
    operator_permissions = {p.codename for p in groups["operators"].permissions.all()}
    assert {"add_client", "change_mailing", "delete_mailing", "view_phone"} <= operator_permissions
    assert not any(codename.endswith("_user") for codename in operator_permissions)
    admin_permissions = {p.codename for p in groups["admins"].permissions.all()}
    assert operator_permissions | {"add_user", "change_group", "delete_token"} <= admin_permissions


@pytest.mark.parametrize("path", READ_PATHS)
def test_a_viewer_reads_everything(viewer_client, path):
    assert viewer_client.get(path).status_code == 200


def test_a_viewer_sees_phones_masked_and_an_operator_in_clear(viewer_client, api_client):
    client = ClientFactory(phone="79161234567")

    for path in ["/api/v1/clients/", reverse("client-detail", args=[client.pk])]:
        seen = viewer_client.get(path).json()
        assert (seen["results"][0] if "results" in seen else seen)["phone"] == "7916*****67"
    assert api_client.get("/api/v1/clients/").json()["results"][0]["phone"] == "79161234567"


def test_a_viewer_reads_one_mailings_statistics_and_a_message(viewer_client):
    message = MessageFactory()

    assert (
        viewer_client.get(reverse("mailing-statistics-detail", args=[message.mailing_id])).status_code == 200
    )
    assert viewer_client.get(reverse("message-detail", args=[message.pk])).status_code == 200


def test_a_viewer_writes_nothing(viewer_client):
    client, mailing = ClientFactory(phone="79161234567"), MailingFactory()
    writes = [
        ("post", "/api/v1/clients/", {"phone": "79160000000"}),
        ("patch", reverse("client-detail", args=[client.pk]), {"tag": "x"}),
        ("put", reverse("client-detail", args=[client.pk]), {"phone": "79160000000"}),
        ("delete", reverse("client-detail", args=[client.pk]), None),
        ("post", "/api/v1/mailings/", {"text": "x"}),
        ("patch", reverse("mailing-detail", args=[mailing.pk]), {"text": "x"}),
        ("delete", reverse("mailing-detail", args=[mailing.pk]), None),
    ]

    for method, path, body in writes:
        response = getattr(viewer_client, method)(path, body)
        assert response.status_code == 403, (method, path)
    assert Client.objects.get().tag == client.tag


def test_an_operator_writes(api_client):
    assert api_client.post("/api/v1/clients/", {"phone": "79160000000"}).status_code == 201


def test_a_user_without_a_role_gets_nothing_but_the_index(django_user_model):
    nobody = token_client(django_user_model.objects.create_user("nobody"))

    assert nobody.get("/api/v1/").status_code == 200
    assert nobody.get("/api/v1/clients/").status_code == 403
    assert nobody.post("/api/v1/clients/", {"phone": "79160000000"}).status_code == 403


def test_an_admin_writes_and_a_superuser_too(django_user_model):
    admin = django_user_model.objects.create_user("boss", is_staff=True)
    admin.groups.add(Group.objects.get(name="admins"))
    root = django_user_model.objects.create_superuser("root")

    assert token_client(admin).post("/api/v1/clients/", {"phone": "79160000000"}).status_code == 201
    assert token_client(root).get("/api/v1/clients/").json()["results"][0]["phone"] == "79160000000"


@pytest.mark.django_db(transaction=True)
def test_the_groups_come_back_after_a_flush():
    """Transactional tests flush the database between tests; post_migrate makes the groups again."""
    from django.core.management import call_command

    call_command("flush", interactive=False, verbosity=0)

    assert set(Group.objects.values_list("name", flat=True)) == {"operators", "viewers", "admins"}
    assert Group.objects.get(name="viewers").permissions.filter(codename="view_client").exists()


def test_campaign_actions_need_the_permission_they_use(viewer_client, django_user_model):
    """Pause, resume, cancel and test sends change a mailing, resend adds one, an import or a bulk
    upsert adds clients; the audience, a draft's segments and past test sends are reads."""
    mailing = MailingFactory()
    client = ClientFactory()
    writes = [
        (reverse("mailing-pause", args=[mailing.pk]), {}),
        (reverse("mailing-resume", args=[mailing.pk]), {}),
        (reverse("mailing-cancel", args=[mailing.pk]), {}),
        (reverse("mailing-test", args=[mailing.pk]), {"client_ids": [client.pk]}),
        (reverse("mailing-resend", args=[mailing.pk]), {}),
        (reverse("client-import"), {}),
        (reverse("client-bulk"), {"clients": [{"phone": "79160000001"}]}),
    ]
    for path, body in writes:
        assert viewer_client.post(path, body).status_code == 403, path
    assert viewer_client.get(reverse("mailing-audience")).status_code == 200
    assert viewer_client.post(reverse("mailing-segments"), {"text": "hello"}).status_code == 200
    assert viewer_client.get(reverse("mailing-test", args=[mailing.pk])).status_code == 200

    adder = django_user_model.objects.create_user("adder")
    adder.user_permissions.add(*Permission.objects.filter(codename__in=["add_mailing", "view_mailing"]))
    assert token_client(adder).post(reverse("mailing-pause", args=[mailing.pk])).status_code == 403
