"""Image sizes: our runtime + model images vs `mlflow models build-docker` for the same model.

    .venv/bin/python bench/bench_image_size.py [--skip-mlflow]

1. Builds our images for an iris LogisticRegression with ``DockerImageBuilder`` (base image from
   MLOPS_BUILD__BASE_IMAGE, default python:3.11-slim) and prints base, runtime and model sizes and
   the model layer's own size (what a warm deploy adds and pushes).
2. Tries ``mlflow models build-docker`` on the same model. It wants ``python:<model's python>-slim``
   from Docker Hub and installs with the base's pip; when that cannot work here, the reason is
   printed, and the Dockerfile MLflow generates is built on our base image instead (FROM swapped,
   pip allowed into the PEP-668 system Python), which is the nearest like-for-like figure.
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
MLFLOW_TAG = "mlops-bench/mlflow-build-docker:latest"
MLFLOW_ON_OUR_BASE_TAG = "mlops-bench/mlflow-dockerfile-on-base:latest"


def mb(size: int) -> str:
    return f"{size / 1e6:7.1f} MB"


def log_model(workdir: Path) -> Path:
    import mlflow
    import mlflow.sklearn
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    frame = load_iris(as_frame=True).frame
    features = frame.drop(columns="target")
    mlflow.set_tracking_uri(f"sqlite:///{workdir / 'mlflow.db'}")
    mlflow.create_experiment("bench-size", artifact_location=(workdir / "artifacts").as_uri())
    mlflow.set_experiment("bench-size")
    with warnings.catch_warnings(), mlflow.start_run():
        warnings.simplefilter("ignore")
        info = mlflow.sklearn.log_model(
            LogisticRegression(max_iter=500).fit(features, frame["target"]),
            name="model",
            input_example=features.head(2),
            serialization_format="cloudpickle",
        )
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=info.model_uri, dst_path=str(workdir / "model")))


def our_images(client, model_dir: Path, base_image: str) -> None:
    from control_api.adapters.image_builder.base import ModelBundle
    from control_api.adapters.image_builder.docker_engine import DockerImageBuilder
    from control_api.settings import BuildSettings

    builder = DockerImageBuilder(BuildSettings(base_image=base_image))
    built = builder.build(
        ModelBundle("bench-size", "1", "bench", model_dir, "models:/bench-size/1", "", "bench"), lambda line: None
    )
    base = client.images.get(base_image)
    runtime = client.images.get(built.runtime_reference)
    model = client.images.get(built.reference)
    print(f"base     {base_image:45} {mb(base.attrs['Size'])}")
    print(f"runtime  {built.runtime_reference:45} {mb(runtime.attrs['Size'])}  (cache hit: {built.runtime_cache_hit})")
    model_layer = mb(model.attrs["Size"] - runtime.attrs["Size"])
    print(f"model    {built.reference:45} {mb(model.attrs['Size'])}  (model layer {model_layer})")
    client.images.remove(model.id, force=True)


def mlflow_build_docker(model_dir: Path) -> tuple[bool, str]:
    mlflow_cli = str(Path(sys.executable).parent / "mlflow")
    try:
        result = subprocess.run(
            [mlflow_cli, "models", "build-docker", "-m", str(model_dir), "-n", MLFLOW_TAG, "--env-manager", "local"],
            capture_output=True,
            text=True,
            timeout=1200,
        )
    except subprocess.TimeoutExpired:
        return False, "timed out after 20 minutes"
    output = (result.stdout + result.stderr).strip().splitlines()
    if result.returncode == 0:
        return True, ""
    # The docker CLI's own lines (the FROM it wanted and why it failed) say more than MLflow's traceback.
    reasons = [line for line in output if line.startswith(("Step ", "Get ", "Error", "error", "pull access"))]
    return False, "\n    ".join((reasons or output)[-4:])


def mlflow_dockerfile_on_base(client, model_dir: Path, base_image: str, workdir: Path) -> int:
    mlflow_cli = str(Path(sys.executable).parent / "mlflow")
    target = workdir / "mlflow-dockerfile"
    subprocess.run(
        [
            mlflow_cli,
            "models",
            "generate-dockerfile",
            "-m",
            str(model_dir),
            "-d",
            str(target),
            "--env-manager",
            "local",
        ],
        check=True,
        capture_output=True,
    )
    lines = (target / "Dockerfile").read_text().splitlines()
    patched = []
    for line in lines:
        if line.startswith("FROM "):
            patched += [
                f"FROM {base_image}",
                f"ENV PIP_BREAK_SYSTEM_PACKAGES=1 PIP_CERT={CA_BUNDLE} REQUESTS_CA_BUNDLE={CA_BUNDLE} "
                f"SSL_CERT_FILE={CA_BUNDLE}",
            ]
        else:
            patched.append(line)
    (target / "Dockerfile").write_text("\n".join(patched) + "\n")
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        tar.add(str(target), arcname=".")
    archive.seek(0)
    for chunk in client.api.build(
        fileobj=archive,
        custom_context=True,
        tag=MLFLOW_ON_OUR_BASE_TAG,
        rm=True,
        forcerm=True,
        decode=True,
        network_mode="host",
        pull=False,
    ):
        if "error" in chunk:
            raise RuntimeError(chunk["error"])
    return client.images.get(MLFLOW_ON_OUR_BASE_TAG).attrs["Size"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-mlflow", action="store_true", help="only measure our images")
    args = parser.parse_args()

    import docker

    client = docker.from_env(timeout=1200)
    base_image = os.environ.get("MLOPS_BUILD__BASE_IMAGE", "python:3.11-slim")
    with tempfile.TemporaryDirectory(prefix="bench-size-") as tmp:
        model_dir = log_model(Path(tmp))
        our_images(client, model_dir, base_image)
        if args.skip_mlflow:
            return
        built, reason = mlflow_build_docker(model_dir)
        if built:
            built_size = mb(client.images.get(MLFLOW_TAG).attrs["Size"])
            print(f"mlflow   {MLFLOW_TAG:45} {built_size}  (mlflow models build-docker)")
            return
        print(f"mlflow models build-docker could not build here:\n    {reason}")
        try:
            size = mlflow_dockerfile_on_base(client, model_dir, base_image, Path(tmp))
            print(
                f"mlflow   {MLFLOW_ON_OUR_BASE_TAG:45} {mb(size)}  (MLflow's generated Dockerfile, FROM {base_image})"
            )
        except Exception as exc:
            print(f"MLflow's generated Dockerfile on {base_image} did not build either: {str(exc)[:500]}")


if __name__ == "__main__":
    main()
