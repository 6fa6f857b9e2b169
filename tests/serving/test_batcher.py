"""MicroBatcher: merging, bounded batches, one predict at a time, failures, draining on close."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from socialens.core.types import Example, PredictionRecord, Status
from socialens.serving.batcher import BatcherClosed, MicroBatcher


class LengthModel:
    """A real, tiny model: 'long' for texts over 5 characters. Records every batch it sees and
    how many predicts ran at once; ``delay_s`` makes each predict take that long."""

    def __init__(self, delay_s: float = 0.0, fail_on: str | None = None) -> None:
        self.delay_s = delay_s
        self.fail_on = fail_on
        self.batches: list[list[str]] = []
        self.active = 0
        self.most_active = 0
        self._lock = threading.Lock()

    def predict(self, examples: list[Example]) -> list[PredictionRecord]:
        with self._lock:
            self.active += 1
            self.most_active = max(self.most_active, self.active)
        try:
            self.batches.append([ex.text for ex in examples])
            time.sleep(self.delay_s)
            if self.fail_on is not None and any(ex.text == self.fail_on for ex in examples):
                raise RuntimeError(f"cannot read {self.fail_on!r}")
            return [
                PredictionRecord(id=ex.id, gold=None, predicted="long" if len(ex.text) > 5 else "short")
                for ex in examples
            ]
        finally:
            with self._lock:
                self.active -= 1


def examples(*texts: str, prefix: str = "r") -> list[Example]:
    return [Example(id=f"{prefix}{i}", text=t) for i, t in enumerate(texts)]


async def with_batcher(batcher: MicroBatcher, body):
    await batcher.start()
    try:
        return await body(batcher)
    finally:
        await batcher.close()


def test_concurrent_submits_share_one_batch_and_get_their_own_slices():
    model = LengthModel()
    batcher = MicroBatcher(model.predict, max_batch=64, max_wait_s=0.2)

    async def body(b):
        return await asyncio.gather(
            b.submit(examples("a", "bbbbbbbb", prefix="x")),
            b.submit(examples("cccccccc", prefix="y")),
            b.submit(examples("d", "e", "ffffffffff", prefix="z")),
        )

    first, second, third = asyncio.run(with_batcher(batcher, body))
    assert [(r.id, r.predicted) for r in first] == [("x0", "short"), ("x1", "long")]
    assert [(r.id, r.predicted) for r in second] == [("y0", "long")]
    assert [(r.id, r.predicted) for r in third] == [("z0", "short"), ("z1", "short"), ("z2", "long")]
    assert model.batches == [["a", "bbbbbbbb", "cccccccc", "d", "e", "ffffffffff"]]
    assert batcher.stats.to_dict() == {
        "requests": 3,
        "texts": 6,
        "batches": 1,
        "merged_batches": 1,
        "max_requests_in_batch": 3,
        "max_texts_in_batch": 6,
        "predict_failures": 0,
    }


def test_batches_are_bounded_and_a_big_request_is_split_in_order():
    model = LengthModel()
    batcher = MicroBatcher(model.predict, max_batch=4, max_wait_s=0.05)
    texts = [f"text{i}" for i in range(10)]

    async def body(b):
        return await asyncio.gather(b.submit(examples(*texts)), b.submit(examples("tail", prefix="t")))

    big, small = asyncio.run(with_batcher(batcher, body))
    assert [r.id for r in big] == [f"r{i}" for i in range(10)]
    assert [r.id for r in small] == ["t0"]
    assert [len(batch) for batch in model.batches] == [4, 4, 3]
    assert [t for batch in model.batches for t in batch] == [*texts, "tail"]


def test_predict_never_runs_concurrently_and_the_loop_stays_free():
    model = LengthModel(delay_s=0.05)
    batcher = MicroBatcher(model.predict, max_batch=2, max_wait_s=0.0)
    ticks = []

    async def body(b):
        async def ticker():
            for _ in range(10):
                ticks.append(model.active)  # a blocked loop could not tick mid-predict
                await asyncio.sleep(0.01)

        results = await asyncio.gather(*(b.submit(examples(f"t{i}")) for i in range(8)), ticker())
        return results[:-1]

    results = asyncio.run(with_batcher(batcher, body))
    assert len(results) == 8 and all(len(r) == 1 for r in results)
    assert model.most_active == 1
    assert len(model.batches) == 4
    assert len(ticks) == 10 and sum(ticks) >= 3


def test_a_failing_model_yields_one_error_record_per_text_and_the_service_goes_on():
    model = LengthModel(fail_on="poison")
    batcher = MicroBatcher(model.predict, max_batch=8, max_wait_s=0.05)

    async def body(b):
        failed = await asyncio.gather(b.submit(examples("ok", "poison")), b.submit(examples("x", prefix="q")))
        after = await b.submit(examples("fine"))
        return failed, after

    (first, second), after = asyncio.run(with_batcher(batcher, body))
    assert [r.status for r in first + second] == [Status.ERROR] * 3
    assert [r.id for r in first + second] == ["r0", "r1", "q0"]
    assert all(r.predicted is None and "RuntimeError: cannot read 'poison'" in r.error for r in first)
    assert after[0].status == Status.OK
    assert batcher.stats.predict_failures == 1


def test_a_model_returning_the_wrong_number_of_records_is_an_error_not_a_shifted_answer():
    batcher = MicroBatcher(lambda batch: LengthModel().predict(batch)[:-1], max_batch=8, max_wait_s=0)

    async def body(b):
        return await b.submit(examples("one", "two"))

    records = asyncio.run(with_batcher(batcher, body))
    assert [r.status for r in records] == [Status.ERROR, Status.ERROR]
    assert "1 records for 2 texts" in records[0].error


def test_close_finishes_submitted_work_then_refuses_new_work():
    model = LengthModel(delay_s=0.02)
    batcher = MicroBatcher(model.predict, max_batch=2, max_wait_s=0.5)

    async def main():
        await batcher.start()
        pending = [asyncio.create_task(batcher.submit(examples(f"t{i}"))) for i in range(5)]
        await asyncio.sleep(0)  # let the submits enqueue
        await batcher.close()
        assert all(task.done() for task in pending)
        with pytest.raises(BatcherClosed):
            await batcher.submit(examples("late"))
        return [task.result() for task in pending]

    start = time.perf_counter()
    results = asyncio.run(main())
    assert [r[0].id for r in results] == ["r0"] * 5
    assert sum(len(batch) for batch in model.batches) == 5
    assert time.perf_counter() - start < 0.4  # closing does not wait out max_wait


def test_a_cancelled_request_is_not_predicted():
    model = LengthModel()
    batcher = MicroBatcher(model.predict, max_batch=8, max_wait_s=0.1)

    async def body(b):
        gone = asyncio.create_task(b.submit(examples("abandoned")))
        await asyncio.sleep(0)
        gone.cancel()
        return await b.submit(examples("kept"))

    records = asyncio.run(with_batcher(batcher, body))
    assert [r.predicted for r in records] == ["short"]
    assert model.batches == [["kept"]]


@pytest.mark.parametrize(("max_batch", "max_wait_s"), [(0, 0.01), (4, -1)])
def test_bad_settings_are_rejected(max_batch, max_wait_s):
    with pytest.raises(ValueError, match="max_"):
        MicroBatcher(LengthModel().predict, max_batch=max_batch, max_wait_s=max_wait_s)


def test_the_inference_thread_gets_the_requested_torch_threads():
    import torch

    seen = []

    def predict(batch):
        seen.append(torch.get_num_threads())
        return LengthModel().predict(batch)

    batcher = MicroBatcher(predict, max_batch=8, max_wait_s=0, inference_threads=1)

    async def body(b):
        return await b.submit(examples("x"))

    asyncio.run(with_batcher(batcher, body))
    assert seen == [1]
