"""What the clients app enqueues, by name: the task itself runs in messages_app, which clients
knows nothing of."""

from datetime import datetime

from celery import current_app

END_OPTED_OUT = "clients.tasks.end_opted_out"


def end_opted_out_enqueue(since: datetime) -> None:
    """The pending messages of the phones opted out from `since` on end `opted_out` within seconds
    (messages_app.tasks.end_opted_out). A moment, not phones: no phone travels through the broker."""
    current_app.send_task(END_OPTED_OUT, args=(since.isoformat(),))
