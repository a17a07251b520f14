"""Pure rendering: a validated deployment spec in, Kustomize files (path -> bytes) out.

No I/O besides reading the package's own templates. Same spec, same bytes.
"""

from renderer.application import ApplicationSpec, application_manifest, render_application
from renderer.canary import ReplicaSplit, canary_name, render_canary, render_canary_base, replica_split
from renderer.credentials import check_env_value
from renderer.errors import RenderError
from renderer.model import render_base, render_model
from renderer.names import application_file, application_name, model_dir, workload_name
from renderer.spec import Autoscaling, DeploymentSpec, DisruptionBudget, SecretRef

__all__ = [
    "ApplicationSpec",
    "Autoscaling",
    "DeploymentSpec",
    "DisruptionBudget",
    "RenderError",
    "ReplicaSplit",
    "SecretRef",
    "application_file",
    "application_manifest",
    "application_name",
    "canary_name",
    "check_env_value",
    "model_dir",
    "render_application",
    "render_base",
    "render_canary",
    "render_canary_base",
    "render_model",
    "replica_split",
    "workload_name",
]
