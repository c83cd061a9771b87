"""Personal fields: the template syntax, the API's checks, the audience preview's rendering and
the text each client's message is sent with."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from clients.tests.factories import ClientFactory
from mailings.models import Mailing
from mailings.placeholders import Placeholder, Template, TemplateError, parse
from mailings.tests.factories import MailingFactory, mailing_in
from messages_app import launch, services
from messages_app.selectors import mailings_to_send

AUDIENCE_URL = reverse("mailing-audience")


# --- The syntax ---------------------------------------------------------------------------------


def test_a_placeholder_puts_in_the_attribute_or_its_fallback():
    template = parse("Hello, {name|customer}! {{sale}} in {city|}.")

    assert template.render({"name": "Анна", "city": "Казань"}) == "Hello, Анна! {sale} in Казань."
    assert template.render({}) == "Hello, customer! {sale} in ."
    assert template.placeholders == [Placeholder("name", "customer"), Placeholder("city", "")]


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("Hi {name}", "{name} needs a fallback"),
        ("Hi {name.upper|x}", "{name.upper|x} is not a placeholder"),
        ("Hi {name:>10|x}", "{name:>10|x} is not a placeholder"),
        ("Hi {0|x}", "{0|x} is not a placeholder"),
        ("Hi {Name|x}", "{Name|x} is not a placeholder"),
        ("Hi {__class__|x}", "{__class__|x} is not a placeholder"),
        ("Hi {name", "A lone '{' at character 4"),
        ("50% off}", "A lone '}' at character 8"),
        ("Hi {name|" + "x" * 65 + "}", "a fallback is at most 64 characters"),
    ],
)
def test_anything_but_a_placeholder_with_its_fallback_is_refused_by_name(text, named):
    with pytest.raises(TemplateError) as error:
        parse(text)

    assert named in str(error.value)


def test_a_text_saved_before_templates_goes_out_verbatim():
    mailing = MailingFactory.build(text="Sale {today} 50%}", text_is_template=False)

    assert mailing.template == Template.verbatim("Sale {today} 50%}")
    assert mailing.template.render({"today": "x"}) == "Sale {today} 50%}"


# --- The API ------------------------------------------------------------------------------------


def mailing_body(**fields) -> dict:
    now = timezone.now()
    return {"start_at": now + timedelta(hours=1), "end_at": now + timedelta(hours=2), **fields}


def test_a_placeholder_without_fallback_is_a_400_naming_it(api_client):
    response = api_client.post(
        reverse("mailing-list"), mailing_body(text="Hi {name}, {city|}"), format="json"
    )

    assert response.status_code == 400
    assert response.data["text"] == ["{name} needs a fallback for clients without name: {name|...}."]
    assert not Mailing.objects.exists()


def test_the_segments_of_a_template_count_its_fallbacks(api_client):
    response = api_client.post(
        reverse("mailing-list"), mailing_body(text="Hi {name|customer}"), format="json"
    )

    assert response.status_code == 201, response.data
    assert response.data["segments"]["units"] == len("Hi customer")


def test_editing_a_verbatim_text_makes_it_a_template(api_client):
    mailing = MailingFactory(
        text="old {text}", text_is_template=False, start_at=timezone.now() + timedelta(hours=1)
    )

    response = api_client.patch(
        reverse("mailing-detail", args=[mailing.pk]), {"text": "Hi {name|you}"}, format="json"
    )

    assert response.status_code == 200, response.data
    mailing.refresh_from_db()
    assert mailing.text_is_template
    assert mailing.template.render({"name": "Ann"}) == "Hi Ann"


# --- The audience preview -----------------------------------------------------------------------


def test_the_preview_renders_masked_samples_and_the_costliest_text(api_client):
    ClientFactory(phone="79160000001", tag="vip", attributes={"name": "Ann"})
    ClientFactory(phone="79160000002", tag="vip", attributes={"name": "Анна"})
    ClientFactory(phone="79160000003", tag="vip", attributes={"name": "Maximilian"})
    ClientFactory(phone="79160000004", tag="other", attributes={"name": "Ёжик-длинное-имя-вне-аудитории"})

    response = api_client.get(AUDIENCE_URL, {"filter_tag": "vip", "text": "Hello, {name|customer}!"})

    assert response.status_code == 200, response.data
    texts = {client["phone"]: client["text"] for client in response.data["sample"]}
    assert texts == {
        "7916*****01": "Hello, Ann!",
        "7916*****02": "Hello, Анна!",
        "7916*****03": "Hello, Maximilian!",
    }
    # The longest name is Latin, but a Cyrillic one makes the text UCS-2: that is the costlier.
    assert response.data["costliest"]["text"] == "Hello, Анна!"
    assert response.data["costliest"]["segments"]["encoding"] == "UCS-2"


def test_the_costliest_text_counts_a_long_value_in_segments(api_client):
    ClientFactory(attributes={"name": "x" * 64})
    ClientFactory(attributes={})
    text = "a" * 130 + " {name|customer}"

    response = api_client.get(AUDIENCE_URL, {"text": text})

    assert response.data["costliest"]["segments"] == {
        "encoding": "GSM-7",
        "count": 2,
        "units": 195,
        "per_segment": 153,
    }


def test_the_preview_without_a_text_renders_nothing(api_client):
    ClientFactory()

    response = api_client.get(AUDIENCE_URL)

    assert "text" not in response.data["sample"][0]
    assert response.data["costliest"] is None


def test_the_preview_refuses_a_bad_text_by_name(api_client):
    response = api_client.get(AUDIENCE_URL, {"text": "Hi {name}"})

    assert response.status_code == 400
    assert "{name} needs a fallback" in response.data["text"][0]


# --- Sending ------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_each_claimed_message_carries_its_clients_attributes():
    anna = ClientFactory(attributes={"name": "Анна"})
    nobody = ClientFactory(attributes={})
    now = timezone.now()
    mailing = MailingFactory(
        text="Hello, {name|customer}!", start_at=now - timedelta(minutes=1), end_at=now + timedelta(hours=1)
    )
    launch.mailing_launch(mailing_id=mailing.pk)

    [(_, template, _)] = mailings_to_send(now=timezone.now())
    claim = services.messages_claim(mailing_id=mailing.pk, limit=10, now=timezone.now())

    rendered = {row.client_id: template.render(row.attributes) for row in claim.rows}
    assert rendered == {anna.pk: "Hello, Анна!", nobody.pk: "Hello, customer!"}


def test_a_resend_keeps_a_verbatim_text_verbatim(api_client):
    mailing = mailing_in("finished", failed=1)
    Mailing.objects.filter(pk=mailing.pk).update(text="50% {off}", text_is_template=False)
    now = timezone.now()

    response = api_client.post(
        reverse("mailing-resend", args=[mailing.pk]),
        {"start_at": now + timedelta(hours=1), "end_at": now + timedelta(hours=2)},
        format="json",
    )

    assert response.status_code == 201, response.data
    assert Mailing.objects.get(pk=response.data["id"]).template.render({"off": "x"}) == "50% {off}"


@pytest.mark.django_db(transaction=True)
def test_a_claim_for_a_text_without_placeholders_leaves_the_attributes_out():
    ClientFactory(attributes={"name": "Анна"})
    now = timezone.now()
    mailing = MailingFactory(
        text="Autumn sale", start_at=now - timedelta(minutes=1), end_at=now + timedelta(hours=1)
    )
    launch.mailing_launch(mailing_id=mailing.pk)

    claim = services.messages_claim(
        mailing_id=mailing.pk, limit=10, now=timezone.now(), with_attributes=False
    )

    assert [row.attributes for row in claim.rows] == [{}]


def test_the_admin_checks_a_verbatim_text_as_a_template_once_it_is_edited(admin_client):
    mailing = MailingFactory(
        text="50% {off}", text_is_template=False, start_at=timezone.now() + timedelta(hours=1)
    )
    url = reverse("admin:mailings_mailing_change", args=[mailing.pk])
    local = {name: timezone.localtime(getattr(mailing, name)) for name in ("start_at", "end_at")}
    form = {
        **{f"{name}_0": f"{value:%Y-%m-%d}" for name, value in local.items()},
        **{f"{name}_1": f"{value:%H:%M:%S}" for name, value in local.items()},
        "filter_operator_code": "",
        "filter_tag": "",
    }

    kept = admin_client.post(url, {**form, "text": "50% {off}"})
    refused = admin_client.post(url, {**form, "text": "Hi {name}"})

    assert kept.status_code == 302
    assert refused.status_code == 200 and "{name} needs a fallback" in refused.content.decode()
    mailing.refresh_from_db()
    assert (mailing.text, mailing.text_is_template) == ("50% {off}", False)
