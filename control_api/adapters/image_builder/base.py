"""Port: build the serving image of one registered model version."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

LogSink = Callable[[str], None]


@dataclass(frozen=True)
class ModelBundle:
    """A registered model version, downloaded to a local folder (the MLflow model directory)."""

    model_name: str
    model_version: str
    run_id: str
    model_dir: Path  # contains MLmodel, requirements.txt, the serialized model ...
    model_uri: str  # models:/NAME/VERSION, written into the image for /metadata
    mlflow_tracking_uri: str  # informational only: the image never talks to MLflow at run time
    deployment_id: str = ""
    # name -> version installed in the training environment; the image installs the same.
    training_packages: dict[str, str] | None = None


@dataclass(frozen=True)
class BuiltImage:
    reference: str  # local tag of the model image, e.g. mlops/demo:3-1a2b3c4d
    image_id: str  # sha256:... of the local image
    runtime_reference: str  # tag of the cached runtime image it is built on
    runtime_cache_hit: bool  # True when the runtime layer was reused, not rebuilt
    log: list[str] = field(default_factory=list)


class ImageBuilder(Protocol):
    def build(self, bundle: ModelBundle, on_log: LogSink) -> BuiltImage: ...

    def ping(self) -> None:
        """Raise ServiceUnavailable when the engine does not answer."""
