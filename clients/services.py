"""Client import from CSV: parse, validate row by row, upsert by phone in batches; the opt-out list.

Each batch (CLIENT_IMPORT_BATCH_SIZE valid rows) is written in one transaction: a failure while
writing leaves every earlier batch written and nothing of the failing one.
"""

import csv
import io
import logging
import zoneinfo
from dataclasses import dataclass, field
from functools import cache, partial

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DatabaseError, transaction
from django.utils import timezone

from ops.audit import audit

from .models import (
    TAG_MAX_LENGTH,
    Client,
    OptOut,
    OptOutSource,
    mask_phone,
    validate_operator_code,
    validate_phone,
)
from .tasks import end_opted_out_enqueue

log = logging.getLogger(__name__)

COLUMNS = ("phone", "operator_code", "tag", "timezone")
INVALID_ROWS_LISTED = 1000  # a file of garbage should not answer with a response as large


class MalformedCSV(Exception):
    """The file cannot be read as the expected CSV at all (encoding, header, quoting)."""


class ImportBatchFailed(Exception):
    """Writing one batch failed: it was rolled back, the batches before it are written."""

    def __init__(self, report: "ImportReport", first_row: int, last_row: int):
        self.report = report
        super().__init__(
            f"Writing rows {first_row} to {last_row} failed and none of them was written; rows before "
            f"{first_row} were ({report.created} created, {report.updated} updated). Send the rest again."
        )


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    invalid_count: int = 0
    # Row numbers count the header as row 1, as a spreadsheet shows them.
    invalid: list[dict] = field(default_factory=list)

    def reject(self, row: int, errors: dict[str, str]) -> None:
        self.invalid_count += 1
        if len(self.invalid) < INVALID_ROWS_LISTED:
            self.invalid.append({"row": row, "errors": errors})


@cache
def _timezones() -> frozenset[str]:
    # available_timezones() walks the tz database on every call: far too slow for every row.
    return frozenset(zoneinfo.available_timezones())


def _client_from_row(values: dict[str, str], now) -> tuple[Client | None, dict[str, str]]:
    errors = {}
    phone = values["phone"].strip()
    operator_code = values.get("operator_code", "").strip() or Client.operator_code_of(phone)
    tag = values.get("tag", "").strip()
    zone = values.get("timezone", "").strip() or settings.DEFAULT_CLIENT_TIMEZONE
    for name, validator, value in (
        ("phone", validate_phone, phone),
        ("operator_code", validate_operator_code, operator_code),
    ):
        try:
            validator(value)
        except ValidationError as error:
            errors[name] = error.messages[0]
    if "phone" in errors:
        errors.pop("operator_code", None)  # derived from the phone: its error says it already
    if len(tag) > TAG_MAX_LENGTH:
        errors["tag"] = f"At most {TAG_MAX_LENGTH} characters."
    if zone not in _timezones():
        errors["timezone"] = f"{zone!r} is not an IANA timezone name, such as Europe/Moscow."
    if errors:
        return None, errors
    client = Client(phone=phone, operator_code=operator_code, tag=tag, timezone=zone)
    client.created_at = client.updated_at = now
    return client, {}


def _reader(data: bytes) -> csv.DictReader:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise MalformedCSV(f"The file is not UTF-8 text (byte {error.start}).") from None
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
    try:
        header = reader.fieldnames
    except csv.Error as error:
        raise MalformedCSV(f"Row 1: {error}.") from None
    if not header:
        raise MalformedCSV("The file is empty: a header row is expected (phone,operator_code,tag,timezone).")
    names = [name.strip() for name in header]
    unknown = sorted(set(names) - set(COLUMNS))
    if "phone" not in names or unknown or len(set(names)) != len(names):
        raise MalformedCSV(
            f"The header row must name the columns {', '.join(COLUMNS)} (phone required, each once); "
            f"it is {','.join(header)}."
        )
    reader.fieldnames = names
    return reader


def clients_import(*, data: bytes, user) -> ImportReport:
    """Creates or updates (by phone) a client for each valid row of a CSV file with a header row.

    Rows with a bad value are skipped and reported with their row number and reasons; a phone seen
    earlier in the file is reported too (the first one counts). The whole file is read and checked
    before anything is written. Raises MalformedCSV when the file cannot be read (nothing written),
    ImportBatchFailed when writing a batch fails.
    """
    reader = _reader(data)
    columns = len(reader.fieldnames or ())
    report = ImportReport()
    valid: list[tuple[int, Client]] = []
    seen: dict[str, int] = {}  # phone: the row it came first in
    now = timezone.now()
    try:
        for values in reader:
            row = reader.line_num
            if None in values or any(value is None for value in values.values()):
                report.reject(row, {"row": f"Expected {columns} columns."})
                continue
            client, errors = _client_from_row(values, now)
            if client is not None and client.phone in seen:
                errors = {"phone": f"Repeats row {seen[client.phone]}; the first one counts."}
            if client is None or errors:
                report.reject(row, errors)
                continue
            seen[client.phone] = row
            valid.append((row, client))
    except csv.Error as error:
        raise MalformedCSV(f"Row {reader.line_num}: {error}.") from None
    size = settings.CLIENT_IMPORT_BATCH_SIZE
    for start in range(0, len(valid), size):
        batch = valid[start : start + size]
        _write([client for _, client in batch], report, batch[0][0], batch[-1][0])
    counts = f"{report.created} created, {report.updated} updated, {report.invalid_count} invalid rows"
    audit(name="client", pk=None, done=f"imported ({counts})", user=user)
    return report


