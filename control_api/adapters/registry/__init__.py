"""Image registries: any OCI v2 registry (``oci``) or Amazon ECR (``ecr``)."""

from __future__ import annotations

from collections.abc import Callable

from control_api.adapters.registry.base import ImagePusher, ImageRegistry, PushedImage
from control_api.settings import RegistrySettings


def _oci_registry(settings: RegistrySettings, pusher: ImagePusher | None) -> ImageRegistry:
    from control_api.adapters.registry.oci import OciRegistry

    return OciRegistry(settings, pusher=pusher)


def _ecr_registry(settings: RegistrySettings, pusher: ImagePusher | None) -> ImageRegistry:
    # Imported on use: boto3 is loaded only by services that push to ECR.
    from control_api.adapters.registry.ecr import EcrRegistry

    return EcrRegistry(settings, pusher=pusher)


# Registry kinds: one line per kind, its constructor from the registry settings and the image pusher.
REGISTRY_KINDS: dict[str, Callable[[RegistrySettings, ImagePusher | None], ImageRegistry]] = {
    "oci": _oci_registry,
    "ecr": _ecr_registry,
}


def make_registry(settings: RegistrySettings, pusher: ImagePusher | None = None) -> ImageRegistry:
    """``pusher``: how images leave the image builder's storage (None: through the Docker Engine)."""
    return REGISTRY_KINDS[settings.kind](settings, pusher)


__all__ = ["REGISTRY_KINDS", "ImagePusher", "ImageRegistry", "PushedImage", "make_registry"]
