"""Image registries: a generic OCI v2 registry, and Amazon ECR through boto3."""

from __future__ import annotations

from collections.abc import Callable

from control_api.adapters.registry.base import ImageRegistry, PushedImage
from control_api.settings import RegistrySettings


def _oci_registry(settings: RegistrySettings) -> ImageRegistry:
    from control_api.adapters.registry.oci import OciRegistry

    return OciRegistry(settings)


def _ecr_registry(settings: RegistrySettings) -> ImageRegistry:
    # Imported on use: boto3 is loaded only by services that push to ECR.
    from control_api.adapters.registry.ecr import EcrRegistry

    return EcrRegistry(settings)


# Registry kinds: one line per kind, its constructor from the registry settings.
REGISTRY_KINDS: dict[str, Callable[[RegistrySettings], ImageRegistry]] = {
    "oci": _oci_registry,
    "ecr": _ecr_registry,
}


def make_registry(settings: RegistrySettings) -> ImageRegistry:
    return REGISTRY_KINDS[settings.kind](settings)


__all__ = ["REGISTRY_KINDS", "ImageRegistry", "PushedImage", "make_registry"]
