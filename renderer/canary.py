"""A canary beside an endpoint's stable version: the stable overlay as git holds it, plus a ``canary/``
overlay that the stable ``kustomization.yaml`` lists as one more resource.

The stable files are kept byte for byte but for that one line, so a canary step's diff shows only
the canary; removing the folder and the line (an abort) gives the stable commit's bytes back.

Without a traffic router the Service spreads connections over the ready pods of both Deployments,
so the weight is a replica ratio: the stable Deployment keeps all its replicas (its capacity does not
shrink while a new version is on trial) and the canary gets ``round(stable * w / (100 - w))``, at
least one. Small Deployments cannot express small weights (one stable replica makes any weight below
100 a 1:1 split), which is why each step records the weight it asked for and the split it got.
"""

from __future__ import annotations

from dataclasses import dataclass

from renderer import names
from renderer.errors import RenderError
from renderer.spec import DeploymentSpec
from renderer.templating import parse_single_document, read_static, render_template

CANARY_DIR = "canary"
CANARY_BASE_DIR = f"{names.BASE_DIR}-canary"
CANARY_BASE_RESOURCE_NAME = f"{names.BASE_RESOURCE_NAME}-canary"
TRACK_LABEL = "mlops.io/track"
# The stable overlay's only resource line, as overlay/kustomization.yaml.j2 writes it.
_BASE_RESOURCE_LINE = f"resources:\n  - ../../../{names.BASE_DIR}\n"


def render_canary_base() -> dict[str, bytes]:
    """The shared base's Deployment under the name ``model-server-canary``, for canary overlays.

    Derived from the shared base's own bytes, so the two never drift apart: only the Deployment's
    ``metadata.name`` differs, which is checked on the parsed documents.
    """
    deployment = read_static(f"base/{names.BASE_RESOURCE_NAME}/deployment.yaml")
    original = f"metadata:\n  name: {names.BASE_RESOURCE_NAME}\n"
    renamed = deployment.decode("utf-8").replace(original, f"metadata:\n  name: {CANARY_BASE_RESOURCE_NAME}\n", 1)
    path = f"{CANARY_BASE_DIR}/deployment.yaml"
    parsed = parse_single_document(path, renamed.encode("utf-8"))
    expected = parse_single_document(path, deployment)
    expected["metadata"]["name"] = CANARY_BASE_RESOURCE_NAME
    if parsed != expected:
        raise RenderError("base", "the shared base's Deployment could not be renamed for canaries")
    kustomization = render_template("canary/base-kustomization.yaml.j2")
    parse_single_document(f"{CANARY_BASE_DIR}/kustomization.yaml", kustomization)
    return {
        f"{CANARY_BASE_DIR}/deployment.yaml": renamed.encode("utf-8"),
        f"{CANARY_BASE_DIR}/kustomization.yaml": kustomization,
    }


def canary_name(endpoint: str) -> str:
    """The canary Deployment's name (a DNS subdomain, so it may be longer than the endpoint's label)."""
    return f"{endpoint}-canary"


@dataclass(frozen=True)
class ReplicaSplit:
    """The replicas a weight becomes, and the share of connections that gives the canary."""

    weight: int  # percent asked for
    stable_replicas: int
    canary_replicas: int

    @property
    def canary_share(self) -> float:
        return self.canary_replicas / (self.stable_replicas + self.canary_replicas)

    def describe(self) -> str:
        return (
            f"weight {self.weight}% asked; by replica ratio {self.canary_replicas} canary : "
            f"{self.stable_replicas} stable = {self.canary_share:.0%} of connections"
        )


def replica_split(stable_replicas: int, weight: int) -> ReplicaSplit:
    if not 0 < weight < 100:
        raise RenderError("weight", f"a canary step's weight must be between 1 and 99 percent, not {weight}")
    canary = max(1, round(stable_replicas * weight / (100 - weight)))
    return ReplicaSplit(weight, stable_replicas, canary)


def stable_replicas(stable_files: dict[str, bytes], namespace: str, endpoint: str) -> int:
    """The stable Deployment's fixed replica count, read from its ``deployment-patch.yaml``."""
    path = f"{names.model_dir(namespace, endpoint)}/deployment-patch.yaml"
    if path not in stable_files:
        raise RenderError("endpoint", f"{path} is not in the endpoint's stable files")
    replicas = (parse_single_document(path, stable_files[path]).get("spec") or {}).get("replicas")
    if not isinstance(replicas, int):
        raise RenderError(
            "strategy",
            "the endpoint's stable version is autoscaled, so a weight cannot be set by replica ratio; "
            "deploy it with fixed replicas first",
        )
    return replicas


def render_canary(
    stable_files: dict[str, bytes], canary: DeploymentSpec, weight: int
) -> tuple[dict[str, bytes], ReplicaSplit]:
    """The endpoint's files with ``canary`` running beside the stable version at ``weight`` percent:
    the complete content of the endpoint's folder, like ``render_model``'s. Write
    ``render_canary_base()`` beside it."""
    directory = names.model_dir(canary.namespace, canary.endpoint_name)
    split = replica_split(stable_replicas(stable_files, canary.namespace, canary.endpoint_name), weight)
    stable = {p: c for p, c in stable_files.items() if not p.startswith(f"{directory}/{CANARY_DIR}/")}
    kustomization_path = f"{directory}/kustomization.yaml"
    text = stable[kustomization_path].decode("utf-8")
    if text.count(_BASE_RESOURCE_LINE) != 1:
        raise RenderError(
            "endpoint", f"{kustomization_path} was not written by this renderer; a canary cannot be added to it"
        )
    with_canary = text.replace(_BASE_RESOURCE_LINE, f"{_BASE_RESOURCE_LINE}  - {CANARY_DIR}\n")
    before = parse_single_document(kustomization_path, stable[kustomization_path])
    after = parse_single_document(kustomization_path, with_canary.encode("utf-8"))
    if after != {**before, "resources": [*before["resources"], CANARY_DIR]}:
        raise RenderError("endpoint", f"{kustomization_path}: adding the canary changed more than its resources")

    sized = canary.model_copy(update={"replicas": split.canary_replicas, "autoscaling": None})
    common = {
        "spec": sized,
        "base_name": CANARY_BASE_RESOURCE_NAME,
        "base_image_name": names.BASE_IMAGE_NAME,
        "container_name": names.CONTAINER_NAME,
    }
    canary_files = {
        "kustomization.yaml": render_template(
            "canary/kustomization.yaml.j2",
            base_dir=CANARY_BASE_DIR,
            weight=weight,
            canary_name=canary_name(canary.endpoint_name),
            split_comment=f"Traffic: {split.describe()}.",
            **common,
        ),
        "deployment-patch.yaml": render_template(
            "overlay/deployment-patch.yaml.j2",
            env=sorted(canary.env.items()),
            secret_env=sorted(canary.secret_env.items()),
            **common,
        ),
    }
    rendered = {**stable, kustomization_path: with_canary.encode("utf-8")}
    for name, content in canary_files.items():
        path = f"{directory}/{CANARY_DIR}/{name}"
        parse_single_document(path, content)
        rendered[path] = content
    return dict(sorted(rendered.items())), split
