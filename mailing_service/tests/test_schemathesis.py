"""Schemathesis against our own schema, through the WSGI application, as an operator: every check,
at least 100 generated examples per operation (plus its explicit and coverage cases), zero failures.

Marked `schemathesis`: `pytest -m schemathesis` runs it alone, `-m "not schemathesis"` skips it.
"""

import csv
import io
import re
from datetime import UTC, datetime, time, timedelta

import pytest
import schemathesis
from django.conf import settings as django_settings
from django.core import signals
from django.db import close_old_connections
from django.utils import timezone
from django.utils.dateparse import parse_time
from hypothesis import HealthCheck, settings
from rest_framework.authtoken.models import Token

from clients.attributes import ATTRIBUTE_KEY_PATTERN
from mailing_service.wsgi import application
from mailings.models import Mailing

pytestmark = pytest.mark.schemathesis

schema = schemathesis.openapi.from_wsgi("/api/v1/schema/?format=json", application)
# No check is configured: schemathesis runs every built-in check it has, with its default statuses.


@pytest.fixture
def token(db, operator):
    # As Django's test client does: the WSGI handler would close the test's connection mid-transaction.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield Token.objects.create(user=operator).key
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


def keep_mailing_window_in_order(case) -> None:
    """Make a schema-valid mailing body also keep the rules JSON Schema cannot say: end_at after
    start_at (in the body, or against the stored mailing's other one) and, for a new mailing, end_at
    in the future. The API refuses such bodies with 400 or 409 (tested in mailings/tests); here the
    generated body is made to keep them, so that schemathesis checks everything else about it."""
    if (found := _positive_mailing_body(case)) is None:
        return
    body, stored = found
    start, end = _span(body, stored)
    if start is None or end is None:
        return
    later_than = max(start, timezone.now()) if case.method == "POST" else start
    if end > later_than:
        return
    try:
        if "end_at" in body:
            body["end_at"] = (later_than + timedelta(days=1)).isoformat()
        else:
            body["start_at"] = (end - timedelta(days=1)).isoformat()
    except OverflowError:  # at the edge of year 9999: a window from now on
        now = timezone.now()
        body.update(start_at=now.isoformat(), end_at=(now + timedelta(days=1)).isoformat())


def keep_local_window_whole(case) -> None:
    """The local window's rules JSON Schema cannot say either: both ends or neither, different
    ends, a mailing long enough for the window to open, and no window beside send_at_any_hour true
    (refused with 400, tested in mailings/tests). A body that would break them is sent without a
    window instead."""
    if (found := _positive_mailing_body(case)) is None:
        return
    body, stored = found
    if body.get("send_at_any_hour"):
        body.update(local_window_start=None, local_window_end=None)
        return
    ends = [
        _time(body[key]) if key in body else (stored and getattr(stored, key))
        for key in ("local_window_start", "local_window_end")
    ]
    if ends == [None, None]:
        return
    start, end = _span(body, stored)
    # Any span of a day and more holds one opening of every window in every zone.
    long_enough = start and end and end - max(start, timezone.now()) > timedelta(days=1, hours=1)
    if None in ends or ends[0] == ends[1] or not long_enough:
        body.update(local_window_start=None, local_window_end=None)


def name_every_form_field(case) -> None:
    """Django's multipart parser drops an empty field with an empty name before any view sees it, so
    a negative case that adds one (the client import's form) could never be refused. It is sent
    under a name instead: still a field the form does not declare, which must be refused."""
    body = case.body
    if (case.media_type or "").startswith("multipart/") and isinstance(body, dict) and "" in body:
        body["unnamed"] = body.pop("")


def keep_csv_well_formed(case) -> None:
    """The import's schema (a header line, then any text) cannot say that the CSV must be well
    formed: an unclosed or stray quote makes the strict reader fail, refused with 400 (tested in
    clients/tests/test_import.py). A schema-valid file that would fail so is sent without its quotes."""
    if not (case.meta.generation.mode.is_positive and case.path.endswith("/clients/import/")):
        return
    body = case.body
    text = body.get("file") if isinstance(body, dict) else body
    if not isinstance(text, str) or _parses_as_strict_csv(text):
        return
    if isinstance(body, dict):
        body["file"] = text.replace('"', "")
    else:
        case.body = text.replace('"', "")


