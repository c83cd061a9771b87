"""SMS segments on the standard's edge cases, and the endpoint that counts them for a draft."""

import pytest
from django.urls import reverse

from mailings.models import TEXT_MAX_LENGTH
from mailings.segments import sms_segments
from mailings.tests.factories import MailingFactory


@pytest.mark.parametrize(
    ("text", "encoding", "count", "units"),
    [
        ("", "GSM-7", 0, 0),
        ("a" * 160, "GSM-7", 1, 160),
        ("a" * 161, "GSM-7", 2, 161),
        ("a" * 306, "GSM-7", 2, 306),
        ("a" * 307, "GSM-7", 3, 307),
        ("€" * 80, "GSM-7", 1, 160),  # extension-table characters count twice
        ("€" + "a" * 159, "GSM-7", 2, 161),
        ("^" * 81, "GSM-7", 2, 162),
        ("a" * 152 + "€" + "a" * 10, "GSM-7", 2, 164),
        # 152 septets then an escaped character: it does not fit whole in part one's 153, so it
        # moves to part two, which fills exactly; one more septet needs a third part.
        ("a" * 152 + "€" + "a" * 151 + "b", "GSM-7", 3, 306),
        ("a" * 69 + "😀", "UCS-2", 2, 71),  # one emoji: UCS-2, and a surrogate pair
        ("a" * 68 + "😀", "UCS-2", 1, 70),
        ("Привет", "UCS-2", 1, 6),
        ("П" * 70, "UCS-2", 1, 70),
        ("П" * 71, "UCS-2", 2, 71),
        ("П" * 134, "UCS-2", 2, 134),
        ("П" * 135, "UCS-2", 3, 135),
        ("a" * 66 + "😀" + "a" * 66, "UCS-2", 3, 134),  # the pair is never split between parts
    ],
)
def test_segments(text, encoding, count, units):
    segments = sms_segments(text)

    assert (segments.encoding, segments.count, segments.units) == (encoding, count, units)


def test_segments_endpoint_counts_a_draft(api_client):
    response = api_client.post(reverse("mailing-segments"), {"text": "Скидка 10 %"})

    assert response.status_code == 200
    assert response.data == {"encoding": "UCS-2", "count": 1, "units": 11, "per_segment": 70}


def test_segments_endpoint_wants_a_text(api_client):
    response = api_client.post(reverse("mailing-segments"), {"txt": "x"})

    assert response.status_code == 400
    assert set(response.data) == {"text", "txt"}


@pytest.mark.parametrize("padding", [" ", "\n", "\x85"])
def test_a_draft_longer_than_the_schema_allows_is_refused_whitespace_included(api_client, padding):
    limit = TEXT_MAX_LENGTH
    fits = api_client.post(reverse("mailing-segments"), {"text": "a" * (limit - 1) + padding}, format="json")
    too_long = api_client.post(reverse("mailing-segments"), {"text": "a" * limit + padding}, format="json")

    assert fits.status_code == 200
    assert too_long.status_code == 400
    assert too_long.data == {"text": [f"Ensure this field has no more than {limit} characters."]}


@pytest.mark.django_db
def test_a_mailing_shows_its_segments(api_client):
    mailing = MailingFactory(text="a" * 161)

    response = api_client.get(reverse("mailing-detail", args=[mailing.pk]))

    assert response.data["segments"] == {"encoding": "GSM-7", "count": 2, "units": 161, "per_segment": 153}