def _write(batch: list[Client], report: ImportReport, first_row: int, last_row: int) -> None:
    phones = [client.phone for client in batch]
    try:
        with transaction.atomic():
            existing = Client.objects.filter(phone__in=phones).count()
            _upsert(batch)
    except DatabaseError as error:
        log.error("clients import: rows %s-%s rolled back: %s", first_row, last_row, error)
        raise ImportBatchFailed(report, first_row, last_row) from error
    report.updated += existing
    report.created += len(batch) - existing


def _upsert(batch: list[Client]) -> None:
    """One multi-row INSERT ... ON CONFLICT (phone) DO UPDATE (SQLite and PostgreSQL alike).

    Faster than psycopg's pipelined executemany of a one-row statement for the import's batches.
    """
    Client.objects.bulk_create(
        batch,
        update_conflicts=True,
        unique_fields=["phone"],
        update_fields=["operator_code", "tag", "timezone", "updated_at"],
    )


# --- the opt-out list ------------------------------------------------------------------------------

OPTOUT_COLUMNS = ("phone", "reason")
REASON_MAX_LENGTH = OptOut._meta.get_field("reason").max_length


class OptOutMissing(Exception):
    """No opt-out for that phone: nothing to re-consent."""


def optout_add(*, phone: str, reason: str, source: str, user=None) -> tuple[OptOut, bool]:
    """Put a phone on the opt-out list: no mailing creates a message for it any more, and its pending
    messages end `opted_out` within seconds (a task after commit; claims skip them meanwhile).
    Idempotent: a phone already on the list keeps its first opt-out. Returns it and whether it is new.
    """
    with transaction.atomic():
        optout, created = OptOut.objects.get_or_create(
            phone=phone, defaults={"reason": reason[:REASON_MAX_LENGTH], "source": source, "created_by": user}
        )
        if created:
            transaction.on_commit(partial(end_opted_out_enqueue, optout.created_at))
    if created:
        by = user.get_username() if user is not None else source
        log.info("optout=%s %s added (%s) by %s", optout.pk, mask_phone(phone), source, by)
    return optout, created


def optout_from_provider(*, phone: str, provider: str, text: str = "") -> tuple[OptOut, bool]:
    """An inbound STOP (or any opt-out keyword) the provider `provider` reported for `phone`, with
    the reply's text: the phone is opted out, source `provider`. Raises ValidationError for a phone
    that is not 7XXXXXXXXXX."""
    validate_phone(phone)
    reason = f"{provider}: {text.strip()}" if text.strip() else f"{provider}: reply"
    return optout_add(phone=phone, reason=reason, source=OptOutSource.PROVIDER)


def optout_remove(*, phone: str, reason: str, user) -> None:
    """A re-consent: the phone may receive mailings again (those launched from now on; messages
    already opted out stay so). `reason` (not blank) is written to the audit log with who did it.
    Raises OptOutMissing."""
    deleted, _ = OptOut.objects.filter(phone=phone).delete()
    if not deleted:
        raise OptOutMissing(f"{mask_phone(phone)} is not on the opt-out list.")
    audit(name="optout", pk=None, done=f"removed for {mask_phone(phone)} (re-consent: {reason})", user=user)


@dataclass
class OptOutImportReport:
    added: int = 0
    already: int = 0
    invalid_count: int = 0
    invalid: list[dict] = field(default_factory=list)

    def reject(self, row: int, error: str) -> None:
        self.invalid_count += 1
        if len(self.invalid) < INVALID_ROWS_LISTED:
            self.invalid.append({"row": row, "errors": {"phone": error}})


def optouts_import(*, data: bytes, user) -> OptOutImportReport:
    """Adds each valid phone of a CSV file (header `phone` and optionally `reason`) to the opt-out
    list, source `import`; phones already on it keep their opt-out. Invalid phones are reported by
    row (the header is row 1). Raises MalformedCSV when the file cannot be read (nothing written)."""
    try:
        lines = io.StringIO(data.decode("utf-8-sig"), newline="")
    except UnicodeDecodeError as error:
        raise MalformedCSV(f"The file is not UTF-8 text (byte {error.start}).") from None
    report, rows = OptOutImportReport(), dict[str, str]()  # phone: reason, the first row of a phone
    try:
        reader = csv.DictReader(lines, strict=True)
        names = [name.strip() for name in reader.fieldnames or ()]
        if "phone" not in names or set(names) - set(OPTOUT_COLUMNS):
            raise MalformedCSV(f"The header row must be phone, or phone,reason; it is {','.join(names)!r}.")
        reader.fieldnames = names
        for values in reader:
            phone = (values.get("phone") or "").strip()
            try:
                validate_phone(phone)
            except ValidationError as error:
                report.reject(reader.line_num, error.messages[0])
                continue
            rows.setdefault(phone, (values.get("reason") or "").strip()[:REASON_MAX_LENGTH])
    except csv.Error as error:
        raise MalformedCSV(f"Row {reader.line_num}: {error}.") from None
    start = timezone.now()
    with transaction.atomic():
        report.already = OptOut.objects.filter(phone__in=rows).count()
        OptOut.objects.bulk_create(
            [
                OptOut(phone=phone, reason=reason, source=OptOutSource.IMPORT, created_by=user)
                for phone, reason in rows.items()
            ],
            batch_size=settings.CLIENT_IMPORT_BATCH_SIZE,
            ignore_conflicts=True,
        )
        transaction.on_commit(partial(end_opted_out_enqueue, start))
    report.added = len(rows) - report.already
    audit(
        name="optout",
        pk=None,
        done=f"imported ({report.added} added, {report.invalid_count} invalid)",
        user=user,
    )
    return report
