"""The design card's shape, for the benchmark only: one Celery task per message, sent with requests.

Loaded into the bench's own worker (``celery worker --include bench.card_tasks``), never into the
service's. Each task claims its row with a conditional UPDATE, posts through one requests Session
per worker process (urllib3 retries on connection errors and 5xx), and writes the result back.
"""

import requests
from celery import shared_task
from django.conf import settings
from django.db.models import F
from django.utils import timezone
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from messages_app.models import Message
from messages_app.sending.transports.base import TransportError
from messages_app.sending.transports.probe import classify_answer
from messages_app.services import lease_duration

Status = Message.Status
_session: requests.Session | None = None


def _provider_session() -> requests.Session:
    global _session
    if _session is None:
        retry = Retry(
            total=3, backoff_factor=0.2, status_forcelist=(500, 502, 503, 504), allowed_methods=None
        )
        _session = requests.Session()
        _session.mount("http://", HTTPAdapter(max_retries=retry))
        _session.mount("https://", HTTPAdapter(max_retries=retry))
        _session.headers["Authorization"] = f"Bearer {settings.PROVIDER_TOKEN}"
    return _session


@shared_task(bind=True, max_retries=5)
def card_send_message(self, message_id: int) -> None:
    now = timezone.now()
    claimed = Message.objects.filter(id=message_id, status=Status.PENDING).update(
        status=Status.SENDING, attempts=F("attempts") + 1, lease_until=now + lease_duration()
    )
    if not claimed:
        return  # already final, or another delivery of this task has it
    message = Message.objects.select_related("client", "mailing").get(id=message_id)
    body = {"id": message.id, "phone": int(message.client.phone), "text": message.mailing.text}
    try:
        response = _provider_session().post(
            f"{settings.PROVIDER_URL.rstrip('/')}/send/{message.id}",
            json=body,
            timeout=(settings.PROVIDER_CONNECT_TIMEOUT, settings.PROVIDER_READ_TIMEOUT),
        )
        classify_answer(response.status_code, response.content)
    except (requests.RequestException, TransportError) as error:
        if isinstance(error, TransportError) and error.permanent:
            Message.objects.filter(id=message_id).update(status=Status.FAILED, lease_until=None)
            return
        Message.objects.filter(id=message_id).update(status=Status.PENDING, lease_until=None)
        raise self.retry(exc=error, countdown=2**self.request.retries) from None
    Message.objects.filter(id=message_id).update(status=Status.SENT, sent_at=timezone.now(), lease_until=None)
