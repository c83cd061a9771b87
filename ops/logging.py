"""Log records as operations reads them: ids as fields, phones masked, control characters escaped
(a newline in a path or a header cannot forge a line), JSON lines when asked.

Fields: `request_id`, `user`, `mailing_id`, `message_id`, `client_id`, `optout_id` (not `message`,
which is the log text's own key in a LogRecord and in JSON lines). Code adds them with `extra=log_ids(...)` on
one line, or for a whole block with `log_context(...)`, whose fields every line inside carries
(asyncio tasks and sync_to_async threads started inside inherit them).
"""

import contextvars
import logging
import logging.config
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager

from pythonjsonlogger import json as json_logger

# A Russian mobile number as the service stores and sends it (7XXXXXXXXXX; +7 or 8 before it too),
# standing alone: eleven digits inside a longer run of hex digits are part of an id (a request id,
# a provider's message id), not a phone. Digits only: the service never logs a request body, where
# a phone could come with separators, and a simple pattern keeps the per-attempt line cheap.
PHONE_PATTERN = re.compile(r"(?<![0-9A-Fa-f])(\+?[78]\d{3})\d{3}(\d{4})(?![0-9A-Fa-f])")
# Eleven digits in a row: what every phone above has. Searching for them alone is faster, and most
# lines (the sender's thousands a second among them) have none.
MAYBE_A_PHONE = re.compile(r"\d{11}")
# C0 and C1 controls, DEL, and the Unicode line and paragraph separators: what could end a line or
# rewrite the terminal that shows it.
CONTROL_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
FIELDS = ("request_id", "user", "mailing_id", "message_id", "client_id", "optout_id")
# Each field with the key a pipeline line's text already gives it in ("mailing=1 message=2 client=3").
FIELDS_IN_TEXT = tuple((name, f"{name.removesuffix('_id')}=") for name in FIELDS)

_context: contextvars.ContextVar[dict] = contextvars.ContextVar("log_context", default={})  # noqa: B039


def configure_worker(config: dict) -> None:
    """The logging of Celery's worker and beat (mailing_service.celery): settings.LOGGING, with
    records that skip what no format of ours shows, as the logging HOWTO's "Optimization" section
    suggests: the caller's file and line, and the thread. The sender logs a line per attempt,
    thousands a second. Web processes and tests keep them (pytest's captured logs show file:line).
    """
    logging._srcfile = None
    logging.logThreads = False
    logging.config.dictConfig(config)


def mask_phones(text: str) -> str:
    """79161234567 -> 7916***4567: enough to tell numbers apart in a log, not enough to call one."""
    if MAYBE_A_PHONE.search(text) is None:
        return text
    return PHONE_PATTERN.sub(r"\1***\2", text)


def escape_controls(text: str) -> str:
    r"""Each control character as an escape: a line feed as \n, ESC as \u001b."""
    if CONTROL_CHARACTERS.search(text) is None:
        return text
    return CONTROL_CHARACTERS.sub(_escape, text)


def _escape(match: re.Match) -> str:
    character = match.group()
    return _NAMED_ESCAPES.get(character) or f"\\u{ord(character):04x}"


def log_ids(*, mailing=None, message=None, client=None) -> dict:
    """`extra` for a pipeline line: log.info("...", extra=log_ids(mailing=1, message=2, client=3))."""
    ids = {"mailing_id": mailing, "message_id": message, "client_id": client}
    return {name: value for name, value in ids.items() if value is not None}


@contextmanager
def log_context(**fields) -> Iterator[None]:
    token = _context.set({**_context.get(), **fields})
    try:
        yield
    finally:
        _context.reset(token)


class ContextFilter(logging.Filter):
    """Adds the fields of `log_context` to every record, masks phones in its text and traceback, and
    escapes the text's control characters (the traceback keeps its own line breaks).

    On the handler, so that records of every logger (Django's request and server logs, Celery's,
    gunicorn's) pass through it.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in _context.get().items():
            if not hasattr(record, name):
                setattr(record, name, value)
        try:
            text = record.getMessage()
        except Exception:  # a broken format string still gets logged, as logging would
            text = str(record.msg)
        record.msg, record.args = escape_controls(mask_phones(text)), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            # Formatters (python-json-logger's too) format exc_info afresh when it is set: only the
            # masked text may reach them.
            lines = mask_phones(record.exc_text).split("\n")
            record.exc_text, record.exc_info = "\n".join(map(escape_controls, lines)), None
        return True


class SecondStampMixin:
    """The date and time of a record's second are formatted once for all the records of that second."""

    _stamp: tuple[int, str] = (-1, "")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if datefmt:
            return super().formatTime(record, datefmt)
        second = int(record.created)
        if self._stamp[0] != second:
            self._stamp = (second, time.strftime(self.default_time_format, self.converter(second)))
        return self.default_msec_format % (self._stamp[1], record.msecs)


class TextFormatter(SecondStampMixin, logging.Formatter):
    """The plain format for people, with the id fields a record carries appended as key=value."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = " ".join(
            f"{name}={getattr(record, name)}"
            for name, in_text in FIELDS_IN_TEXT
            # Pipeline lines already say mailing=1 message=2 client=3 in their text.
            if getattr(record, name, None) is not None and in_text not in record.msg
        )
        if not fields:
            return line
        head, newline, traceback = line.partition("\n")
        # A user name may be a phone; a field may come from a request.
        return f"{head} {escape_controls(mask_phones(fields))}{newline}{traceback}"


class JsonFormatter(SecondStampMixin, json_logger.JsonFormatter):
    """JSON lines with phones masked in extra fields too (a request's path, the task context Celery
    adds to its failure lines), not only in the text and traceback the filter masks. Only strings are
    searched, so the per-attempt line, whose fields are ids, pays nothing more."""

    def process_log_record(self, log_data: dict) -> dict:
        return {
            key: value if key in _MASKED_BY_THE_FILTER else _masked(value) for key, value in log_data.items()
        }


_MASKED_BY_THE_FILTER = frozenset({"message", "exc_info", "asctime", "levelname", "name"})


def _masked(value):
    if isinstance(value, str):
        return mask_phones(value)
    if isinstance(value, dict):
        return {key: _masked(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_masked(item) for item in value]
    return value
