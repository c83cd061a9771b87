"""Read-side queries over mailings that need no message: the audience a filter or a mailing reaches.

The statistics (messages by status, progress, charts' figures) are messages_app.selectors: they read
the messages, which depend on mailings.
"""

import re
from datetime import datetime

from django.db.models.fields.json import KT
from django.db.models.functions import Length

from clients.models import Client, ClientQuerySet

from .models import Mailing, MailingState, describe_audience
from .placeholders import Template
from .segments import GSM7_BASIC, GSM7_EXTENDED, Segments, sms_segments

AUDIENCE_SAMPLE_SIZE = 5


def audience_zones_missing_the_window(mailing: Mailing, *, now: datetime) -> tuple[list[str], list[str]]:
    """The timezones of the clients the mailing would go to now, and those of them in which its
    local window never opens between its start (or now, if later) and its end.

    Per timezone group: one DISTINCT query, then the window rules once per zone.
    """
    window = mailing.local_window
    zones = sorted(mailing.recipients().order_by().values_list("timezone", flat=True).distinct())
    if window is None:
        return zones, []
    start = max(mailing.start_at, now)
    return zones, [zone for zone in zones if not window.opens_between(zone, start, mailing.end_at)]


def mailing_state_counts(*, now: datetime) -> dict[str, int]:
    """Mailings by state, as Mailing.state tells it (paused and cancelled included): one count each."""
    mailings = Mailing.objects.with_unsent().order_by()
    return {state: mailings.in_state(state, now).count() for state in MailingState.values}


def audience_preview(*, operator_codes: list[str], tags: list[str], template: Template | None = None) -> dict:
    """How many clients a filter reaches now, how many it leaves out and why, with a few of those it
    reaches: three queries on the clients' (operator_code, tag) and (tag) indexes, the opt-out list
    read by its unique phone index. The sample is in no particular order, so that PostgreSQL takes
    the first matching rows it finds rather than sorting them all.

    With a template: each sampled client's text (`rendered_text`) and the costliest text of the
    audience (`costliest`, see costliest_rendering)."""
    clients = Client.objects.matching(operator_codes=operator_codes, tags=tags)
    matched = sorted(set(operator_codes) - {""}), sorted(set(tags) - {""})
    reachable = clients.reachable()
    sample = list(reachable.order_by()[:AUDIENCE_SAMPLE_SIZE])
    preview = {
        "audience": describe_audience(operator_codes=matched[0], tags=matched[1]),
        "count": reachable.count(),
        "left_out": {"opted_out": clients.opted_out().count()},
        "sample": sample,
        "costliest": None,
    }
    if template is not None:
        for client in sample:
            client.rendered_text = template.render(client.attributes)
        preview["costliest"] = costliest_rendering(template, reachable)
    return preview


# Any character GSM-7 lacks, in a regex both Python (SQLite's REGEXP) and PostgreSQL read alike.
_OUTSIDE_GSM7 = "[^" + "".join(map(re.escape, sorted(GSM7_BASIC | GSM7_EXTENDED))) + "]"


def costliest_rendering(template: Template, clients: ClientQuerySet) -> dict:
    """The costliest text the template renders for these clients (`text`) and its `segments`: every
    placeholder filled with the longest of its fallback and the clients' values, and, one by one,
    with the longest value outside GSM-7 (a Cyrillic name turns the whole text into UCS-2). Two
    queries per attribute the text uses; an upper bound, since no one client need have every
    longest value."""
    longest: dict[str, str] = {}
    outside_gsm7: dict[str, str] = {}
    for placeholder in template.placeholders:
        key = placeholder.key
        values = (
            clients.annotate(value=KT(f"attributes__{key}"))
            .filter(value__isnull=False)
            .order_by(Length("value").desc())
            .values_list("value", flat=True)
        )
        found = max([values.first() or "", longest.get(key, ""), placeholder.fallback], key=len)
        longest[key] = found
        if key not in outside_gsm7 and (wide := values.filter(value__regex=_OUTSIDE_GSM7).first()):
            outside_gsm7[key] = wide
    candidates = [template.render(longest)]
    candidates += [template.render(longest | {key: value}) for key, value in outside_gsm7.items()]
    return max(
        ({"text": text, "segments": sms_segments(text)} for text in candidates),
        key=lambda rendered: _cost(rendered["segments"]),
    )


def _cost(segments: Segments) -> tuple[int, bool, int]:
    return segments.count, segments.encoding == "UCS-2", segments.units
