"""Subscribers' replies a provider forwards (Kannel's sms-service): a STOP opts the sender out."""

from urllib.parse import parse_qsl, urlsplit

import pytest
from django.core.management import call_command
from django.urls import reverse

from clients.models import OptOut
from messages_app.sending.receipts import REPLIES, signature

SECRET = "reply-secret"

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def reply_settings(settings):
    settings.RECEIPT_SECRETS = {"kannel": SECRET}
    settings.RECEIPT_BASE_URL = "http://sms.example"


def reply(client, text: str, sender: str = "+79161234567", sig: str | None = None):
    sig = signature(SECRET, "kannel", REPLIES) if sig is None else sig
    return client.get(reverse("reply", args=["kannel"]), {"sig": sig, "from": sender, "text": text})


@pytest.mark.parametrize("text", ["STOP", "stop please", "Стоп", " отписаться!"])
def test_a_reply_asking_to_stop_opts_its_sender_out(client, text):
    response = reply(client, text)

    assert response.status_code == 200 and response.content == b""  # nothing sent back
    optout = OptOut.objects.get()
    assert (optout.phone, optout.source) == ("79161234567", OptOut.Source.PROVIDER)
    assert optout.reason == f"kannel: {text.strip()}"


def test_a_national_number_is_the_same_phone(client):
    reply(client, "STOP", sender="89161234567")

    assert OptOut.objects.get().phone == "79161234567"


def test_any_other_reply_changes_nothing(client):
    response = reply(client, "thanks, when does the sale stop?")

    assert response.status_code == 200
    assert not OptOut.objects.exists()


def test_a_reply_with_a_bad_signature_is_refused(client):
    response = reply(client, "STOP", sig=signature("another secret", "kannel", REPLIES))

    assert response.status_code == 403
    assert not OptOut.objects.exists()


def test_a_message_ids_signature_is_no_replys(client):
    response = reply(client, "STOP", sig=signature(SECRET, "kannel", 1))

    assert response.status_code == 403


def test_a_provider_without_a_secret_takes_no_replies(client):
    response = client.get(reverse("reply", args=["unknown"]), {"from": "79161234567", "text": "STOP"})

    assert response.status_code == 404


def test_a_reply_without_its_fields_or_from_a_foreign_number_is_a_400(client):
    missing = client.get(reverse("reply", args=["kannel"]), {"sig": signature(SECRET, "kannel", REPLIES)})
    foreign = reply(client, "STOP", sender="+441234567890")

    assert missing.status_code == 400 and set(missing.json()) == {"from", "text"}
    assert foreign.status_code == 400 and list(foreign.json()) == ["from"]
    assert not OptOut.objects.exists()


def test_reply_url_prints_kannels_get_url_which_the_endpoint_takes(client, capsys):
    call_command("reply_url", "kannel")
    url = capsys.readouterr().out.strip()

    parts = urlsplit(url)
    params = dict(parse_qsl(parts.query))
    assert url.startswith("http://sms.example/replies/kannel/?sig=")
    assert (params["from"], params["text"]) == ("%p", "%a")  # Kannel's escapes, left for it to fill in
    params |= {"from": "79161234567", "text": "STOP"}
    assert client.get(parts.path, params).status_code == 200
    assert OptOut.objects.filter(phone="79161234567").exists()
