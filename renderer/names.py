"""Kubernetes naming rules and the names the renderer derives from a model."""

from __future__ import annotations

import re

DNS_1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
C_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SECRET_KEY = re.compile(r"^[-._A-Za-z0-9]+$")

# Where the shared base and the per-model overlays live inside the GitOps repository.
BASE_DIR = "base/model-server"
APPS_DIR = "apps"
APPLICATIONS_DIR = "argocd-apps"
# Name of every resource in the shared base; overlays rename them to the model name.
BASE_RESOURCE_NAME = "model-server"
BASE_IMAGE_NAME = "model-server"
CONTAINER_NAME = "server"


def check_dns_label(value: str, what: str = "name") -> str:
    if len(value) > 63 or not DNS_1123_LABEL.match(value):
        raise ValueError(
            f"{what} {value!r} must be a DNS-1123 label: at most 63 lower-case letters, digits or '-', "
            "starting and ending with a letter or digit"
        )
    return value


def check_dns_subdomain(value: str, what: str = "name") -> str:
    if len(value) > 253 or not DNS_1123_SUBDOMAIN.match(value):
        raise ValueError(f"{what} {value!r} must be a DNS-1123 subdomain (lower-case letters, digits, '-', '.')")
    return value


def check_label_value(value: str, what: str = "label value") -> str:
    if len(value) > 63 or not LABEL_VALUE.match(value):
        raise ValueError(
            f"{what} {value!r} must be a Kubernetes label value: at most 63 letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit"
        )
    return value


def check_label_key(key: str) -> str:
    prefix, _, name = key.rpartition("/")
    if prefix:
        check_dns_subdomain(prefix, "label key prefix")
    if len(name) > 63 or not LABEL_NAME.match(name):
        raise ValueError(f"label key {key!r} is not a valid Kubernetes label key")
    return key


def model_dir(namespace: str, endpoint: str) -> str:
    """Folder of one endpoint's overlay in the GitOps repository. A model's default endpoint is
    named after the model, so a model with one endpoint has the folder ``apps/<ns>/<model>``."""
    check_dns_label(namespace, "namespace")
    check_dns_label(endpoint, "endpoint")
    return f"{APPS_DIR}/{namespace}/{endpoint}"


def workload_name(endpoint: str) -> str:
    """Name of the endpoint's Deployment, Service, HPA and PDB after kustomize build."""
    return endpoint


def application_name(namespace: str, endpoint: str) -> str:
    """Argo CD Application name; the namespace is part of it because one Argo CD serves many."""
    check_dns_label(namespace, "namespace")
    check_dns_label(endpoint, "endpoint")
    return f"{namespace}--{endpoint}"


def application_file(app_name: str) -> str:
    return f"{APPLICATIONS_DIR}/{app_name}.yaml"
