"""Providers as data: admins manage them (API and admin), tokens stay in the environment, and the
senders are built from the enabled rows or, without any, from PROVIDER_URL and PROVIDER_TOKEN."""

from datetime import UTC, datetime

import pytest

from accounts.roles import ADMINS
from conftest import token_client, user_with_role
from messages_app.senders import NoProvider, provider_specs
from messages_app.sending.store import WeightChange
from providers.models import Provider
from providers.services import provider_weight_changes_record

pytestmark = pytest.mark.django_db

ACME = {
    "name": "acme",
    "transport": "probe",
    "url": "https://sms.acme.example/v1",
    "credentials_env": "SMS_ACME_TOKEN",
    "weight": 300,
    "rate_limit": 50.0,
    "operators_only": ["910", "911"],
}


@pytest.fixture
def admin_client(django_user_model):
    return token_client(user_with_role(django_user_model, "boss", ADMINS))


def test_an_admin_adds_a_provider_and_reads_it_back_without_any_secret(admin_client):
    created = admin_client.post("/api/v1/providers/", ACME, format="json")

    assert created.status_code == 201, created.json()
    body = admin_client.get(f"/api/v1/providers/{created.json()['id']}/").json()
    assert body | {"id": 0, "created_at": "", "updated_at": ""} == ACME | {
        "id": 0,
        "operators_excluded": [],
        "enabled": True,
        "created_at": "",
        "updated_at": "",
    }
    assert not any(field in body for field in ("token", "secret", "password"))


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"credentials_env": "not an env name"}, "credentials_env"),
        ({"operators_only": ["9100"]}, "operators_only"),
        ({"operators_only": ["910", "910"]}, "operators_only"),
        ({"operators_excluded": ["911"]}, "operators_excluded"),
        ({"weight": -1}, "weight"),
        ({"rate_limit": 0}, "rate_limit"),
        ({"transport": "smtp"}, "transport"),
        ({"token": "s3cret"}, "token"),
    ],
)
def test_bad_fields_are_a_400_naming_them(admin_client, change, field):
    response = admin_client.post("/api/v1/providers/", ACME | change, format="json")

    assert response.status_code == 400
    assert field in response.json()
    assert not Provider.objects.exists()


def test_a_partial_change_is_checked_against_the_stored_routes(admin_client):
    provider = admin_client.post("/api/v1/providers/", ACME, format="json").json()

    response = admin_client.patch(
        f"/api/v1/providers/{provider['id']}/", {"operators_excluded": ["910"]}, format="json"
    )

    assert response.status_code == 400 and "operators_excluded" in response.json()


def test_operators_and_viewers_neither_see_nor_change_providers(api_client, viewer_client):
    Provider.objects.create(**ACME)
    for client in (api_client, viewer_client):
        assert client.get("/api/v1/providers/").status_code == 403
        assert client.post("/api/v1/providers/", ACME | {"name": "other"}, format="json").status_code == 403


def test_the_admin_pages_are_the_admins_only(client, django_user_model):
    operator = django_user_model.objects.create_user("op", password="op-password-1", is_staff=True)
    operator.groups.add(*user_with_role(django_user_model, "x", "operators").groups.all())
    admin = user_with_role(django_user_model, "boss", ADMINS)
    admin.is_staff = True
    admin.save()

    client.force_login(operator)
    assert client.get("/admin/providers/provider/").status_code == 403
    client.force_login(admin)
    assert client.get("/admin/providers/provider/").status_code == 200
    assert client.get("/admin/providers/providerweightchange/").status_code == 200


def test_the_weight_history_is_listed_newest_first(admin_client):
    at = datetime(2026, 12, 6, 10, tzinfo=UTC).timestamp()
    provider_weight_changes_record(
        changes=[
            WeightChange("acme", 100, 90, "50 errors within 60 s", at),
            WeightChange("acme", 90, 100, "back", at + 300),
        ],
        holder="w1",
    )

    history = admin_client.get("/api/v1/providers/weights/").json()

    assert [(row["weight_from"], row["weight_to"], row["reason"]) for row in history] == [
        (90, 100, "back"),
        (100, 90, "50 errors within 60 s"),
    ]


def test_without_any_enabled_provider_the_settings_one_serves(settings):
    settings.PROVIDER_URL, settings.PROVIDER_TOKEN = "http://127.0.0.1:9/v1", "settings-token"
    Provider.objects.create(**ACME | {"enabled": False})

    (spec,) = provider_specs()

    assert (spec.name, spec.url, spec.token, spec.weight) == (
        "default",
        "http://127.0.0.1:9/v1",
        "settings-token",
        100,
    )
    assert spec.takes("999")


def test_enabled_providers_take_their_tokens_from_the_environment(monkeypatch, caplog):
    monkeypatch.setenv("SMS_ACME_TOKEN", "acme-token")
    monkeypatch.delenv("SMS_OTHER_TOKEN", raising=False)
    Provider.objects.create(**ACME)
    Provider.objects.create(**ACME | {"name": "other", "credentials_env": "SMS_OTHER_TOKEN"})

    (spec,) = provider_specs()

    assert (spec.name, spec.token, spec.rate_limit) == ("acme", "acme-token", 50.0)
    assert spec.takes("910") and not spec.takes("903")
    assert "acme-token" not in repr(spec)
    assert "provider other left out: SMS_OTHER_TOKEN is not set" in caplog.text

    monkeypatch.delenv("SMS_ACME_TOKEN")
    with pytest.raises(NoProvider):
        provider_specs()


def test_each_provider_paces_in_a_rate_bucket_of_its_own(settings):
    from messages_app.senders import gate_for
    from messages_app.sending.clock import Clock
    from messages_app.sending.routing import ProviderSpec

    settings.RATE_LIMIT_REDIS_URL, settings.PROVIDER_RATE_LIMIT = "", 20.0
    clock = Clock()
    acme = gate_for(ProviderSpec("acme", "probe", "https://a.example/v1", "t", rate_limit=50.0), clock)
    default = gate_for(ProviderSpec("default", "probe", "https://d.example/v1", "t"), clock)
    unlimited = gate_for(ProviderSpec("other", "probe", "https://o.example/v1", "t"), clock)

    acme_bucket, default_bucket = acme.pacer.shared.bucket, default.pacer.shared.bucket
    assert (acme_bucket.rate, default_bucket.rate) == (50.0, 20.0)  # the settings' rate is default's
    assert acme_bucket._path.name == f"{settings.RATE_LIMIT_FILE.name}.acme"
    assert default_bucket._path == settings.RATE_LIMIT_FILE
    assert unlimited.pacer.shared is None
