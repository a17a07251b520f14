"""Image registries: a generic OCI v2 registry, and Amazon ECR through boto3."""

from __future__ import annotations

from control_api.adapters.registry.base import ImagePusher, ImageRegistry, PushedImage
from control_api.settings import RegistrySettings


def make_registry(settings: RegistrySettings, pusher: ImagePusher | None = None) -> ImageRegistry:
    """``pusher``: how images leave the image builder's storage (None: through the Docker Engine)."""
    if settings.kind == "ecr":
        from control_api.adapters.registry.ecr import EcrRegistry

        return EcrRegistry(settings, pusher=pusher)
    from control_api.adapters.registry.oci import OciRegistry

    return OciRegistry(settings, pusher=pusher)


__all__ = ["ImagePusher", "ImageRegistry", "PushedImage", "make_registry"]
