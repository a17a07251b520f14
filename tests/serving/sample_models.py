"""Small real models for the serving and image builder tests: trained here, logged with MLflow to a
temporary SQLite store, registered, and downloaded the way the control service downloads them."""

from __future__ import annotations

import warnings
from pathlib import Path


MODEL_PACKAGES = ("mlflow", "cloudpickle", "numpy", "pandas", "scikit-learn", "scipy")


def pinned_requirements() -> list[str]:
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in MODEL_PACKAGES]


def log_iris_model(workdir: Path, kind: str = "logistic", model_name: str = "iris") -> Path:
    """Train ``kind`` ("logistic" or "forest") on iris, register it, and return the downloaded model dir."""
    import mlflow
    import mlflow.sklearn
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    frame = load_iris(as_frame=True).frame
    features = frame.drop(columns="target")
    target = frame["target"]
    if kind == "logistic":
        model = LogisticRegression(max_iter=500).fit(features, target)
    else:
        model = RandomForestClassifier(n_estimators=10, random_state=0).fit(features, target)

    tracking_uri = f"sqlite:///{workdir / 'mlflow.db'}"
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    experiment_name = f"serving-tests-{model_name}"
    if mlflow.get_experiment_by_name(experiment_name) is None:
        # Artifacts beside the database, not in ./mlruns of whatever directory pytest runs from.
        mlflow.create_experiment(experiment_name, artifact_location=(workdir / "artifacts").as_uri())
    mlflow.set_experiment(experiment_name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with mlflow.start_run():
            info = mlflow.sklearn.log_model(
                model,
                name="model",
                input_example=features.head(3),
                serialization_format="cloudpickle",
                registered_model_name=model_name,
                # What MLflow would infer, without its slow import-capturing subprocess.
                pip_requirements=pinned_requirements(),
            )
    target_dir = workdir / f"{model_name}-{info.registered_model_version}"
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=info.model_uri, dst_path=str(target_dir)))
