"""The canary's verdict from its own model servers' Prometheus metrics over one interval.

Every model server counts its inference answers (``model_requests_total{endpoint,status}``) and
their latency (``model_request_seconds`` histogram). The analysis reads them from each canary
replica at the start and at the end of an interval; the difference is what the canary did in it.
An error is any answer that is not 2xx: the canary's clients are the stable's, so a threshold is
about how the new version answers them. The latency percentile is interpolated within histogram
buckets, as Prometheus' ``histogram_quantile`` does.

Counters start again at zero when a replica restarts; a total that went down is read as such a
restart, and the window then counts from zero (the requests a restarted replica answered before its
restart are lost, as they are to Prometheus' ``increase`` across a reset of a summed series).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

REQUESTS = "model_requests"
LATENCY = "model_request_seconds"


@dataclass(frozen=True)
class Counts:
    """Inference answers and their latency buckets, summed over replicas (cumulative, as scraped)."""

    requests: float = 0.0
    errors: float = 0.0
    buckets: dict[str, float] = field(default_factory=dict)  # upper bound ("0.005", "+Inf") -> count

    @classmethod
    def from_texts(cls, texts: list[str]) -> Counts:
        requests = errors = 0.0
        buckets: dict[str, float] = {}
        for text in texts:
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    if family.name == REQUESTS and sample.name.endswith("_total"):
                        requests += sample.value
                        if not str(sample.labels.get("status", "")).startswith("2"):
                            errors += sample.value
                    elif family.name == LATENCY and sample.name.endswith("_bucket"):
                        bound = _bound_key(sample.labels["le"])
                        buckets[bound] = buckets.get(bound, 0.0) + sample.value
        return cls(requests, errors, buckets)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Counts:
        return cls(float(data["requests"]), float(data["errors"]), {k: float(v) for k, v in data["buckets"].items()})

    def since(self, earlier: Counts) -> Counts:
        """What happened after ``earlier``; all of it when a counter went down (a restart)."""
        if self.requests < earlier.requests or any(v < earlier.buckets.get(k, 0.0) for k, v in self.buckets.items()):
            return self
        return Counts(
            self.requests - earlier.requests,
            self.errors - earlier.errors,
            {k: v - earlier.buckets.get(k, 0.0) for k, v in self.buckets.items()},
        )


def _bound_key(le: str) -> str:
    return "+Inf" if math.isinf(float(le)) else repr(float(le))


def quantile(buckets: dict[str, float], q: float) -> float | None:
    """The ``q`` quantile (0..1) of cumulative ``buckets``, in their unit, or None without data.
    Linear within the bucket it falls in; in the +Inf bucket, the highest finite bound."""
    ordered = sorted((math.inf if k == "+Inf" else float(k), v) for k, v in buckets.items())
    if not ordered or ordered[-1][1] <= 0:
        return None
    rank = q * ordered[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in ordered:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return lower_bound


@dataclass(frozen=True)
class Verdict:
    outcome: str  # "pass", "fail" or "inconclusive"
    requests: int
    errors: int
    error_rate: float | None
    latency_ms: float | None
    reasons: tuple[str, ...]
    thresholds: dict[str, Any]

    def evidence(self) -> dict[str, Any]:
        data = asdict(self)
        data["reasons"] = list(self.reasons)
        return data

    def summary(self) -> str:
        rate = "n/a" if self.error_rate is None else f"{self.error_rate:.1%}"
        latency = "n/a" if self.latency_ms is None else f"{self.latency_ms:.1f} ms"
        percentile = self.thresholds.get("latency_percentile")
        head = f"{self.requests} requests, {self.errors} errors ({rate}), p{percentile:g} {latency}"
        return f"{head}: {'; '.join(self.reasons)}" if self.reasons else head


def judge(window: Counts, analysis: dict[str, Any]) -> Verdict:
    """Pass, fail or (too few requests) inconclusive, by the strategy's ``analysis`` thresholds."""
    max_error_rate = float(analysis.get("max_error_rate", 0.05))
    max_latency_ms = analysis.get("max_latency_ms")
    percentile = float(analysis.get("latency_percentile", 99))
    min_requests = int(analysis.get("min_requests", 20))
    thresholds = {
        "max_error_rate": max_error_rate,
        "max_latency_ms": max_latency_ms,
        "latency_percentile": percentile,
        "min_requests": min_requests,
    }
    requests, errors = round(window.requests), round(window.errors)
    seconds = quantile(window.buckets, percentile / 100)
    latency_ms = None if seconds is None else seconds * 1000
    error_rate = errors / requests if requests else None
    if requests < min_requests:
        reason = f"{requests} requests, fewer than the {min_requests} a verdict needs"
        return Verdict("inconclusive", requests, errors, error_rate, latency_ms, (reason,), thresholds)
    reasons = []
    if error_rate is not None and error_rate > max_error_rate:
        reasons.append(f"error rate {error_rate:.1%} above {max_error_rate:.1%}")
    if max_latency_ms is not None and latency_ms is not None and latency_ms > float(max_latency_ms):
        reasons.append(f"p{percentile:g} latency {latency_ms:.1f} ms above {float(max_latency_ms):g} ms")
    return Verdict("fail" if reasons else "pass", requests, errors, error_rate, latency_ms, tuple(reasons), thresholds)
