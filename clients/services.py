"""Clients written in bulk, upserted by phone (the CSV import and the API's bulk upsert); the
opt-out list.

A row names some of a client's fields and changes only those: a stored client keeps every field
the row leaves out; a new client gets the defaults (operator code from the phone, no tag,
DEFAULT_CLIENT_TIMEZONE). Each field is checked by the model field's own validators, as the API
and the admin check it. Valid rows are written CLIENT_IMPORT_BATCH_SIZE at a time, each batch in
one transaction with an audit line: a failure while writing leaves every earlier batch written and
nothing of the failing one.
"""

import csv
import io
import itertools
import logging
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, Any, cast

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DatabaseError, transaction
from django.db.models import Field
from django.utils import timezone

from ops.audit import audit

from .attributes import attribute_errors
from .models import Client, OptOut, OptOutSource, echoed, mask_phone, validate_phone
from .tasks import end_opted_out_enqueue

log = logging.getLogger(__name__)

COLUMNS = ("phone", "operator_code", "tag", "timezone")
# A personal field's column: `attr_name` sets the attribute `name`, an empty cell removes it; the
# client's other attributes stay.
ATTRIBUTE_COLUMN_PREFIX = "attr_"
CHANGEABLE = (*COLUMNS[1:], "attributes")  # the phone is the key: rows find their client by it
# What an empty cell means, by column (docs/api.md): empty operator_code derives it from the phone,
# as the API's "" does; an empty tag is no tag; an empty timezone leaves the stored one (a new
# client: the default), since a file cannot leave out one cell of a column.
EMPTY_CELL_LEAVES = frozenset({"timezone"})
INVALID_ROWS_LISTED = 1000  # a file of garbage should not answer with a response as large


class ImportRefused(Exception):
    """The file cannot be taken as a whole (encoding, header, quoting, too many rows): nothing written."""


class ImportBatchFailed(Exception):
    """Writing one batch failed: it was rolled back, the batches before it are written."""

    def __init__(self, report: "ImportReport", first_row: int, last_row: int):
        self.report = report
        super().__init__(
            f"Writing rows {first_row} to {last_row} failed and none of them was written; rows before "
            f"{first_row} were ({report.created} created, {report.updated} updated). Send the rest again."
        )


@dataclass
class RejectedRows:
    """An import's rows left out: how many, and the first INVALID_ROWS_LISTED with their reasons."""

    invalid_count: int = 0
    invalid: list[dict] = field(default_factory=list)

    def reject(self, row: int, errors: dict[str, str]) -> None:
        self.invalid_count += 1
        if len(self.invalid) < INVALID_ROWS_LISTED:
            self.invalid.append({"row": row, "errors": errors})


@dataclass
class ImportReport(RejectedRows):
    created: int = 0
    updated: int = 0  # stored clients of which the row changed at least one field
    unchanged: int = 0  # stored clients the row names as they are: not written
    changed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CHANGEABLE, 0))


def client_values_clean(values: Mapping[str, object]) -> tuple[dict[str, Any], dict[str, str]]:
    """The fields a row names, trimmed and checked by the model fields' validators: (cleaned, errors).

    An empty operator_code is the one derived from the phone.
    """
    cleaned: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name, value in values.items():
        if name not in COLUMNS and not is_attribute_column(name):
            errors[name] = "Unknown field."
            continue
        if not isinstance(value, str):
            errors[name] = "Expected a string."
            continue
        value = value.strip()
        if is_attribute_column(name):
            key = name.removeprefix(ATTRIBUTE_COLUMN_PREFIX)
            if value and (problems := attribute_errors({key: value})):
                errors[name] = problems[0]
            else:
                cleaned.setdefault("attributes", {})[key] = value or None  # None: remove it
            continue
        if name == "operator_code" and not value:
            continue  # derived below, once the phone is known good
        try:
            cleaned[name] = cast(Field, Client._meta.get_field(name)).clean(value, None)
        except ValidationError as error:
            errors[name] = error.messages[0]
    if "phone" not in values:
        errors["phone"] = "This field is required."
    derive = "operator_code" in values and "operator_code" not in cleaned and "operator_code" not in errors
    if derive and "phone" in cleaned:  # without a good phone, the phone's error says it already
        cleaned["operator_code"] = Client.operator_code_of(cleaned["phone"])
    return cleaned, errors


def is_attribute_column(name: str) -> bool:
    return name.startswith(ATTRIBUTE_COLUMN_PREFIX)


def _attributes_patched(client: Client | None, patch: dict[str, str | None]) -> dict[str, str]:
    """The client's attributes with a row's attribute columns applied (None removes the key)."""
    attributes = dict(client.attributes) if client is not None else {}
    for key, value in patch.items():
        if value is None:
            attributes.pop(key, None)
        else:
            attributes[key] = value
    return attributes


