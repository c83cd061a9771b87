"""Idempotency keys: a client that retries a POST with the same `Idempotency-Key` gets the first
answer again instead of a second client, mailing, resend or test send.

Per user, the first request with a key claims it (a committed row) before its view runs, and its
answer (status and body) is stored once it is known. Then, within IDEMPOTENCY_KEY_HOURS:
- the same key with the same request (method, path, query and body) replays that answer, with
  `Idempotent-Replayed: true`, and does nothing again;
- the same key with another request is a 422;
- the same key while the first request still runs is a 409.
An answer of 500 or more, or a request that raised, releases the key: nothing is known to have been
done, and the retry runs. A claim whose process died without an answer is released after
IN_PROGRESS_LEASE, since no request runs longer than the web's worker timeout.
"""

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.http import QueryDict
from django.utils import timezone
from rest_framework import status
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.response import Response

from .audit import REPLAYED_HEADER
from .models import IdempotencyKey

HEADER = "Idempotency-Key"
KEY_MAX_LENGTH = 255
# Longer than any request may run (gunicorn's timeout is 30 s): a claim older than this without an
# answer was left by a process that died.
IN_PROGRESS_LEASE = timedelta(minutes=5)


class KeyInProgress(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = f"A request with this {HEADER} is still running: retry once it has answered."
    default_code = "idempotency_key_in_progress"


class KeyReused(APIException):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_detail = (
        f"This {HEADER} came with another request (method, path or body): a new request needs a new key."
    )
    default_code = "idempotency_key_reused"


class _Replay(Exception):
    def __init__(self, record: IdempotencyKey):
        self.record = record


def idempotency_lifetime() -> timedelta:
    return timedelta(hours=settings.IDEMPOTENCY_KEY_HOURS)


def idempotency_claim(*, user, key: str, fingerprint: str, now: datetime) -> IdempotencyKey:
    """The user's claim on `key` for this request. Raises KeyReused, KeyInProgress, or _Replay with
    the stored answer."""
    try:
        with transaction.atomic():
            return IdempotencyKey.objects.create(user=user, key=key, fingerprint=fingerprint, created_at=now)
    except IntegrityError:
        pass  # the key is known: what to do depends on its row
    with transaction.atomic():
        record = IdempotencyKey.objects.select_for_update().get(user=user, key=key)
        expired = record.created_at <= now - idempotency_lifetime()
        abandoned = record.status_code is None and record.created_at <= now - IN_PROGRESS_LEASE
        if expired or abandoned:
            record.fingerprint, record.created_at, record.status_code, record.body = (
                fingerprint,
                now,
                None,
                None,
            )
            record.save()
            return record
    if record.fingerprint != fingerprint:
        raise KeyReused()
    if record.status_code is None:
        raise KeyInProgress()
    raise _Replay(record)


def idempotency_purge(*, now: datetime) -> int:
    """Deletes the keys past their lifetime; returns how many."""
    deleted, _ = IdempotencyKey.objects.filter(created_at__lte=now - idempotency_lifetime()).delete()
    return deleted


def _canonical(value):
    """The request's data as JSON can say it, files by their SHA-256: the same request sent again
    (another multipart boundary, keys in another order) gives the same fingerprint."""
    if hasattr(value, "read"):  # an uploaded file, or a text/csv body spooled (read to its end)
        value.seek(0)
        digest = hashlib.sha256()
        for chunk in iter(lambda: value.read(1 << 16), b""):
            digest.update(chunk)
        value.seek(0)
        return {"sha256": digest.hexdigest()}
    if isinstance(value, QueryDict):
        return {name: [_canonical(item) for item in items] for name, items in value.lists()}
    if isinstance(value, Mapping):
        return {str(name): _canonical(item) for name, item in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(item) for item in value]
    return value


def request_fingerprint(request) -> str:
    described = [request.method, request.path, _canonical(request.query_params), _canonical(request.data)]
    return hashlib.sha256(json.dumps(described, sort_keys=True, default=str).encode()).hexdigest()


class IdempotentPostMixin:
    """For API views: POSTs carrying `Idempotency-Key` are done once per user and key (the module's
    doc). The key is claimed after authentication, permissions and rate limits, so that a refused
    request claims nothing."""

    idempotency_key: IdempotencyKey | None = None

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        key = request.headers.get(HEADER)
        if request.method != "POST" or key is None or not request.user.is_authenticated:
            return
        if not 0 < len(key) <= KEY_MAX_LENGTH or not key.isascii() or not key.isprintable():
            raise ValidationError(
                {HEADER: [f"Must be 1 to {KEY_MAX_LENGTH} printable ASCII characters (a UUID will do)."]}
            )
        self.idempotency_key = idempotency_claim(
            user=request.user, key=key, fingerprint=request_fingerprint(request), now=timezone.now()
        )

    def handle_exception(self, exc):
        if isinstance(exc, _Replay):
            headers = {REPLAYED_HEADER: "true"}
            return Response(exc.record.body, status=exc.record.status_code, headers=headers)
        try:
            return super().handle_exception(exc)
        except Exception:
            self._release()  # a 500: nothing is known to be done
            raise

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        if response.status_code >= 500 or not hasattr(response, "data"):
            self._release()
        elif (record := self.idempotency_key) is not None:
            self.idempotency_key = None
            record.status_code, record.body = response.status_code, response.data
            record.save(update_fields=["status_code", "body"])
        return response

    def _release(self) -> None:
        record, self.idempotency_key = self.idempotency_key, None
        if record is not None:
            record.delete()
