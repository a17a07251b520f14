"""The micro-batcher's correctness rules, one test each: results go back in order to their own request,
a bad row fails only its own request, a cancelled request is left out, batches respect the maximum
size and the maximum added wait, and the off switches (setting, no concurrency, no per-call cost).
The model is a fake whose calls are recorded; its cost, where it matters, is counted on a fake clock."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from model_server.batching import BatchObserver, BatchSettings, MicroBatcher


class Recorder(BatchObserver):
    def __init__(self) -> None:
        self.batches: list[tuple[int, int]] = []  # (rows, requests)
        self.waits: list[float] = []

    def batch(self, rows: int, requests: int) -> None:
        self.batches.append((rows, requests))

    def queue_wait(self, seconds: float) -> None:
        self.waits.append(seconds)


class FakeModel:
    """predict(matrix) = first column * 10; a NaN anywhere in the call raises, as sklearn does."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, matrix: np.ndarray) -> np.ndarray:
        self.calls.append(matrix.shape[0])
        if np.isnan(matrix).any():
            raise ValueError("Input contains NaN")
        return matrix[:, 0] * 10


def rows(*values: float) -> np.ndarray:
    return np.asarray([[v, 0.0] for v in values])


def make(mode: str = "on", **settings) -> tuple[MicroBatcher, FakeModel, Recorder]:
    model, recorder = FakeModel(), Recorder()
    return MicroBatcher(model, BatchSettings(mode=mode, **settings), recorder), model, recorder


async def gather_all(batcher: MicroBatcher, matrices: list[np.ndarray]) -> list:
    return await asyncio.wait_for(
        asyncio.gather(*(batcher.predict(m) for m in matrices), return_exceptions=True), timeout=30
    )


def test_concurrent_requests_share_one_call_and_get_their_own_rows_in_order():
    batcher, model, recorder = make()
    matrices = [rows(1), rows(2, 3), rows(4), rows(5, 6, 7)]
    results = asyncio.run(gather_all(batcher, matrices))
    assert [r.tolist() for r in results] == [[10], [20, 30], [40], [50, 60, 70]]
    assert model.calls == [7]
    assert recorder.batches == [(7, 4)] and len(recorder.waits) == 4


def test_a_bad_row_fails_only_its_own_request():
    batcher, model, _recorder = make()
    results = asyncio.run(gather_all(batcher, [rows(1), rows(float("nan")), rows(3, 4)]))
    assert results[0].tolist() == [10] and results[2].tolist() == [30, 40]
    assert isinstance(results[1], ValueError)
    assert model.calls == [4, 1, 1, 2]  # the batch, then each request alone


def test_a_request_cancelled_while_waiting_is_left_out():
    batcher, model, recorder = make()

    async def scenario():
        tasks = [asyncio.create_task(batcher.predict(rows(v))) for v in (1, 2, 3)]
        await asyncio.sleep(0)  # every task has joined the batch; its flush runs on the next turn
        tasks[1].cancel()
        return await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), timeout=30)

    results = asyncio.run(scenario())
    assert isinstance(results[1], asyncio.CancelledError)
    assert results[0].tolist() == [10] and results[2].tolist() == [30]
    assert model.calls == [2] and recorder.batches == [(2, 2)]


def test_batches_never_exceed_the_maximum_size():
    batcher, model, _recorder = make(max_size=4)
    results = asyncio.run(gather_all(batcher, [rows(v) for v in range(10)]))
    assert [r.tolist() for r in results] == [[v * 10] for v in range(10)]
    assert model.calls == [4, 4, 2]
    big = asyncio.run(gather_all(batcher, [rows(*range(5))]))  # alone larger than a batch: scored directly
    assert big[0].tolist() == [0, 10, 20, 30, 40] and model.calls[-1] == 5


def test_a_lingering_batch_flushes_when_as_many_requests_as_usual_arrived():
    batcher, model, _recorder = make(max_wait=60.0)
    batcher.recent_requests = 3.0  # recent batches held three requests

    async def scenario():
        first = asyncio.create_task(batcher.predict(rows(1)))
        for _ in range(3):  # several loop turns: the batch is lingering, not flushed
            await asyncio.sleep(0)
        assert model.calls == []
        later = [asyncio.create_task(batcher.predict(rows(v))) for v in (2, 3)]
        return await asyncio.wait_for(asyncio.gather(first, *later), timeout=30)

    results = asyncio.run(scenario())
    assert [r.tolist() for r in results] == [[10], [20], [30]]
    assert model.calls == [3]  # flushed on the third arrival, long before the 60 s limit


def test_a_lingering_batch_flushes_at_the_maximum_wait():
    batcher, _model, recorder = make(max_wait=0.005)
    batcher.recent_requests = 8.0
    results = asyncio.run(gather_all(batcher, [rows(1)]))
    assert results[0].tolist() == [10]
    assert recorder.batches == [(1, 1)]
    assert batcher.recent_requests < 8.0  # a smaller batch lowers what the next one waits for


