"""What the clients app enqueues, by name: the task itself runs in messages_app, which clients
knows nothing of."""

from datetime import datetime

from ops.enqueue import enqueue_on_commit

END_OPTED_OUT = "clients.tasks.end_opted_out"


def end_opted_out_enqueue(since: datetime) -> None:
    """Once the transaction commits, the pending messages of the phones opted out from `since` on
    end `opted_out` within seconds (messages_app.tasks.end_opted_out). A moment, not phones: no
    phone travels through the broker. With the broker away, the sweeper ends them instead."""
    enqueue_on_commit(
        END_OPTED_OUT,
        (since.isoformat(),),
        instead="the message sweeper ends their pending messages at its next runs, and claims skip them",
    )
