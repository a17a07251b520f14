"""The canary analysis' arithmetic: metrics parsed from the model server's exposition format,
windows between two reads (with restarts), the latency quantile, and the verdict's rules."""

from __future__ import annotations

import pytest

from control_api.pipeline.canary.analysis import Counts, judge, quantile


def exposition(ok: int, failed: int, buckets: dict[str, int], status_failed: str = "500") -> str:
    lines = [
        "# TYPE model_requests_total counter",
        f'model_requests_total{{endpoint="/predict",status="200"}} {ok}',
        f'model_requests_total{{endpoint="/v2/infer",status="{status_failed}"}} {failed}',
        "# TYPE model_request_seconds histogram",
    ]
    lines += [f'model_request_seconds_bucket{{endpoint="/predict",le="{le}"}} {n}' for le, n in buckets.items()]
    lines += [
        f'model_request_seconds_count{{endpoint="/predict"}} {ok + failed}',
        'model_request_seconds_sum{endpoint="/predict"} 1.0',
        "# TYPE model_errors_total counter",
        'model_errors_total{code="prediction_failed"} 99',
    ]
    return "\n".join(lines) + "\n"


def test_counts_sum_replicas_and_count_every_non_2xx_answer_as_an_error():
    one = exposition(90, 10, {"0.01": 80, "0.1": 100, "+Inf": 100}, status_failed="422")
    two = exposition(45, 5, {"0.01": 50, "0.1": 50, "+Inf": 50})
    counts = Counts.from_texts([one, two])
    assert (counts.requests, counts.errors) == (150, 15)
    assert counts.buckets == {"0.01": 130, "0.1": 150, "+Inf": 150}


def test_a_window_is_the_difference_and_a_restart_counts_from_zero():
    before = Counts(100, 5, {"0.01": 100, "+Inf": 100})
    after = Counts(160, 8, {"0.01": 150, "+Inf": 160})
    assert after.since(before) == Counts(60, 3, {"0.01": 50, "+Inf": 60})
    restarted = Counts(30, 1, {"0.01": 30, "+Inf": 30})
    assert restarted.since(before) == restarted
    assert Counts.from_json(after.to_json()) == after


@pytest.mark.parametrize(
    ("q", "expected"),
    [(0.5, 0.01 * 50 / 90), (0.9, 0.01), (0.95, 0.055), (0.999, 0.0991)],
)
def test_quantile_interpolates_within_its_bucket(q, expected):
    buckets = {"0.01": 90, "0.1": 100, "+Inf": 100}
    assert quantile(buckets, q) == pytest.approx(expected, rel=1e-6)


def test_quantile_in_the_open_bucket_is_the_highest_bound_and_none_without_data():
    assert quantile({"0.1": 50, "+Inf": 100}, 0.99) == 0.1
    assert quantile({"0.1": 0, "+Inf": 0}, 0.5) is None


def test_verdicts():
    thresholds = {"max_error_rate": 0.05, "max_latency_ms": 50, "latency_percentile": 99, "min_requests": 20}
    passing = judge(Counts(100, 2, {"0.01": 100, "+Inf": 100}), thresholds)
    assert passing.outcome == "pass" and passing.error_rate == 0.02
    failing = judge(Counts(100, 6, {"0.01": 100, "+Inf": 100}), thresholds)
    assert failing.outcome == "fail" and failing.reasons == ("error rate 6.0% above 5.0%",)
    slow = judge(Counts(100, 0, {"0.01": 50, "1.0": 100, "+Inf": 100}), thresholds)
    assert slow.outcome == "fail" and "p99 latency" in slow.reasons[0]
    few = judge(Counts(19, 19, {"+Inf": 19}), thresholds)
    assert few.outcome == "inconclusive"
    assert "19 requests" in few.summary()
