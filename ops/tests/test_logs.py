"""Each kind of log line, as the configured handler writes it: ids present, phones masked, no tokens."""

import io
import json
import logging
import os
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from clients.models import Client
from clients.tests.factories import ClientFactory
from messages_app.models import Message
from messages_app.sending.tests.clock import FakeClock
from messages_app.sending.tests.fakes import ScriptedTransport
from messages_app.sending.tests.test_sender import run_until_idle, running_mailing
from messages_app.tests.factories import MessageFactory
from ops.logging import (
    JsonFormatter,
    TextFormatter,
    configure_worker,
    escape_controls,
    log_context,
    mask_phones,
)

PHONE = "79161234567"
MASKED = "7916***4567"


def configured_handler(stream, fmt: str) -> logging.Handler:
    """A handler writing to `stream` with the filter and formatter that settings.LOGGING configures."""
    console = next(
        h
        for h in logging.getLogger().handlers
        if any(f.__class__.__name__ == "ContextFilter" for f in h.filters)
    )
    handler = logging.StreamHandler(stream)
    handler.filters = list(console.filters)
    handler.setFormatter(
        console.formatter
        if fmt == "text"
        else JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    )
    return handler


@pytest.fixture(params=["text", "json"])
def log_lines(request):
    """Lines the root logger writes during the test, in the text or the JSON format."""
    stream = io.StringIO()
    handler = configured_handler(stream, request.param)
    root = logging.getLogger()
    root.addHandler(handler)
    previous = root.level
    root.setLevel(logging.INFO)

    def read(containing: str = "") -> list:
        lines = [line for line in stream.getvalue().splitlines() if containing in line]
        return [json.loads(line) for line in lines] if request.param == "json" else lines

    read.format = request.param
    yield read
    root.removeHandler(handler)
    root.setLevel(previous)


def field(line, name):
    """A field of a line, from JSON keys or text's key=value (`mailing=` in a text line's own words)."""
    if isinstance(line, dict):
        return line.get(name)
    for word in line.split():
        if word.startswith((f"{name}=", f"{name.removesuffix('_id')}=")):
            return word.split("=", 1)[1]
    return None


@pytest.mark.django_db
def test_each_api_request_is_logged_once_with_its_id_user_route_and_status(api_client, operator, log_lines):
    client = ClientFactory(phone=PHONE)

    response = api_client.get(f"/api/v1/clients/{client.pk}/?phone={PHONE}", HTTP_X_REQUEST_ID="req-42.a")

    assert response["X-Request-ID"] == "req-42.a"
    [line] = log_lines("GET /api/v1/clients/")
    assert field(line, "request_id") == "req-42.a"
    assert field(line, "user") == operator.username
    assert PHONE not in str(line) and "Token" not in str(line)
    if log_lines.format == "json":
        assert line["route"] == "api/v1/clients/<pk>/"
        assert line["status"] == 200 and line["method"] == "GET" and line["duration_ms"] >= 0


@pytest.mark.django_db
def test_a_request_id_that_is_not_sane_is_replaced(anonymous_client, log_lines):
    response = anonymous_client.get("/api/v1/clients/", HTTP_X_REQUEST_ID="bad id\nwith newline")

    assert response.status_code == 401
    assert len(response["X-Request-ID"]) == 32
    [line] = log_lines("GET /api/v1/clients/")
    assert field(line, "request_id") == response["X-Request-ID"]


@pytest.mark.django_db
def test_admin_search_query_strings_are_not_logged(admin_client, log_lines):
    admin_client.get(f"/admin/clients/client/?q={PHONE}")

    assert log_lines("GET /admin/clients/client/")
    assert (
        PHONE not in json.dumps(log_lines())
        if log_lines.format == "json"
        else PHONE not in "\n".join(log_lines())
    )


@pytest.mark.django_db
def test_creating_updating_and_deleting_is_logged_with_ids(api_client, log_lines):
    created = api_client.post(
        "/api/v1/clients/", {"phone": PHONE, "operator_code": "916", "timezone": "UTC"}, format="json"
    )
    client_id = created.json()["id"]
    api_client.patch(f"/api/v1/clients/{client_id}/", {"tag": "vip"}, format="json")
    now = timezone.now()
    mailing = api_client.post(
        "/api/v1/mailings/",
        {
            "start_at": (now + timedelta(days=1)).isoformat(),
            "end_at": (now + timedelta(days=2)).isoformat(),
            "text": "Hi",
        },
        format="json",
    ).json()
    for action in ("pause", "resume", "cancel"):
        api_client.post(f"/api/v1/mailings/{mailing['id']}/{action}/")
    api_client.delete(f"/api/v1/mailings/{mailing['id']}/")
    api_client.delete(f"/api/v1/clients/{client_id}/")

    mailing_actions = ["created", "paused", "resumed", "cancelled (0 unsent messages expired)", "deleted"]
    for kind, id_field, object_id, actions in [
        ("client", "client_id", client_id, ["created", "updated", "deleted"]),
        ("mailing", "mailing_id", mailing["id"], mailing_actions),
    ]:
        for action in actions:
            [line] = log_lines(f"{kind}={object_id} {action} by operator")
            assert str(field(line, id_field)) == str(object_id)
            assert field(line, "request_id")
        # Once each: the lifecycle's service writes its own line, and the viewset adds none.
        audit_lines = [
            line for line in log_lines(" by operator") if str(field(line, id_field)) == str(object_id)
        ]
        assert len(audit_lines) == len(actions)
    assert PHONE not in str(log_lines())


