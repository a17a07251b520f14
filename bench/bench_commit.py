"""Time one deploy's render + commit + push against a GitOps repo that already holds many models.

    .venv/bin/python bench/bench_commit.py [--models 1000] [--deploys 20] [--keep DIR]

The remote is a bare repository on local disk (file://), so the numbers measure git and our commit
flow (ls-remote, write, stage, compare, commit, push), not a network. Every deploy bumps one model's
version, which is the common case: a small diff to one overlay among many.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from control_api.adapters.gitops import CommitRequest, GitOpsRepo
from control_api.settings import GitSettings

try:
    import renderer
except ImportError:  # the renderer package is optional for this benchmark
    renderer = None

NAMESPACE = "mlops-models"
TARGET_MS = 200.0  # render + commit + push with 1,000 models already in the repo


def model_files(name: str, version: int) -> tuple[dict[str, bytes], str]:
    """The overlay of one model version and its directory (rendered for real when the renderer exists)."""
    digest = hashlib.sha256(f"{name}:{version}".encode()).hexdigest()
    if renderer is not None:
        spec = renderer.DeploymentSpec.validated(
            model_name=name,
            namespace=NAMESPACE,
            model_version=str(version),
            image=f"127.0.0.1:5000/mlops/{name}@sha256:{digest}",
            run_id=digest[:32],
            model_uri=f"models:/{name}/{version}",
            deployment_id=f"dep-{name}-{version}",
        )
        return renderer.render_model(spec), renderer.model_dir(NAMESPACE, name)
    directory = f"apps/{NAMESPACE}/{name}"
    return {
        f"{directory}/kustomization.yaml": b"resources: [../../../base/model-server]\npatches: [{path: patch.yaml}]\n",
        f"{directory}/patch.yaml": f"image: 127.0.0.1:5000/mlops/{name}@sha256:{digest}\n".encode(),
    }, directory


def base_files() -> dict[str, bytes]:
    return renderer.render_base() if renderer is not None else {"README.md": b"GitOps repository\n"}


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--deploys", type=int, default=20)
    parser.add_argument("--keep", type=Path, help="work in this directory and leave it behind")
    args = parser.parse_args()

    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
        run(args, args.keep)
        return
    with tempfile.TemporaryDirectory(prefix="bench-commit-") as scratch:
        run(args, Path(scratch))


def run(args: argparse.Namespace, root: Path) -> None:
    repo = GitOpsRepo(GitSettings(), (root / "gitops.git").as_uri(), root / "work", initial_files=base_files())
    repo.ensure_remote()

    started = time.perf_counter()
    everything: dict[str, bytes] = {}
    for index in range(args.models):
        files, _ = model_files(f"model-{index:04d}", 1)
        everything.update(files)
    repo.commit(CommitRequest(files=everything, replace_dirs=(), delete_paths=(), subject=f"seed {args.models} models"))
    print(f"seeded {args.models} model overlays ({len(everything)} files) in {time.perf_counter() - started:.1f} s")
    print(f"renderer: {'renderer.render_model' if renderer is not None else 'plain files (renderer not importable)'}")

    totals, renders = [], []
    for deploy in range(args.deploys):
        name = f"model-{(deploy * 37) % args.models:04d}"
        begin = time.perf_counter()
        files, directory = model_files(name, deploy + 2)
        rendered = time.perf_counter()
        result = repo.commit(
            CommitRequest(
                files=files,
                replace_dirs=(directory,),
                delete_paths=(),
                subject=f"deploy {name} v{deploy + 2}",
                trailers={"Model-Name": name, "Model-Version": str(deploy + 2)},
            )
        )
        end = time.perf_counter()
        if not result.changed:
            raise SystemExit(f"deploy {deploy} changed nothing; the benchmark would measure the wrong path")
        totals.append((end - begin) * 1000)
        renders.append((rendered - begin) * 1000)

    mean = statistics.mean(totals)
    print(f"{args.deploys} deploys, render + commit + push per deploy (ms):")
    print(f"  mean {mean:8.1f}   p50 {percentile(totals, 0.5):8.1f}   p95 {percentile(totals, 0.95):8.1f}")
    print(f"  of which render: mean {statistics.mean(renders):.1f} ms")
    print(
        f"  target {TARGET_MS:.0f} ms: mean is {mean / TARGET_MS:.2f}x the target, "
        f"p95 is {percentile(totals, 0.95) / TARGET_MS:.2f}x ({'met' if mean <= TARGET_MS else 'NOT met'} on average)"
    )
    # Other work on the machine shows up in every git process start; say how busy it was.
    print(f"  load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