class _BatchWriter:
    """Takes rows one by one and writes the valid ones a batch at a time."""

    def __init__(self, *, user, source: str):
        self.report = ImportReport()
        self.user = user
        self.source = f"{source} {uuid.uuid4().hex[:12]}"  # ties the batches' audit lines together
        self.now = timezone.now()
        self.batch: dict[str, tuple[int, dict[str, Any]]] = {}  # phone: (row, cleaned fields)
        # Phones of the rows taken, as numbers (smaller than strings): the one thing that grows with
        # the rows, about 70 bytes each, bounded by the API's row and item caps.
        self.seen: set[int] = set()

    def add(self, row: int, values: Mapping[str, object]) -> None:
        cleaned, errors = client_values_clean(values)
        if not errors and int(cleaned["phone"]) in self.seen:
            errors = {"phone": "Repeats an earlier row; the first one counts."}
        if errors:
            self.report.reject(row, errors)
            return
        self.seen.add(int(cleaned["phone"]))
        self.batch[cleaned["phone"]] = (row, cleaned)
        if len(self.batch) >= settings.CLIENT_IMPORT_BATCH_SIZE:
            self.flush()

    def flush(self) -> None:
        if not self.batch:
            return
        rows = [row for row, _ in self.batch.values()]
        report = self.report
        try:
            with transaction.atomic():
                created, updated, unchanged, changed = self._write()
        except DatabaseError as error:
            log.error("clients %s: rows %s-%s rolled back: %s", self.source, rows[0], rows[-1], error)
            raise ImportBatchFailed(report, rows[0], rows[-1]) from error
        report.created += created
        report.updated += updated
        report.unchanged += unchanged
        for name, count in changed.items():
            report.changed[name] += count
        done = f"{self.source}: rows {rows[0]}-{rows[-1]} written ({created} created, {updated} updated)"
        audit(name="client", pk=None, done=done, user=self.user)
        self.batch = {}

    def _write(self) -> tuple[int, int, int, dict[str, int]]:
        # Locked while merged, so that an edit made meanwhile is not overwritten with its old value.
        stored = Client.objects.select_for_update().in_bulk(list(self.batch), field_name="phone")
        written: list[Client] = []
        created = unchanged = 0
        changed = dict.fromkeys(CHANGEABLE, 0)
        for phone, (row, values) in self.batch.items():
            client = stored.get(phone)
            if "attributes" in values:
                values = {**values, "attributes": _attributes_patched(client, values["attributes"])}
                if problems := attribute_errors(values["attributes"]):
                    self.report.reject(row, {"attributes": problems[0]})
                    continue
            if client is None:  # the fields the row leaves out take the model's defaults
                client = Client(**values, created_at=self.now, updated_at=self.now)
                client.operator_code = client.operator_code or Client.operator_code_of(phone)
                created += 1
            else:
                names = [name for name, value in values.items() if getattr(client, name) != value]
                if not names:
                    unchanged += 1
                    continue
                for name in names:
                    setattr(client, name, values[name])
                    changed[name] += 1
                client.pk = None  # written by phone below, beside the new ones
                client.updated_at = self.now
            written.append(client)
        # One INSERT ... ON CONFLICT (phone) DO UPDATE for new and changed clients alike: far faster
        # than an UPDATE of many rows by id. A client another request created meanwhile takes the row.
        Client.objects.bulk_create(
            written, update_conflicts=True, unique_fields=["phone"], update_fields=[*CHANGEABLE, "updated_at"]
        )
        return created, len(written) - created, unchanged, changed

    def finish(self) -> ImportReport:
        self.flush()
        report = self.report
        counts = (
            f"{report.created} created, {report.updated} updated, {report.unchanged} unchanged, "
            f"{report.invalid_count} invalid rows"
        )
        audit(name="client", pk=None, done=f"{self.source}: done ({counts})", user=self.user)
        return report


def clients_upsert(*, items: list[Mapping[str, object]], user) -> ImportReport:
    """The API's bulk upsert: each item a JSON object naming phone and any of the other fields,
    with the import's semantics; item errors are reported by position (the first is 1), as the
    import's rows."""
    writer = _BatchWriter(user=user, source="bulk")
    for position, item in enumerate(items, start=1):
        writer.add(position, item)
    return writer.finish()