def test_off_means_every_request_is_its_own_call():
    batcher, model, recorder = make(mode="off")
    results = asyncio.run(gather_all(batcher, [rows(v) for v in range(5)]))
    assert [r.tolist() for r in results] == [[v * 10] for v in range(5)]
    assert model.calls == [1] * 5 and recorder.batches == []


def test_auto_scores_directly_without_concurrency_and_probes_for_it():
    batcher, model, recorder = make(mode="auto", probe_every=4)

    async def one_at_a_time():
        for v in range(12):
            assert (await batcher.predict(rows(v))).tolist() == [v * 10]

    asyncio.run(one_at_a_time())
    assert model.calls == [1] * 12
    assert recorder.batches == [(1, 1)] * 3  # only the probes went through a batch
    assert not batcher.active

    async def concurrent_after_a_probe():
        for _ in range(3):  # the next probe is due on the fourth request
            await batcher.predict(rows(0))
        return await gather_all(batcher, [rows(v) for v in range(8)])

    results = asyncio.run(concurrent_after_a_probe())
    assert [r.tolist() for r in results] == [[v * 10] for v in range(8)]
    assert recorder.batches[-1] == (8, 8)  # the probe's batch gathered the concurrent requests
    assert batcher.active


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    "per_call, per_row, pays",
    [(0.002, 0.00001, True), (0.0, 0.0002, False)],
    ids=["fixed-cost-model", "per-row-cost-model"],
)
def test_auto_turns_off_for_a_model_without_per_call_cost(per_call, per_row, pays):
    clock = FakeClock()

    def model(matrix: np.ndarray) -> np.ndarray:
        clock.now += per_call + per_row * matrix.shape[0]
        return matrix[:, 0]

    batcher = MicroBatcher(model, BatchSettings(mode="auto", max_size=32), Recorder(), clock=clock)
    batcher.recent_requests = 8.0
    batcher.calibrate(np.asarray([1.0, 2.0]))
    assert batcher.pays is pays
    assert batcher.active is pays


def test_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("BATCHING", "off")
    monkeypatch.setenv("BATCH_MAX_SIZE", "16")
    monkeypatch.setenv("BATCH_MAX_WAIT_MS", "0.5")
    assert BatchSettings.from_env() == BatchSettings(mode="off", max_size=16, max_wait=0.0005, probe_every=32)
    monkeypatch.setenv("BATCHING", "sometimes")
    with pytest.raises(ValueError, match="BATCHING"):
        BatchSettings.from_env()


def metric(text: str, name: str) -> float:
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " "))


def test_metrics_report_batch_sizes_and_queue_wait(monkeypatch, iris_model_dirs):
    from tests.support.serving import make_client

    monkeypatch.setenv("BATCHING", "on")
    client = make_client(iris_model_dirs["logistic"])
    assert client.post("/predict", json={"inputs": [[5.1, 3.5, 1.4, 0.2]]}).status_code == 200
    text = client.get("/metrics").text
    assert metric(text, "model_batch_rows_count") == 1
    assert metric(text, "model_batch_rows_sum") == 1
    assert metric(text, "model_batch_queue_wait_seconds_count") == 1


def test_concurrent_clients_each_get_their_own_rows_prediction(iris_model_dirs, pyfunc_models):
    """A real server process with batching on, eight keep-alive clients sending different rows at once."""
    from concurrent.futures import ThreadPoolExecutor

    import httpx
    import pandas as pd

    from tests.support.serving import served_process

    columns = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
    samples = [[5.1, 3.5, 1.4, 0.2], [6.0, 2.7, 5.1, 1.6], [6.3, 3.3, 6.0, 2.5], [5.9, 3.0, 4.2, 1.5]]
    want = pyfunc_models["forest"].predict(pd.DataFrame(samples, columns=columns)).tolist()
    requests_per_client = 40

    with served_process(iris_model_dirs["forest"], BATCHING="on", BATCH_MAX_SIZE="4") as url:

        def client(index: int) -> list[tuple[int, int]]:
            answers = []
            with httpx.Client(base_url=url, timeout=30) as http:
                for n in range(requests_per_client):
                    sample = (index + n) % len(samples)
                    if n % 2:
                        body = {"inputs": [{"name": "x", "datatype": "FP64", "shape": [1, 4], "data": samples[sample]}]}
                        got = http.post("/v2/models/iris-forest/infer", json=body).json()["outputs"][0]["data"][0]
                    else:
                        got = http.post("/predict", json={"inputs": [samples[sample]]}).json()["predictions"][0]
                    answers.append((sample, got))
            return answers

        with ThreadPoolExecutor(8) as pool:
            answers = [answer for answers in pool.map(client, range(8)) for answer in answers]
        text = httpx.get(f"{url}/metrics").text

    assert [got for _, got in answers] == [want[sample] for sample, _ in answers]
    total = 8 * requests_per_client
    assert metric(text, "model_batch_rows_sum") == total
    assert metric(text, "model_batch_rows_count") < total  # some calls served several requests
    assert metric(text, 'model_batch_rows_bucket{le="4.0"}') == metric(text, "model_batch_rows_count")
