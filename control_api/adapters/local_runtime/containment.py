"""What keeps a model's own code in its place: the Docker network every workload sits on, and the
container options that apply its manifest's security context.

The network is a bridge with inter-container communication disabled, so one workload's containers
cannot open connections to another's container address, and with IP masquerading disabled, so the
host does not NAT their traffic to the outside. Each workload's 127.0.0.N is on the host's loopback,
which a container's own loopback hides. What stays reachable is the host through its own addresses
(the bridge's gateway among them), which exposes exactly the host services bound to all addresses
(0.0.0.0): the control API (``serve --host 127.0.0.1`` by default), the registry and the model
addresses bind loopback only, and a service bound to 0.0.0.0 on the host is visible to every model.
"""

from __future__ import annotations

from typing import Any

from control_api.adapters.local_runtime.base import ScratchVolume, SecurityContext
from control_api.errors import ServiceUnavailable, SyncFailed

MODEL_NETWORK = "mlops-models"
NETWORK_LABEL = "io.mlops.network"
NETWORK_OPTIONS = {
    "com.docker.network.bridge.enable_icc": "false",
    "com.docker.network.bridge.enable_ip_masquerade": "false",
}


def ensure_model_network(client: Any, name: str = MODEL_NETWORK) -> Any:
    """The isolated bridge network, created on first use and checked every time (a network of the same
    name made by someone else with containers able to talk to each other would undo the isolation)."""
    import docker

    found = client.networks.list(names=[name])
    network = next((n for n in found if n.name == name), None)
    if network is None:
        try:
            network = client.networks.create(
                name, driver="bridge", options=NETWORK_OPTIONS, labels={NETWORK_LABEL: "models"}
            )
        except docker.errors.APIError as exc:
            if "already exists" not in str(exc):
                raise ServiceUnavailable(
                    f"cannot create the Docker network {name}: {exc}", code="docker_unavailable"
                ) from exc
            network = client.networks.get(name)
    network.reload()
    options = network.attrs.get("Options") or {}
    wrong = {k: options.get(k) for k, v in NETWORK_OPTIONS.items() if options.get(k) != v}
    if network.attrs.get("Driver") != "bridge" or wrong:
        raise SyncFailed(
            f"the Docker network {name} exists without the isolation model containers need "
            f"(driver {network.attrs.get('Driver')}, options {wrong}); remove it so the runtime can create it",
            code="sync_failed",
        )
    return network


def effective_user(security: SecurityContext, image_user: str) -> tuple[int | None, str]:
    """The uid the container will run as (None when the image names its user, which cannot be checked
    without the image's /etc/passwd) and a description of it for messages."""
    if security.run_as_user is not None:
        return security.run_as_user, f"uid {security.run_as_user}"
    name = (image_user or "").split(":", 1)[0]
    if name == "":
        return 0, "uid 0 (the image sets no USER)"
    if name.isdigit():
        return int(name), f"uid {name} (the image's USER)"
    return None, f"user {name!r} (the image's USER)"


def check_runs_as_non_root(workload: str, security: SecurityContext, image_user: str) -> None:
    """runAsNonRoot as the kubelet enforces it: refuse to start rather than run as root."""
    if not security.run_as_non_root:
        return
    uid, described = effective_user(security, image_user)
    if uid is None:
        raise SyncFailed(
            f"{workload}: runAsNonRoot is set and the image runs as non-numeric {described}; set runAsUser",
            code="sync_failed",
        )
    if uid == 0:
        raise SyncFailed(
            f"{workload}: runAsNonRoot is set but the container would run as {described}", code="sync_failed"
        )


def container_options(
    security: SecurityContext, scratch_volumes: tuple[ScratchVolume, ...], memory_limit: int | None
) -> dict:
    """docker run options for a replica: user and groups, root filesystem, capabilities, privilege
    escalation, and emptyDir volumes as tmpfs mounts (at most their sizeLimit, else the memory limit)."""
    options: dict[str, Any] = {}
    if security.run_as_user is not None:
        options["user"] = f"{security.run_as_user}" + (
            f":{security.run_as_group}" if security.run_as_group is not None else ""
        )
    if security.supplemental_groups:
        options["group_add"] = [str(g) for g in security.supplemental_groups]
    options["read_only"] = security.read_only_root_filesystem
    if security.capabilities_drop:
        options["cap_drop"] = list(security.capabilities_drop)
    if security.capabilities_add:
        options["cap_add"] = list(security.capabilities_add)
    if not security.allow_privilege_escalation:
        options["security_opt"] = ["no-new-privileges"]
    if scratch_volumes:
        from control_api.adapters.local_runtime.quantities import memory_bytes

        options["tmpfs"] = {}
        for volume in scratch_volumes:
            size = memory_bytes(volume.size_limit) or memory_limit
            options["tmpfs"][volume.mount_path] = "rw,nosuid,nodev,mode=1777" + (f",size={size}" if size else "")
    return options


def describe(security: SecurityContext, image_user: str) -> str:
    """How a replica runs, in words, for the message of a sync that failed because of it."""
    _, user = effective_user(security, image_user)
    parts = [user + (f", gid {security.run_as_group}" if security.run_as_group is not None else "")]
    if security.read_only_root_filesystem:
        parts.append("read-only root filesystem")
    if security.capabilities_drop:
        parts.append("capabilities dropped: " + ", ".join(security.capabilities_drop))
    if security.capabilities_add:
        parts.append("capabilities added: " + ", ".join(security.capabilities_add))
    if not security.allow_privilege_escalation:
        parts.append("no privilege escalation")
    return "; ".join(parts)
