"""Render time of one model overlay (+ base and Application). Timing lives here, never in tests.

.venv/bin/python bench/bench_render.py [iterations]
"""

from __future__ import annotations

import statistics
import sys
import time

from renderer import (
    ApplicationSpec,
    Autoscaling,
    DeploymentSpec,
    DisruptionBudget,
    SecretRef,
    application_name,
    model_dir,
    render_application,
    render_base,
    render_model,
)


def _spec(index: int) -> DeploymentSpec:
    return DeploymentSpec(
        model_name=f"model-{index}",
        namespace="mlops-models",
        model_version=str(index),
        image=f"127.0.0.1:5000/mlops/model-{index}@sha256:{index:064x}",
        run_id=f"{index:032x}",
        model_uri=f"models:/model-{index}/{index}",
        deployment_id=f"dep-{index}",
        env={"LOG_LEVEL": "info", "BATCH_SIZE": "32"},
        secret_env={"DB_PASSWORD": SecretRef(name="db", key="password")},
        autoscaling=Autoscaling(min_replicas=2, max_replicas=5),
        disruption_budget=DisruptionBudget(min_available=1),
    )


def main(iterations: int) -> None:
    render_model(_spec(0))  # template compilation happens once per process
    samples = []
    for index in range(iterations):
        started = time.perf_counter()
        spec = _spec(index)
        render_model(spec)
        render_base()
        render_application(
            ApplicationSpec(
                name=application_name(spec.namespace, spec.model_name),
                repo_url="https://git.example.com/gitops.git",
                path=model_dir(spec.namespace, spec.model_name),
                destination_namespace=spec.namespace,
            )
        )
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    print(
        f"validate+render of one model, {iterations} runs: "
        f"median {statistics.median(samples):.2f} ms, p95 {samples[int(len(samples) * 0.95) - 1]:.2f} ms, "
        f"max {samples[-1]:.2f} ms"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
