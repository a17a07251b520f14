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
from typing import Any

LOCK_FILE = "mlops-lock.txt"
# mlflow.pyfunc imports these to load every model; mlflow-skinny, which serving images install, does
# not depend on them, so MLflow's inference always lists them.
PYFUNC_IMPORTS = ("numpy", "pandas")
# Models whose loading runs the script's own code: only MLflow's inference finds what that imports.
INFERRED_FLAVORS = frozenset({"python_function"})


def _notice(message):
    sys.stderr.write("[mlops] " + message + "\n")


def _patch_mlflow(mlflow):
    service_uri = os.environ.get("MLFLOW_TRACKING_URI")
    service_experiment_id = os.environ.get("MLFLOW_EXPERIMENT_ID")
    service_run_id = os.environ.get("MLFLOW_RUN_ID")
    original_set_tracking_uri = mlflow.set_tracking_uri
    original_set_experiment = mlflow.set_experiment

    def set_tracking_uri(uri):
        if service_uri and str(uri) != service_uri:
            _notice("ignoring mlflow.set_tracking_uri(%r): this run is tracked by the deploy service" % (uri,))
            return original_set_tracking_uri(service_uri)
        return original_set_tracking_uri(uri)

    def set_experiment(experiment_name=None, experiment_id=None):
        if service_experiment_id and service_run_id and str(experiment_id or "") != service_experiment_id:
            _notice(
                "mlflow.set_experiment(%r) noted as tag 'mlops.script_experiment'; the run stays in the "
                "deploy's experiment (id %s)" % (experiment_name or experiment_id, service_experiment_id)
            )
            try:
                from mlflow.tracking import MlflowClient

                MlflowClient().set_tag(service_run_id, "mlops.script_experiment", str(experiment_name or experiment_id))
            except Exception as exc:  # the tag is informational only
                _notice("could not record the script's experiment: %s" % (exc,))
            return original_set_experiment(experiment_id=service_experiment_id)
        return original_set_experiment(experiment_name=experiment_name, experiment_id=experiment_id)

    mlflow.set_tracking_uri = set_tracking_uri
    mlflow.set_experiment = set_experiment


def _patch_mlflow_sklearn(module):
    def default_format():
        return getattr(module, "SERIALIZATION_FORMAT_CLOUDPICKLE", "cloudpickle")

    if hasattr(module, "_get_default_serialization_format"):
        module._get_default_serialization_format = default_format


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


_HOOKS = {
    "mlflow": _patch_mlflow,
    "mlflow.sklearn": _patch_mlflow_sklearn,
    # Flavors call mlflow.models.infer_pip_requirements, which mlflow.models imports from here after
    # this module ran, so the patched function is the one they get.
    "mlflow.utils.environment": _patch_mlflow_environment,
}


class _PatchingLoader(importlib.abc.Loader):
    def __init__(self, loader, hook):
        self._loader = loader
        self._hook = hook

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        try:
            self._hook(module)
        except Exception as exc:  # never break the user's import
            _notice("training hook for %s failed: %s" % (module.__name__, exc))

    def __getattr__(self, name):
        return getattr(self._loader, name)


class _PostImportFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
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


def install():
    if os.environ.get("MLOPS_SERVICE_RUN") != "1":
        return
    if not any(isinstance(f, _PostImportFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _PostImportFinder())
