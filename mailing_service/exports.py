"""CSV exports: streamed in batches, every cell safe to open in a spreadsheet.

Every export of the service (a mailing's messages, the client directory) writes through
`csv_response`, so no cell escapes `spreadsheet_safe`.
"""

import csv
import io
import json
from collections.abc import Iterable, Iterator
from datetime import datetime

from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework.renderers import BaseRenderer

# A cell starting with one of these is a formula to Excel, LibreOffice and Google Sheets (OWASP's
# "CSV injection"); a leading apostrophe makes it text.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
EXPORT_BATCH_SIZE = 5000  # rows read and written at a time: the memory an export holds


def spreadsheet_safe(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        text = value.isoformat()
    elif isinstance(value, dict | list):
        text = json.dumps(value, ensure_ascii=False)
    else:
        text = str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def csv_chunks(header: list[str], batches: Iterable[list[tuple]]) -> Iterator[str]:
    """The CSV text, one chunk per batch of rows."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    for batch in batches:
        writer.writerows([spreadsheet_safe(value) for value in row] for row in batch)
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()


# The schema of an export's 200 answer.
CSV_EXPORT = OpenApiResponse(
    OpenApiTypes.STR,
    description="CSV (UTF-8) with a header row, streamed; a cell that a spreadsheet would run as a formula "
    "(starting with =, +, -, @, a tab or a carriage return) starts with an apostrophe.",
)


# An export's schema leaves out the `?format=` parameter its two renderers would list: the answer
# is CSV whatever the request asks for, only an error comes as JSON or CSV.
NO_FORMAT_PARAMETER = OpenApiParameter("format", exclude=True)


def csv_response(
    *, filename: str, header: list[str], batches: Iterable[list[tuple]]
) -> StreamingHttpResponse:
    response = StreamingHttpResponse(csv_chunks(header, batches), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def rows_by_key(
    queryset, fields: list[str], *, key: str = "pk", batch_size: int = EXPORT_BATCH_SIZE
) -> Iterator[list[tuple]]:
    """The queryset's `fields` in batches by increasing `key` (unique in the queryset, one of
    `fields`): a keyset walk, so memory stays one batch whatever the table's size and no cursor stays
    open between batches. Each batch is one range scan when an index leads with the queryset's
    equality filters and then `key`."""
    place = fields.index(key)
    batches = queryset.order_by(key).values_list(*fields)
    batch = list(batches[:batch_size])
    while batch:
        yield batch
        if len(batch) < batch_size:
            return
        batch = list(batches.filter(**{f"{key}__gt": batch[-1][place]})[:batch_size])


class CSVRenderer(BaseRenderer):
    """Lets a request ask for `Accept: text/csv`; the export itself is a StreamingHttpResponse,
    which no renderer touches. An error answered to such a request comes as one CSV cell."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        detail = data.get("detail", data) if isinstance(data, dict) else data
        return "".join(csv_chunks(["detail"], [[(detail,)]])).encode()
