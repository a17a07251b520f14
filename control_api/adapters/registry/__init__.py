"""Image registries: a generic OCI v2 registry, and Amazon ECR through boto3."""

from __future__ import annotations

from control_api.adapters.registry.base import ImageRegistry, PushedImage
from control_api.settings import RegistrySettings


def make_registry(settings: RegistrySettings) -> ImageRegistry:
    if settings.kind == "ecr":
        from control_api.adapters.registry.ecr import EcrRegistry

        return EcrRegistry(settings)
    from control_api.adapters.registry.oci import OciRegistry

    return OciRegistry(settings)


__all__ = ["ImageRegistry", "PushedImage", "make_registry"]