@contextmanager
def _csv_rows(file: IO[bytes]) -> Iterator[tuple[list[str], Iterator[tuple[int, list[str]]]]]:
    """The file's header (names trimmed) and its rows with their numbers (the header is row 1, as a
    spreadsheet shows it), read as a stream from the start."""
    file.seek(0)
    text = io.TextIOWrapper(file, encoding="utf-8-sig", newline="")
    reader = csv.reader(text, strict=True)
    try:
        try:
            header = [name.strip() for name in next(reader, [])]
        except (csv.Error, UnicodeDecodeError) as error:
            raise ImportRefused(f"Row 1: {_reason(error)}.") from None
        if not header:
            raise ImportRefused(f"The file is empty: a header row is expected ({','.join(COLUMNS)}).")
        unknown = {name for name in header if name not in COLUMNS and not is_attribute_column(name)}
        if "phone" not in header or unknown or len(set(header)) != len(header):
            raise ImportRefused(
                f"The header row must name the columns {', '.join(COLUMNS)} or attr_<name> (phone required, "
                "each once); "
                f"it is {echoed(','.join(header))}."
            )

        def rows() -> Iterator[tuple[int, list[str]]]:
            try:
                for cells in reader:
                    if cells:  # a blank line
                        yield reader.line_num, cells
            except (csv.Error, UnicodeDecodeError) as error:
                raise ImportRefused(f"Row {reader.line_num + 1}: {_reason(error)}.") from None

        yield header, rows()
    finally:
        text.detach()  # the caller's file stays open


def _reason(error: Exception) -> str:
    return "not UTF-8 text" if isinstance(error, UnicodeDecodeError) else str(error)


def clients_import(*, file: IO[bytes], user, max_rows: int | None) -> ImportReport:
    """Creates or updates (by phone) a client for each valid row of a CSV file with a header row.

    The file is read twice as a stream, so memory does not grow with it: first to check its
    encoding, header and quoting and count its rows against `max_rows` (None: no cap; over it:
    ImportRefused, nothing written, the rest not read), then to check each row and write the
    valid ones in batches.
    Rows with a bad value are skipped and reported with their row number and reasons; a phone seen
    earlier in the file is reported too (the first one counts). Raises ImportBatchFailed when
    writing a batch fails.
    """
    with _csv_rows(file) as (_, rows):
        # Past the cap the file is refused whatever follows: no need to read on.
        count = sum(1 for _ in itertools.islice(rows, None if max_rows is None else max_rows + 1))
    if max_rows is not None and count > max_rows:
        raise ImportRefused(f"The file has more than {max_rows} rows, the most an import takes: split it.")
    writer = _BatchWriter(user=user, source="import")
    with _csv_rows(file) as (header, rows):
        for row, cells in rows:
            if len(cells) != len(header):
                writer.report.reject(row, {"row": f"Expected {len(header)} columns."})
                continue
            values = dict(zip(header, cells, strict=True))
            for name in EMPTY_CELL_LEAVES:
                if not values.get(name, "x").strip():
                    del values[name]
            writer.add(row, values)
    return writer.finish()


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
            end_opted_out_enqueue(optout.created_at)
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
class OptOutImportReport(RejectedRows):
    added: int = 0
    already: int = 0


def optouts_import(*, data: bytes, user) -> OptOutImportReport:
    """Adds each valid phone of a CSV file (header `phone` and optionally `reason`) to the opt-out
    list, source `import`; phones already on it keep their opt-out. Invalid phones are reported by
    row (the header is row 1). Raises ImportRefused when the file cannot be read (nothing written)."""
    try:
        lines = io.StringIO(data.decode("utf-8-sig"), newline="")
    except UnicodeDecodeError as error:
        raise ImportRefused(f"The file is not UTF-8 text (byte {error.start}).") from None
    report, rows = OptOutImportReport(), dict[str, str]()  # phone: reason, the first row of a phone
    try:
        reader = csv.DictReader(lines, strict=True)
        names = [name.strip() for name in reader.fieldnames or ()]
        if "phone" not in names or set(names) - set(OPTOUT_COLUMNS):
            raise ImportRefused(f"The header row must be phone, or phone,reason; it is {','.join(names)!r}.")
        reader.fieldnames = names
        for values in reader:
            phone = (values.get("phone") or "").strip()
            try:
                validate_phone(phone)
            except ValidationError as error:
                report.reject(reader.line_num, {"phone": error.messages[0]})
                continue
            rows.setdefault(phone, (values.get("reason") or "").strip()[:REASON_MAX_LENGTH])
    except csv.Error as error:
        raise ImportRefused(f"Row {reader.line_num}: {error}.") from None
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
        end_opted_out_enqueue(start)
    report.added = len(rows) - report.already
    audit(
        name="optout",
        pk=None,
        done=f"imported ({report.added} added, {report.invalid_count} invalid)",
        user=user,
    )
    return report
