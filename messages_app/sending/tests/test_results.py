"""Results are written in batches, at once when many wait, after a short pause when few do."""

import asyncio
import uuid

from messages_app.sending.outcomes import Outcome, Result
from messages_app.sending.results import FLUSH_PAUSE, FULL_BATCH, ResultWriter

WRITE_TAKES = 0.05  # seconds one write takes the store


class SlowStore:
    """Takes WRITE_TAKES per write and notes when each began and how many results it held."""

    holder = "test"

    def __init__(self, clock):
        self.clock = clock
        self.writes: list[tuple[float, int]] = []

    async def record(self, *, results):
        self.writes.append((self.clock.monotonic(), len(results)))
        await asyncio.sleep(WRITE_TAKES)


def results(count: int) -> list[Result]:
    token = uuid.uuid4()
    return [Result(n, token, Outcome.SENT, 1) for n in range(count)]


def test_many_waiting_results_are_written_at_once_and_a_few_after_a_pause(clock):
    store = SlowStore(clock)

    async def scenario():
        writer = ResultWriter(store=store)
        writing = asyncio.create_task(writer.run())
        for result in results(3):
            writer.add(result)
        await asyncio.sleep(WRITE_TAKES / 2)  # during the first write: a full batch comes in
        for result in results(FULL_BATCH):
            writer.add(result)
        await asyncio.sleep(WRITE_TAKES)  # during the second write: a few come in
        for result in results(2):
            writer.add(result)
        await asyncio.sleep(1)
        writer.close()
        await writing

    start = clock.monotonic()
    with asyncio.Runner(loop_factory=clock.new_event_loop) as runner:
        runner.run(scenario())

    began = [round(at - start, 3) for at, _ in store.writes]
    assert [size for _, size in store.writes] == [3, FULL_BATCH, 2]
    # The full batch right after the write before it; the two after the pause.
    assert began == [0.0, WRITE_TAKES, round(2 * WRITE_TAKES + FLUSH_PAUSE, 3)]
