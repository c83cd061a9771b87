"""Read-side queries over mailings that need no message: the audience a filter or a mailing reaches.

The statistics (messages by status, progress, charts' figures) are messages_app.selectors: they read
the messages, which depend on mailings.
"""

from datetime import datetime

from clients.models import Client

from .models import Mailing, MailingState, describe_audience

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


def audience_preview(*, operator_codes: list[str], tags: list[str]) -> dict:
    """How many clients a filter reaches now, how many it leaves out and why, with a few of those it
    reaches: three queries on the clients' (operator_code, tag) and (tag) indexes, the opt-out list
    read by its unique phone index. The sample is in no particular order, so that PostgreSQL takes
    the first matching rows it finds rather than sorting them all."""
    clients = Client.objects.matching(operator_codes=operator_codes, tags=tags)
    matched = sorted(set(operator_codes) - {""}), sorted(set(tags) - {""})
    return {
        "audience": describe_audience(operator_codes=matched[0], tags=matched[1]),
        "count": clients.reachable().count(),
        "left_out": {"opted_out": clients.opted_out().count()},
        "sample": list(clients.reachable().order_by()[:AUDIENCE_SAMPLE_SIZE]),
    }
