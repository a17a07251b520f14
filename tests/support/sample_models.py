"""Small real models for the serving and image builder tests: trained here, logged with MLflow to a
temporary SQLite store, registered, and downloaded the way the control service downloads them."""

from __future__ import annotations

import warnings
from pathlib import Path

MODEL_PACKAGES = ("mlflow", "cloudpickle", "numpy", "pandas", "scikit-learn", "scipy")


def pinned_requirements() -> list[str]:
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in MODEL_PACKAGES]


def use_store(workdir: Path, experiment_name: str) -> None:
    """Point MLflow (process-global state) at a SQLite store in ``workdir`` and an experiment in it."""
    import mlflow

    tracking_uri = f"sqlite:///{workdir / 'mlflow.db'}"
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    if mlflow.get_experiment_by_name(experiment_name) is None:
        # Artifacts beside the database, not in ./mlruns of whatever directory pytest runs from.
        mlflow.create_experiment(experiment_name, artifact_location=(workdir / "artifacts").as_uri())
    mlflow.set_experiment(experiment_name)


def log_iris_model(workdir: Path, kind: str = "logistic", model_name: str = "iris") -> Path:
    """Train ``kind`` ("logistic", "pipeline" or "forest") on iris, register it, and return the downloaded model dir."""
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
    elif kind == "pipeline":
        # Selects columns by name: refuses a bare numpy array, so the server must feed it a DataFrame.
        from sklearn.compose import ColumnTransformer
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        named = ColumnTransformer([("scaled", StandardScaler(), list(features.columns))])
        model = make_pipeline(named, LogisticRegression(max_iter=500)).fit(features, target)
    else:
        model = RandomForestClassifier(n_estimators=10, random_state=0).fit(features, target)

    use_store(workdir, f"serving-tests-{model_name}")
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


def log_custom_pyfunc_model(workdir: Path) -> Path:
    """A python_function-only model (no sklearn flavor): served through mlflow.pyfunc, not the fast path."""
    import mlflow
    import mlflow.pyfunc
    import pandas as pd
    from mlflow.models import infer_signature

    class PetalRatio(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return (model_input["petal length (cm)"] / model_input["petal width (cm)"]).round(6)

    example = pd.DataFrame(
        [[5.1, 3.5, 1.4, 0.2]],
        columns=["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"],
    )
    use_store(workdir, "serving-tests-custom")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with mlflow.start_run():
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=PetalRatio(),
                input_example=example,
                signature=infer_signature(example, PetalRatio().predict(None, example)),
                pip_requirements=pinned_requirements(),
            )
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=info.model_uri, dst_path=str(workdir / "custom")))