def keep_attribute_names_valid(case) -> None:
    """OpenAPI 3.0 cannot say what a client attribute's name may be (propertyNames is a later JSON
    Schema's), so the schema's description says it; a name outside ATTRIBUTE_KEY_PATTERN is refused
    with 400 (tested in clients/tests/test_attributes.py). A schema-valid body is sent with the valid
    names only."""
    body = case.body
    if not (case.meta.generation.mode.is_positive and isinstance(body, dict)):
        return
    attributes = body.get("attributes")
    if isinstance(attributes, dict):
        body["attributes"] = {
            name: value for name, value in attributes.items() if re.fullmatch(ATTRIBUTE_KEY_PATTERN, name)
        }


def keep_bulk_bodies_small(case) -> None:
    """A bulk upsert past its item cap is a 400, but thousands of generated items can make a body
    past the request size, refused first with 413. Such a body keeps its number of items, each
    empty, so that the cap is what the API answers."""
    body = case.body
    clients = body.get("clients") if isinstance(body, dict) else None
    if isinstance(clients, list) and len(clients) > django_settings.CLIENT_BULK_MAX_ITEMS:
        body["clients"] = [{} for _ in clients]


def keep_texts_templates(case) -> None:
    """A mailing's text is a template (mailings.placeholders), a grammar the schema leaves to its
    description: a lone brace or a placeholder without fallback is refused with 400 (tested in
    mailings/tests/test_placeholders.py). A schema-valid text is sent with round brackets for braces."""
    if not case.meta.generation.mode.is_positive:
        return
    for values in (case.body, case.query):
        if isinstance(values, dict) and isinstance(values.get("text"), str):
            values["text"] = values["text"].translate(BRACES_AS_BRACKETS)


BRACES_AS_BRACKETS = str.maketrans("{}", "()")


def _parses_as_strict_csv(text: str) -> bool:
    try:
        for _ in csv.reader(io.StringIO(text, newline=""), strict=True):
            pass
    except csv.Error:
        return False
    return True


def keep_filter_moments_in_range(case) -> None:
    """A date-time filter near year 1 or 9999 whose offset takes it out of datetime's range in UTC is
    refused with 400 naming it (mailing_service/tests/test_bad_input.py); the schema's date-time
    cannot say so. A positive case sends a moment in range instead."""
    if not case.meta.generation.mode.is_positive or not case.query:
        return
    for name, value in case.query.items():
        moment = _moment(value) if isinstance(value, str) else None
        if moment is None:
            continue
        try:
            moment.astimezone(UTC)
        except OverflowError:
            case.query[name] = "2000-01-01T00:00:00+00:00"


def _positive_mailing_body(case) -> tuple[dict, Mailing | None] | None:
    """A schema-valid mailing body, and the mailing it changes (None when it creates one)."""
    body = case.body
    if not (case.meta.generation.mode.is_positive and "mailings" in case.path and isinstance(body, dict)):
        return None
    return body, Mailing.objects.filter(pk=(case.path_parameters or {}).get("id")).first()


def _span(body: dict, stored: Mailing | None) -> tuple[datetime | None, datetime | None]:
    """The mailing's start and end once the body applies: its own, else the stored mailing's."""
    start = _moment(body.get("start_at")) or (stored and stored.start_at)
    end = _moment(body.get("end_at")) or (stored and stored.end_at)
    return start, end


def _time(value) -> time | None:
    try:
        return parse_time(value)
    except (TypeError, ValueError):
        return None


def _moment(value) -> datetime | None:
    try:
        moment = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None
    return moment if moment.tzinfo else None


@schema.parametrize()
@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_keeps_its_schema(case, token):
    keep_mailing_window_in_order(case)
    keep_local_window_whole(case)
    name_every_form_field(case)
    keep_csv_well_formed(case)
    keep_attribute_names_valid(case)
    keep_bulk_bodies_small(case)
    keep_texts_templates(case)
    keep_filter_moments_in_range(case)
    case.call_and_validate(headers={"Authorization": f"Token {token}"})
