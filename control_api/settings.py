"""Settings for the control service.

Every value comes from the environment (prefix ``MLOPS_``, nested models with ``__``, for example
``MLOPS_MLFLOW__TRACKING_URI``) or from the defaults below. With no configuration at all the
service runs on one machine: MLflow on SQLite, a bare git repo as the GitOps remote, a local OCI
registry on 127.0.0.1:5000 and the ``local`` target, all stored under ``MLOPS_DATA_DIR``.

Settings objects are created by the caller and passed down (no module-level singleton), so tests
can run several services with different settings in one process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class MlflowSettings(BaseModel):
    tracking_uri: str | None = Field(
        default=None,
        description="MLflow tracking URI. Default: SQLite at DATA_DIR/mlflow/mlflow.db with local artifacts.",
    )
    registry_uri: str | None = Field(default=None, description="MLflow model registry URI. Default: the tracking URI.")
    artifact_root: str | None = Field(
        default=None,
        description=(
            "Artifact root for experiments the service creates on the embedded store. Default: "
            "DATA_DIR/mlflow/artifacts."
        ),
    )


class JournalSettings(BaseModel):
    url: str | None = Field(
        default=None,
        description=(
            "SQLAlchemy URL of the deployment journal. Default: SQLite at DATA_DIR/journal.db. Use "
            "postgresql+psycopg://... for several replicas."
        ),
    )


class KubernetesTrainingSettings(BaseModel):
    namespace: str = Field(default="mlops-training", description="kubernetes backend: namespace of the training Jobs.")
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(
        default="IfNotPresent", description="kubernetes backend: imagePullPolicy of the training container."
    )
    image_pull_secrets: list[str] = Field(
        default_factory=list, description="kubernetes backend: Secrets the pod pulls the training image with."
    )
    node_selector: dict[str, str] = Field(
        default_factory=dict, description="kubernetes backend: nodeSelector of training pods (e.g. a GPU pool)."
    )
    tolerations: list[dict[str, str | int]] = Field(
        default_factory=list,
        description=(
            "kubernetes backend: tolerations of training pods, as in a pod spec "
            "(key, operator, value, effect, tolerationSeconds)."
        ),
    )
    kueue_queue: str | None = Field(
        default=None, description="kubernetes backend: Kueue LocalQueue (label kueue.x-k8s.io/queue-name) of the Jobs."
    )
    run_as_user: int = Field(default=65534, ge=1, description="kubernetes backend: non-root uid of the training pod.")
    default_cpu: str = Field(default="1", description="kubernetes backend: CPU of a training that asks for none.")
    default_memory: str = Field(
        default="2Gi", description="kubernetes backend: memory of a training that asks for none."
    )
    max_cpu: str = Field(default="8", description="kubernetes backend: most CPU one training may ask for.")
    max_memory: str = Field(default="32Gi", description="kubernetes backend: most memory one training may ask for.")
    max_gpu: int = Field(
        default=1, ge=0, description="kubernetes backend: most GPUs (nvidia.com/gpu) one training may ask for."
    )
    max_timeout_seconds: int = Field(
        default=6 * 3600,
        ge=1,
        description="kubernetes backend: longest timeout (activeDeadlineSeconds) one training may ask for.",
    )
    ttl_seconds_after_finished: int = Field(
        default=3600, ge=0, description="kubernetes backend: finished Jobs are deleted by Kubernetes this long after."
    )
    unschedulable_grace_seconds: float = Field(
        default=300,
        ge=0,
        description=(
            "kubernetes backend: how long a training pod may stay unschedulable (e.g. while a cluster "
            "autoscaler adds a node) before the training fails."
        ),
    )
    request_timeout_seconds: float = Field(default=30, gt=0, description="kubernetes backend: timeout of one API call.")


class TrainingSettings(BaseModel):
    backend: Literal["local", "kubernetes"] = Field(
        default="local",
        description=(
            "local: a sandboxed subprocess of the control service. "
            "kubernetes: a Job per training (needs a remote MLflow server)."
        ),
    )
    kubernetes: KubernetesTrainingSettings = Field(default_factory=KubernetesTrainingSettings)
    timeout_seconds: float = Field(default=1800, gt=0, description="Wall-clock limit of one training run.")
    install_timeout_seconds: float = Field(
        default=900, gt=0, description="Limit for installing a script's requirements into its virtual environment."
    )
    python: str = Field(default="3.11", description="Python version (or interpreter path) for training environments.")
    venv_cache_dir: Path | None = Field(
        default=None, description="Where requirement-hash keyed virtual environments are kept. Default: DATA_DIR/venvs."
    )
    log_tail_lines: int = Field(default=40, ge=1, description="How many log lines the journal keeps for a step.")
    max_memory_bytes: int = Field(
        default=16 * 2**30, ge=2**28, description="Address-space limit (RLIMIT_AS) of the training process."
    )
    max_file_bytes: int = Field(
        default=4 * 2**30, ge=2**20, description="Largest file a training script may write (RLIMIT_FSIZE)."
    )
    workdir_bytes: int = Field(
        default=2 * 2**30,
        ge=2**20,
        description=(
            "Size of a sandboxed script's working folder: a tmpfs (RAM or swap, used only as written) that vanishes "
            "when the training ends. Without the sandbox the folder is on disk and removed after the training."
        ),
    )
    max_open_files: int = Field(
        default=4096, ge=64, description="Open file limit (RLIMIT_NOFILE) of the training process."
    )
    max_processes: int = Field(
        default=512,
        ge=16,
        description=(
            "Processes and threads a sandboxed script may run at once (RLIMIT_NPROC, counted for its own uid). Not "
            "applied without the sandbox: the limit counts per uid and does not bind root."
        ),
    )
    sandbox: Literal["auto", "required", "off"] = Field(
        default="auto",
        description=(
            "auto: sandbox the script (own uid, PID/mount/IPC/network namespaces, no service files) when the service "
            "runs as root and unshare works, else fall back to rlimits and a process group and say so in the step "
            "log and /mlops/status. required: refuse to train without it. off: never."
        ),
    )
    sandbox_network: Literal["auto", "none", "host"] = Field(
        default="auto",
        description=(
            "Network of a sandboxed script. auto and none: loopback only (MLflow is reached through the run's "
            "tracking door, whatever the store). host: the host network (for scripts that download data)."
        ),
    )
    sandbox_uid_first: int = Field(
        default=1_700_000_000,
        ge=1000,
        le=2**31 - 2**17,
        description=(
            "First uid of the range sandboxed scripts run as; each running training leases one uid of its own. Use "
            "uids no account or other service uses."
        ),
    )
    sandbox_uid_count: int = Field(
        default=256, ge=1, le=65536, description="How many uids the range has: the most trainings that run at once."
    )
    sandbox_gid: int = Field(
        default=1_700_000_000,
        ge=1000,
        le=2**31 - 1,
        description=(
            "Group of every sandboxed script (it owns none of the service's files: the script reaches MLflow through "
            "its run's tracking door)."
        ),
    )


class BuildSettings(BaseModel):
    backend: Literal["docker", "buildah"] = Field(
        default="docker",
        description=(
            "docker: build on a Docker Engine (docker_host). buildah: build and push with the buildah command, "
            "daemonless, inside the control service's own container (docs/production.md says what the pod needs)."
        ),
    )
    base_image: str = Field(
        default="python:3.11-slim",
        description=(
            "Base image of every runtime image. docker: an image on the engine. buildah: pulled from its registry"
            " when missing from buildah's storage (use a fully qualified name, e.g. "
            "127.0.0.1:5000/python:3.11-slim)."
        ),
    )
    base_image_tls_verify: bool = Field(
        default=True,
        description=(
            "buildah: require HTTPS with a verified certificate when pulling the base image "
            "(false for a plain-HTTP local registry)."
        ),
    )
    buildah_executable: str = Field(default="buildah", description="buildah: the command to run.")
    buildah_storage_driver: str = Field(
        default="overlay",
        description=(
            "buildah: containers/storage driver. overlay needs a kernel overlay mount (root, or fuse-overlayfs "
            "with /dev/fuse); vfs works anywhere but copies every layer in full."
        ),
    )
    buildah_storage_root: Path | None = Field(
        default=None,
        description=(
            "buildah: image storage directory (an emptyDir or volume in a pod). Default: buildah's own "
            "(/var/lib/containers/storage as root)."
        ),
    )
    buildah_run_root: Path | None = Field(
        default=None, description="buildah: directory of its lock and state files. Default: buildah's own."
    )
    buildah_isolation: Literal["chroot", "oci", "rootless"] = Field(
        default="chroot",
        description=(
            "buildah: how RUN steps are isolated. chroot needs no user namespace and no nested container "
            "runtime, so it works inside a container (docs/production.md lists the capabilities it needs)."
        ),
    )
    docker_host: str | None = Field(
        default=None, description="Docker Engine address. Default: DOCKER_HOST or the local socket."
    )
    network_mode: str | None = Field(
        default="host", description="Network mode for image builds (host lets pip reach the package index)."
    )
    pip_index_url: str | None = Field(default=None, description="Package index used inside image builds.")


class RegistrySettings(BaseModel):
    kind: Literal["oci", "ecr"] = Field(
        default="oci", description="oci: any OCI v2 registry. ecr: Amazon ECR via boto3."
    )
    url: str = Field(default="127.0.0.1:5000", description="Registry host[:port] (for ECR it is discovered).")
    repository_prefix: str = Field(default="mlops", description="Image repositories are PREFIX/MODEL_NAME.")
    username: str | None = Field(default=None, description="Registry user (oci).")
    password: SecretStr | None = Field(default=None, description="Registry password or token (oci).")
    insecure: bool = Field(default=True, description="Allow plain HTTP to the registry (local registry).")
    ecr_region: str | None = Field(default=None, description="AWS region of the ECR registry.")
    ecr_endpoint_url: str | None = Field(default=None, description="Override of the ECR API endpoint (tests use moto).")
    ecr_immutable_tags: bool = Field(default=True, description="Create ECR repositories with immutable tags.")


class GitSettings(BaseModel):
    remote_url: str | None = Field(
        default=None, description="GitOps repository remote. Default: a bare repo at DATA_DIR/gitops.git (file://)."
    )
    branch: str = Field(default="main", description="Branch Argo CD tracks.")
    token: SecretStr | None = Field(default=None, description="Token for https remotes.")
    author_name: str = Field(default="mlops-control", description="Commit author name.")
    author_email: str = Field(default="mlops-control@localhost", description="Commit author email.")
    workdir: Path | None = Field(default=None, description="Working clone. Default: DATA_DIR/gitops-work.")
    push_retries: int = Field(default=5, ge=0, description="Rebase-and-retry attempts on non-fast-forward pushes.")
    review_mode: bool = Field(default=False, description="Push a branch per deploy and open a pull request.")
    apps_path: str = Field(default="apps", description="Folder of per-model overlays in the GitOps repo.")


class ForgeSettings(BaseModel):
    kind: Literal["none", "github", "gitlab", "gitea"] = Field(default="none", description="Pull request provider.")
    api_url: str | None = Field(default=None, description="Forge REST API base URL.")
    repository: str | None = Field(default=None, description="owner/name (GitLab: project path or id).")
    token: SecretStr | None = Field(default=None, description="Forge API token.")
    merge_poll_seconds: float = Field(default=5, gt=0, description="How often to look for a merged change.")
    review_timeout_seconds: float = Field(default=86400, gt=0, description="How long to wait for a merge.")


class ArgoCDSettings(BaseModel):
    server_url: str | None = Field(default=None, description="Argo CD API server URL.")
    token: SecretStr | None = Field(default=None, description="Argo CD API token.")
    username: str | None = Field(default=None, description="Argo CD user (session login) when no token is set.")
    password: SecretStr | None = Field(default=None, description="Argo CD password.")
    verify_tls: bool = Field(default=True, description="Verify the Argo CD server certificate.")
    ca_bundle: Path | None = Field(
        default=None,
        description=(
            "PEM file of the CA (or the self-signed certificate) that signed argocd-server's certificate. "
            "argocd-server answers with a self-signed certificate unless one is configured."
        ),
    )
    namespace: str = Field(default="argocd", description="Namespace of Argo CD's Application objects.")
    project: str = Field(default="mlops-models", description="AppProject the model Applications belong to.")
    destination_server: str = Field(default="https://kubernetes.default.svc", description="Cluster API server.")
    repo_url: str | None = Field(default=None, description="Repo URL as Argo CD sees it. Default: git.remote_url.")
    automated_sync: bool = Field(
        default=False,
        description=(
            "Automated sync (disables rollback from the Argo CD UI). Argo CD then refuses syncs to a SHA, so the "
            "service syncs the branch head once its commit is confirmed there."
        ),
    )
    failure_grace_seconds: float = Field(
        default=30,
        ge=0,
        description=(
            "How long an unschedulable pod or a failing readiness probe may last before the deploy fails with it. "
            "Crash loops, image pull back-offs and OOM kills fail the deploy at once."
        ),
    )
    deletion_timeout_seconds: float = Field(
        default=120, gt=0, description="How long to wait for a deleting Application to go before re-creating it."
    )


class KubernetesSettings(BaseModel):
    kubeconfig: Path | None = Field(
        default=None, description="kubeconfig file. Default: in-cluster config, then ~/.kube/config."
    )
    context: str | None = Field(default=None, description="kubeconfig context.")
    api_url: str | None = Field(default=None, description="Direct API server URL (used with token).")
    token: SecretStr | None = Field(default=None, description="Bearer token for api_url.")


class TargetSettings(BaseModel):
    kind: Literal["local", "argocd", "none"] = Field(
        default="local", description="local: Docker on this machine. argocd: a cluster. none: train and register only."
    )
    ready_timeout_seconds: float = Field(
        default=300, gt=0, description="How long to wait for a deployment to become ready."
    )
    loopback_prefix: str = Field(default="127.0.0.", description="Local target: each Service gets PREFIX+N.")
    loopback_first: int = Field(default=10, ge=2, le=254, description="Local target: first N handed out.")


class ApiSettings(BaseModel):
    max_wait_seconds: float = Field(
        default=1800, ge=0, description="A synchronous deploy answers 202 with the deployment id after this long."
    )
    default_namespace: str = Field(default="mlops-models", description="Namespace when a request names none.")
    allowed_namespaces: list[str] = Field(
        default_factory=lambda: ["mlops-models", "default", "staging", "production"],
        description="Namespaces a deploy may target.",
    )
    max_body_bytes: int = Field(
        default=10 * 1024 * 1024, gt=0, description="Largest accepted request body (enforced while it streams in)."
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description=(
            "Addresses or networks (CIDR) of reverse proxies whose X-Forwarded-For names the client (for rate "
            "limits). Default: none, so the peer address counts."
        ),
    )


class ApiKeySpec(BaseModel):
    name: str = Field(
        max_length=128, pattern=r"^[A-Za-z0-9_.@-]+$", description="Who the key belongs to; recorded as Requested-By."
    )
    role: Literal["reader", "deployer", "admin"] = Field(
        description="reader: GET. deployer: also deploy, roll back, undeploy. admin: everything."
    )
    key_hash: str = Field(description="sha256:<hex> of the key; the key itself is never stored.")
    namespaces: list[str] | None = Field(
        default=None,
        description=(
            "Namespaces the key may deploy into, read the deploys of, roll back and undeploy in. Default (none "
            "given): all, as its role allows."
        ),
    )


class AuthSettings(BaseModel):
    mode: Literal["auto", "required", "disabled"] = Field(
        default="auto",
        description=(
            "auto: keys are required as soon as one is configured (settings or keys file), and for good once one has "
            "been (recorded in the journal). required: always. disabled: never."
        ),
    )
    keys: list[ApiKeySpec] = Field(default_factory=list, description="API keys (JSON list of {name, role, key_hash}).")
    keys_file: Path | None = Field(default=None, description="JSON file of API keys. Default: DATA_DIR/api-keys.json.")
    rate_limit_per_minute: int = Field(
        default=600, ge=1, description="Requests per minute per key (or per client address without auth)."
    )
    rate_limit_burst: int = Field(
        default=60, ge=1, description="Requests a key may send at once before the rate applies."
    )
    failed_auth_per_minute: int = Field(
        default=30,
        ge=1,
        description="Requests without a valid key per minute per client address, once keys are required.",
    )
    failed_auth_burst: int = Field(
        default=10,
        ge=1,
        description="Requests without a valid key a client address may send at once before that rate applies.",
    )


class FaultSettings(BaseModel):
    """Fault injection for the crash tests (tests/crash). Test-only: leave unset everywhere else."""

    halt_after_step: str | None = Field(
        default=None,
        description=(
            "TEST ONLY (fault injection): the service kills itself with SIGKILL right after the journal records this "
            "step (train, register, build, push, commit, sync, wait, ...) as succeeded."
        ),
    )
    halt_before_recording_step: str | None = Field(
        default=None,
        description=(
            "TEST ONLY (fault injection): the service kills itself with SIGKILL when this step has made its changes "
            "but before the journal records it."
        ),
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MLOPS_", env_nested_delimiter="__", extra="ignore")

    data_dir: Path = Field(default=Path(".data"), description="Where the embedded stores live.")
    mlflow: MlflowSettings = Field(default_factory=MlflowSettings)
    journal: JournalSettings = Field(default_factory=JournalSettings)
    training: TrainingSettings = Field(default_factory=TrainingSettings)
    build: BuildSettings = Field(default_factory=BuildSettings)
    registry: RegistrySettings = Field(default_factory=RegistrySettings)
    git: GitSettings = Field(default_factory=GitSettings)
    forge: ForgeSettings = Field(default_factory=ForgeSettings)
    argocd: ArgoCDSettings = Field(default_factory=ArgoCDSettings)
    kubernetes: KubernetesSettings = Field(default_factory=KubernetesSettings)
    target: TargetSettings = Field(default_factory=TargetSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    faults: FaultSettings = Field(default_factory=FaultSettings)

    # ---- resolved values (defaults that depend on data_dir) ------------------------------------

    @property
    def data_path(self) -> Path:
        return self.data_dir.resolve()

    def mlflow_tracking_uri(self) -> str:
        if self.mlflow.tracking_uri:
            return self.mlflow.tracking_uri
        return f"sqlite:///{self.data_path / 'mlflow' / 'mlflow.db'}"

    def mlflow_registry_uri(self) -> str:
        return self.mlflow.registry_uri or self.mlflow_tracking_uri()

    def mlflow_artifact_root(self) -> str | None:
        if self.mlflow.artifact_root:
            return self.mlflow.artifact_root
        if self.mlflow.tracking_uri:
            return None  # a tracking server decides
        return (self.data_path / "mlflow" / "artifacts").as_uri()

    def journal_url(self) -> str:
        return self.journal.url or f"sqlite:///{self.data_path / 'journal.db'}"

    def venv_cache_dir(self) -> Path:
        return (self.training.venv_cache_dir or self.data_path / "venvs").resolve()

    def git_remote_url(self) -> str:
        return self.git.remote_url or (self.data_path / "gitops.git").as_uri()

    def api_keys_file(self) -> Path:
        return (self.auth.keys_file or self.data_path / "api-keys.json").resolve()

    def git_workdir(self) -> Path:
        return (self.git.workdir or self.data_path / "gitops-work").resolve()
