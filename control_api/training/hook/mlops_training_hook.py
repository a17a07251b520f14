"""Loaded at interpreter start in every training environment (through ``mlops_training_hook.pth``).

It keeps scripts written the usual way working when the control service runs them:

* ``mlflow.set_tracking_uri(...)`` in the script would point away from the store where the service
  created the run it hands over in ``MLFLOW_RUN_ID``; the service's URI wins and a notice is printed.
* ``mlflow.set_experiment("x")`` would make ``start_run()`` refuse the handed-over run (it lives in the
  experiment the deploy named); the requested name is recorded as a run tag instead.
* MLflow 3 saves scikit-learn models with skops by default, which refuses common estimators such as
  RandomForest unless the script lists "trusted types". When the script does not choose a format, the
  hook restores MLflow 2's default (cloudpickle), which loads every estimator.
* ``log_model`` without ``pip_requirements`` or ``conda_env`` infers the model's requirements by
  loading it in a new interpreter (seconds: MLflow and the framework imported once more). The service
  built this environment and knows its exact versions (``mlops-lock.txt`` beside ``pyvenv.cfg``), so
  the hook answers MLflow's inference with them instead, plus the flavor's own defaults and what
  ``mlflow.pyfunc`` imports to load any model. Requirements a script chooses are MLflow's business
  and stay untouched (``extra_pip_requirements`` are added to these, as to inferred ones). Custom
  ``python_function`` models run arbitrary code, so MLflow still infers theirs.

Nothing happens unless the service started the interpreter (``MLOPS_SERVICE_RUN=1``).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.abc
import os
import re
import sys
import types
from importlib import metadata
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # only for the type checker: the environment's interpreter imports nothing more here
    from collections.abc import Callable, Sequence
    from importlib.machinery import ModuleSpec

LOCK_FILE = "mlops-lock.txt"
# mlflow.pyfunc imports these to load every model; mlflow-skinny, which serving images install, does
# not depend on them, so MLflow's inference always lists them.
PYFUNC_IMPORTS = ("numpy", "pandas")
# Models whose loading runs the script's own code: only MLflow's inference finds what that imports.
INFERRED_FLAVORS = frozenset({"python_function"})


def _notice(message: str) -> None:
    sys.stderr.write("[mlops] " + message + "\n")


def _patch_mlflow(mlflow: types.ModuleType) -> None:
    service_uri = os.environ.get("MLFLOW_TRACKING_URI")
    service_experiment_id = os.environ.get("MLFLOW_EXPERIMENT_ID")
    service_run_id = os.environ.get("MLFLOW_RUN_ID")
    original_set_tracking_uri = mlflow.set_tracking_uri
    original_set_experiment = mlflow.set_experiment

    def set_tracking_uri(uri: Any) -> Any:
        if service_uri and str(uri) != service_uri:
            _notice(f"ignoring mlflow.set_tracking_uri({uri!r}): this run is tracked by the deploy service")
            return original_set_tracking_uri(service_uri)
        return original_set_tracking_uri(uri)

    def set_experiment(experiment_name: str | None = None, experiment_id: str | None = None) -> Any:
        if service_experiment_id and service_run_id and str(experiment_id or "") != service_experiment_id:
            _notice(
                f"mlflow.set_experiment({experiment_name or experiment_id!r}) noted as tag 'mlops.script_experiment'; "
                f"the run stays in the deploy's experiment (id {service_experiment_id})"
            )
            try:
                from mlflow.tracking import MlflowClient

                MlflowClient().set_tag(service_run_id, "mlops.script_experiment", str(experiment_name or experiment_id))
            except Exception as exc:  # the tag is informational only
                _notice(f"could not record the script's experiment: {exc}")
            return original_set_experiment(experiment_id=service_experiment_id)
        return original_set_experiment(experiment_name=experiment_name, experiment_id=experiment_id)

    # setattr: the type checker does not know MLflow's module attributes.
    setattr(mlflow, "set_tracking_uri", set_tracking_uri)  # noqa: B010
    setattr(mlflow, "set_experiment", set_experiment)  # noqa: B010


def _patch_mlflow_sklearn(module: types.ModuleType) -> None:
    def default_format() -> str:
        return getattr(module, "SERIALIZATION_FORMAT_CLOUDPICKLE", "cloudpickle")

    if hasattr(module, "_get_default_serialization_format"):
        setattr(module, "_get_default_serialization_format", default_format)  # noqa: B010


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(line: str) -> str | None:
    found = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", line)
    return _canonical(found.group(1)) if found else None


def locked_requirements(prefix: str | None = None) -> list[str] | None:
    """The environment's lock (``name==version`` lines) with mlflow.pyfunc's own imports pinned to
    their installed versions; None when the service wrote no lock (an environment it did not build)."""
    try:
        with open(os.path.join(prefix or sys.prefix, LOCK_FILE)) as handle:
            lines = [line.strip() for line in handle if line.strip() and not line.startswith("#")]
    except OSError:
        return None
    named = {_requirement_name(line) for line in lines}
    for name in PYFUNC_IMPORTS:
        if name not in named:
            with contextlib.suppress(metadata.PackageNotFoundError):
                lines.append(f"{name}=={metadata.version(name)}")
    return lines


def model_requirements(locked: list[str], fallback: list[str] | None) -> list[str]:
    """The lock, plus the flavor's default requirements (``fallback``: the framework and, for pickles,
    cloudpickle, pinned by MLflow to their installed versions) for packages the lock does not name."""
    chosen = {_requirement_name(line): line for line in fallback or []}
    chosen.update({_requirement_name(line): line for line in locked})
    return sorted(chosen.values(), key=str.lower)


def _patch_mlflow_environment(module: types.ModuleType) -> None:
    locked = locked_requirements()
    if locked is None:
        return
    infer = getattr(module, "infer_pip_requirements")  # noqa: B009 - mypy does not know MLflow's module

    @functools.wraps(infer)
    def infer_pip_requirements(
        model_uri: str, flavor: str, fallback: list[str] | None = None, *args: Any, **kwargs: Any
    ) -> list[str]:
        if flavor in INFERRED_FLAVORS:
            return infer(model_uri, flavor, fallback, *args, **kwargs)
        _notice("log_model: the model's requirements are this environment's exact versions (not inferred)")
        return model_requirements(locked, fallback)

    setattr(module, "infer_pip_requirements", infer_pip_requirements)  # noqa: B010


_HOOKS: dict[str, Callable[[types.ModuleType], None]] = {
    "mlflow": _patch_mlflow,
    "mlflow.sklearn": _patch_mlflow_sklearn,
    # Flavors call mlflow.models.infer_pip_requirements, which mlflow.models imports from here after
    # this module ran, so the patched function is the one they get.
    "mlflow.utils.environment": _patch_mlflow_environment,
}


class _PatchingLoader(importlib.abc.Loader):
    def __init__(self, loader: importlib.abc.Loader, hook: Callable[[types.ModuleType], None]) -> None:
        self._loader = loader
        self._hook = hook

    def create_module(self, spec: ModuleSpec) -> types.ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        self._loader.exec_module(module)
        try:
            self._hook(module)
        except Exception as exc:  # never break the user's import
            _notice(f"training hook for {module.__name__} failed: {exc}")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


class _PostImportFinder(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> ModuleSpec | None:
        hook = _HOOKS.get(fullname)
        if hook is None:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _PatchingLoader(spec.loader, hook)
                return spec
        return None


def install() -> None:
    if os.environ.get("MLOPS_SERVICE_RUN") != "1":
        return
    if not any(isinstance(f, _PostImportFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _PostImportFinder())