@pytest.mark.django_db
def test_a_client_import_is_logged_per_batch_and_once_with_its_counts(api_client, log_lines):
    csv = SimpleUploadedFile("clients.csv", f"phone,operator_code,tag,timezone\n{PHONE},916,,UTC\n".encode())
    api_client.post("/api/v1/clients/import/", {"file": csv}, format="multipart")

    # The import's service writes a line per batch and one for the whole; the viewset adds none.
    assert len(log_lines(" by operator")) == 2
    [batch] = log_lines(": rows 2-2 written (1 created, 0 updated) by operator")
    [done] = log_lines(": done (1 created, 0 updated, 0 unchanged, 0 invalid rows) by operator")
    assert field(batch, "request_id") == field(done, "request_id")
    assert PHONE not in str(log_lines())


@pytest.mark.django_db
def test_phones_in_paths_users_and_extra_fields_are_masked(anonymous_client, log_lines):
    anonymous_client.get(f"/api/v1/lookup/{PHONE}/")
    failure = f"IntegrityError('Key (phone)=({PHONE}) already exists')"
    with log_context(user=PHONE):
        # As Celery's tracer logs a failed task: the context again as an extra field.
        logging.getLogger("celery.app.trace").error(
            "Task %(name)s raised unexpected: %(exc)s",
            {"name": "clients.tasks.x", "exc": failure},
            extra={"data": {"name": "clients.tasks.x", "exc": failure}},
        )

    assert log_lines(f"/api/v1/lookup/{MASKED}/") and log_lines("raised unexpected")
    assert PHONE not in str(log_lines())


@pytest.mark.django_db
def test_exceptions_are_logged_with_phones_masked(log_lines):
    try:
        raise ValueError(f"Key (phone)=({PHONE}) already exists")
    except ValueError:
        with log_context(mailing_id=5):
            logging.getLogger("messages_app.test").exception("could not save client %s", PHONE)

    [line] = log_lines("could not save client") if log_lines.format == "json" else log_lines("could not save")
    text = json.dumps(line) if isinstance(line, dict) else "\n".join(log_lines())
    assert PHONE not in text
    assert MASKED in text and f"({MASKED}) already exists" in text
    assert str(field(line, "mailing_id")) == "5"


@pytest.mark.django_db(transaction=True)
def test_every_pipeline_line_carries_mailing_message_and_client_ids(log_lines):
    mailing = running_mailing()
    sent = MessageFactory(mailing=mailing, client=ClientFactory(phone=PHONE))
    gone = MessageFactory(mailing=mailing, client=None)  # its client was deleted: fails, no request
    clock = FakeClock()

    run_until_idle(ScriptedTransport(clock), clock)

    assert Message.objects.get(pk=sent.pk).status == Message.Status.SENT
    for message, outcome in ((sent, "sent"), (gone, "failed")):
        [attempt] = log_lines(f"message={message.pk} ")
        assert f"outcome={outcome}" in str(attempt)
        assert str(field(attempt, "mailing_id")) == str(mailing.pk)
        assert str(field(attempt, "message_id")) == str(message.pk)
    [attempt] = log_lines(f"message={sent.pk} ")
    assert str(field(attempt, "client_id")) == str(sent.client_id)
    assert PHONE not in str(log_lines())


@pytest.mark.django_db
def test_changes_in_the_admin_are_logged_with_ids(admin_client, admin_user, log_lines):
    admin_client.post(
        "/admin/clients/client/add/", {"phone": PHONE, "operator_code": "916", "tag": "", "timezone": "UTC"}
    )
    client_id = Client.objects.get(phone=PHONE).pk
    admin_client.post(
        f"/admin/clients/client/{client_id}/change/",
        {"phone": PHONE, "operator_code": "916", "tag": "vip", "timezone": "UTC"},
    )
    admin_client.post(f"/admin/clients/client/{client_id}/delete/", {"post": "yes"})

    for done in ("created", "updated", "deleted"):
        [line] = log_lines(f"client={client_id} {done} in the admin by {admin_user.username}")
        assert str(field(line, "client_id")) == str(client_id)
        assert field(line, "request_id")
    assert PHONE not in str(log_lines())


@pytest.mark.parametrize("formatter", [TextFormatter("%(asctime)s"), JsonFormatter("%(asctime)s")])
def test_the_time_of_a_line_is_the_standard_one_though_formatted_once_a_second(formatter):
    standard = logging.Formatter()
    moments = [1_700_000_000.001, 1_700_000_000.999, 1_700_000_001.5, 1_700_000_000.25]
    for moment in moments:
        record = logging.makeLogRecord({"msg": "m", "created": moment, "msecs": (moment % 1) * 1000})
        assert formatter.formatTime(record) == standard.formatTime(record)
        assert formatter.formatTime(record, "%H:%M") == standard.formatTime(record, "%H:%M")


@pytest.mark.parametrize(
    ("text", "logged"),
    [
        ("phone=79161234567.", "phone=7916***4567."),
        ("+79161234567 and 89161234567", "+7916***4567 and 8916***4567"),
        ("id 791612345678 is twelve digits", "id 791612345678 is twelve digits"),
        ("69161234567 starts with 6", "69161234567 starts with 6"),
        ("mailing=1 message=123456 client=654321", "mailing=1 message=123456 client=654321"),
        ("request_id=6715c74921234015a4eb8ad08a18f14c", "request_id=6715c74921234015a4eb8ad08a18f14c"),
        ("provider id 79161234567ab, cd79161234567", "provider id 79161234567ab, cd79161234567"),
        ("to 79161234567: sent", "to 7916***4567: sent"),
    ],
)
def test_phones_are_masked_and_other_numbers_are_not(text, logged):
    assert mask_phones(text) == logged


def test_worker_records_skip_the_callers_file_and_line_but_keep_their_process(monkeypatch):
    for flag in ("_srcfile", "logThreads"):  # restored after the test
        monkeypatch.setattr(logging, flag, getattr(logging, flag))
    monkeypatch.setattr(logging.config, "dictConfig", lambda config: None)  # keeps the test's handlers
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("ops.tests.worker")
    logger.addHandler(handler)
    try:
        logger.warning("before")
        configure_worker({"version": 1})
        logger.warning("after")
    finally:
        logger.removeHandler(handler)

    before, after = records
    assert (before.filename, after.filename, after.lineno) == ("test_logs.py", "(unknown file)", 0)
    assert (before.threadName, after.threadName) == ("MainThread", None)
    assert before.process == after.process == os.getpid()


@pytest.mark.django_db
def test_static_files_and_the_favicon_are_logged_at_debug_only(anonymous_client, log_lines):
    assert anonymous_client.get("/static/admin/css/base.css").status_code == 200
    assert anonymous_client.get("/favicon.ico", follow=True).status_code == 200
    assert anonymous_client.get("/static/no-such-file.css").status_code == 404

    assert log_lines("GET /static/admin/") == []
    assert log_lines("/favicon.") == []
    assert len(log_lines("GET /static/no-such-file.css")) == 1


@pytest.mark.django_db
def test_a_newline_in_a_path_does_not_forge_a_line(anonymous_client, log_lines):
    anonymous_client.get("/nope%0A2026-12-06 10:00:00,000 INFO ops.middleware GET /admin/ 200")

    [line] = log_lines("/nope")
    text = field(line, "message") if log_lines.format == "json" else line
    assert "/nope\\n2026-12-06" in text
    assert not [line for line in log_lines() if str(line).startswith("2026-12-06 10:00:00,000")]


def test_control_characters_are_escaped_in_every_field_and_the_traceback(log_lines):
    try:
        raise ValueError("bad\rvalue\x1b[2J")
    except ValueError:
        with log_context(user="eve\nforged", mailing_id=5):
            logging.getLogger("ops.test").exception("line\u2028split")

    logged = log_lines()
    if log_lines.format == "text":
        assert logged[0].endswith("line\\u2028split user=eve\\nforged mailing_id=5")
        assert logged[-1] == "ValueError: bad\\rvalue\\u001b[2J"
        assert not [line for line in logged if line.startswith("forged")]
    else:
        [line] = logged
        assert (line["message"], line["user"]) == ("line\\u2028split", "eve\nforged")
        assert line["exc_info"].endswith("ValueError: bad\\rvalue\\u001b[2J")


def test_escape_controls_leaves_printable_text_alone():
    assert escape_controls("Привет, 7916***4567 — ok") == "Привет, 7916***4567 — ok"
    assert escape_controls("a\tb\x7fc\x85d") == "a\\tb\\u007fc\\u0085d"
