"""After a fault: do the journal, MLflow, the registry and git still tell one story?

``check_consistency`` reads each store directly (the journal's records, MLflow's registry through its
client, the OCI registry's HTTP API, the bare GitOps repo with plain git and ``kubectl kustomize``) and
asserts that every trace of a deploy is where the journal says its steps got to, exactly once:

journal   every deploy is final; steps before the failed one succeeded, the failed one says why, and
          the deploy's error names that step, a code and a message; the ones after never ran.
MLflow    model versions == deploys that passed ``register`` (each tagged with its deployment id and
          made from the deploy's run): no orphan version, no duplicate.
registry  tags == deploys that passed ``push``; each tag's manifest digest is the one the journal
          recorded.
git       commits with a Deployment-Id trailer == deploys that passed ``commit``, one each, at the
          SHA the journal recorded; every other commit is the seed or an expected outside writer's;
          the repository is sound (fsck) and its HEAD renders with kustomize into the Deployment the
          newest committed deploy of each model describes.
Argo CD   (with a simulator) the Application of every deploy that passed ``sync`` has that commit in
          its history.
"""

from __future__ import annotations

import io
import subprocess
import tarfile
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

import httpx
import yaml

from control_api.adapters.kubectl import kustomize_command
from control_api.journal.store import DeploymentRecord, DeploymentStatus, StepStatus

SEED_SUBJECT = "Initialise GitOps repository"
MANIFEST_ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)


@dataclass
class GitCommit:
    sha: str
    subject: str
    deployment_id: str | None


@dataclass
class StoreState:
    """What the stores hold, for the test's own assertions after the shared ones passed."""

    deployments: dict[str, DeploymentRecord]
    versions: dict[str, dict[str, str | None]] = field(default_factory=dict)  # model -> version -> deployment id
    tags: dict[str, dict[str, str]] = field(default_factory=dict)  # model -> tag -> digest
    commits: list[GitCommit] = field(default_factory=list)  # main, oldest first
    head_images: dict[str, str] = field(default_factory=dict)  # model -> image of its Deployment at HEAD

    def passed(self, step: str) -> set[str]:
        return {d.id for d in self.deployments.values() if _succeeded(d, step)}


def _succeeded(record: DeploymentRecord, step: str) -> bool:
    found = record.step(step)
    return found is not None and found.status == StepStatus.SUCCEEDED


def check_consistency(
    client,
    *,
    git_dir: Path | None = None,
    kustomize_cmd: list[str] | None = None,
    registry_auth: tuple[str, str] | None = None,
    foreign_subjects: list[str] | tuple[str, ...] = (),
    foreign_paths: tuple[str, ...] = (),
    unacknowledged: tuple[str, ...] = (),
    simulator=None,
) -> StoreState:
    """``unacknowledged``: deploys whose push reached the remote although git told the service it
    failed (the remote died before answering). Until a retry settles them they may have one commit."""
    services = client.app.state.services
    settings = services.settings
    state = StoreState(deployments=_journal(services.journal))
    deploys = list(state.deployments.values())
    _check_mlflow(services.mlflow.client, deploys, state)
    _check_registry(settings.registry, deploys, state, registry_auth)
    if settings.target.kind != "none":
        git_dir = git_dir or _local_remote_path(settings.git_remote_url())
        _check_git(
            git_dir,
            settings.git.branch,
            deploys,
            state,
            kustomize_cmd or kustomize_command(),
            list(foreign_subjects),
            foreign_paths,
            set(unacknowledged),
        )
    if simulator is not None:
        _check_argocd(simulator, deploys)
    return state


# ---- journal ------------------------------------------------------------------------------------


def _journal(journal) -> dict[str, DeploymentRecord]:
    records, total = journal.list(kind="deploy", limit=500)
    assert total == len(records), "more deployments than one page; raise the limit"
    out = {}
    for listed in records:
        record = journal.get(listed.id)
        out[record.id] = record
        where = f"deployment {record.id} ({record.model_name}, {record.status})"
        assert record.is_final, f"{where} is still running"
        statuses = [s.status for s in record.steps]
        names = [s.name for s in record.steps]
        if record.status in (DeploymentStatus.DEPLOYED, DeploymentStatus.REGISTERED):
            assert set(statuses) == {StepStatus.SUCCEEDED}, f"{where}: steps {list(zip(names, statuses, strict=True))}"
            assert record.error is None, f"{where} carries an error: {record.error}"
            continue
        assert record.status in (DeploymentStatus.FAILED, DeploymentStatus.TIMED_OUT), where
        error = record.error or {}
        assert error.get("step") in names and error.get("code") and error.get("message"), (
            f"{where}: unclear error {error}"
        )
        at = names.index(error["step"])
        assert all(s == StepStatus.SUCCEEDED for s in statuses[:at]), (
            f"{where}: steps {list(zip(names, statuses, strict=True))}"
        )
        failed = record.steps[at]
        assert failed.status == StepStatus.FAILED, f"{where}: the step it names is {failed.status}"
        assert failed.message and failed.message == error["message"], (failed.message, error["message"])
        assert all(s == StepStatus.PENDING for s in statuses[at + 1 :]), (
            f"{where}: steps {list(zip(names, statuses, strict=True))}"
        )
    return out


# ---- MLflow -------------------------------------------------------------------------------------


def _check_mlflow(mlflow_client, deploys: list[DeploymentRecord], state: StoreState) -> None:
    for model in sorted({d.model_name for d in deploys}):
        try:
            versions = mlflow_client.search_model_versions(f"name = '{model}'")
        except Exception as exc:  # no such registered model
            if "RESOURCE_DOES_NOT_EXIST" not in str(exc):
                raise
            versions = []
        actual = {str(v.version): (v.tags or {}).get("mlops.deployment_id") for v in versions}
        runs = {str(v.version): v.run_id for v in versions}
        registered = [d for d in deploys if d.model_name == model and _succeeded(d, "register")]
        expected = {d.outputs["model_version"]: d.id for d in registered}
        assert len(expected) == len(registered), (
            f"{model}: two deploys claim one version: {[(d.id, d.outputs.get('model_version')) for d in registered]}"
        )
        assert actual == expected, f"MLflow versions of {model} (version -> deployment) {actual} != journal {expected}"
        for d in registered:
            assert runs[d.outputs["model_version"]] == d.outputs["run_id"], (
                f"{model} v{d.outputs['model_version']}: run differs"
            )
        state.versions[model] = actual


# ---- OCI registry -------------------------------------------------------------------------------


def _check_registry(settings, deploys: list[DeploymentRecord], state: StoreState, auth) -> None:
    base = f"{'http' if settings.insecure else 'https'}://{settings.url}"
    for model in sorted({d.model_name for d in deploys}):
        repository = f"{settings.repository_prefix}/{model}" if settings.repository_prefix else model
        response = httpx.get(f"{base}/v2/{repository}/tags/list", auth=auth, timeout=30)
        if response.status_code == 404:
            tags: set[str] = set()
        else:
            assert response.status_code == 200, (
                f"registry answered {response.status_code} for {repository}: {response.text}"
            )
            tags = set(response.json().get("tags") or [])
        pushed = [d for d in deploys if d.model_name == model and _succeeded(d, "push")]
        expected = {d.outputs["image_tag"].rsplit(":", 1)[1]: d for d in pushed}
        assert tags == set(expected), (
            f"registry tags of {repository} {sorted(tags)} != pushed by the journal {sorted(expected)}"
        )
        state.tags[model] = {}
        for tag, d in expected.items():
            head = httpx.head(
                f"{base}/v2/{repository}/manifests/{tag}", headers={"Accept": MANIFEST_ACCEPT}, auth=auth, timeout=30
            )
            assert head.status_code == 200, f"{repository}:{tag}: HTTP {head.status_code}"
            digest = head.headers["Docker-Content-Digest"]
            assert digest == d.outputs["image_digest"], (
                f"{repository}:{tag} is {digest}, the journal says {d.outputs['image_digest']}"
            )
            assert d.outputs["image_uri"] == f"{settings.url}/{repository}@{digest}", d.outputs["image_uri"]
            state.tags[model][tag] = digest


# ---- git ----------------------------------------------------------------------------------------


def _local_remote_path(url: str) -> Path:
    parts = urlsplit(url)
    assert parts.scheme == "file", f"pass git_dir for a {parts.scheme}:// remote"
    return Path(unquote(parts.path))


def _git(git_dir: Path, *args: str, binary: bool = False):
    result = subprocess.run(["git", "--git-dir", str(git_dir), *args], capture_output=True, text=not binary)
    assert result.returncode == 0, f"git {' '.join(args)} failed: {result.stderr}"
    return result.stdout


def _check_git(git_dir, branch, deploys, state, kustomize_cmd, foreign_subjects, foreign_paths, unacknowledged) -> None:
    committed = {d.id: d for d in deploys if _succeeded(d, "commit")}
    if not Path(git_dir).exists():  # the service creates its file:// remote on first use
        assert not committed, f"{sorted(committed)} committed, but there is no GitOps repo at {git_dir}"
        return
    _git(git_dir, "fsck", "--no-progress", "--no-dangling")
    raw = _git(
        git_dir,
        "log",
        branch,
        "--reverse",
        "--format=%H%x1f%s%x1f%(trailers:key=Deployment-Id,valueonly,separator=%x2c)%x1e",
    )
    for record in raw.split("\x1e"):
        record = record.strip("\n")
        if record:
            sha, subject, trailer = record.split("\x1f")
            state.commits.append(GitCommit(sha, subject, trailer.strip() or None))
    by_deploy = Counter(c.deployment_id for c in state.commits if c.deployment_id)
    duplicated = {k: n for k, n in by_deploy.items() if n > 1}
    assert not duplicated, f"deploys committed more than once: {duplicated}"
    for d in deploys:
        if d.id in unacknowledged and d.id in by_deploy:
            assert d.id not in committed and d.status == DeploymentStatus.FAILED, f"{d.id} is not in doubt"
            committed[d.id] = d
    assert set(by_deploy) == set(committed), (
        f"git has commits of {sorted(set(by_deploy) - set(committed))} that the journal did not commit, "
        f"and lacks {sorted(set(committed) - set(by_deploy))}"
    )
    for commit in state.commits:
        if commit.deployment_id and commit.deployment_id not in unacknowledged:
            assert committed[commit.deployment_id].outputs["commit"] == commit.sha, (
                f"journal commit of {commit.deployment_id} differs"
            )
    others = Counter(c.subject for c in state.commits if not c.deployment_id)
    assert others == Counter([SEED_SUBJECT, *foreign_subjects]), f"commits without a deploy: {dict(others)}"

    # HEAD renders: every model overlay builds, and describes the newest committed deploy of its model.
    newest: dict[tuple[str, str], DeploymentRecord] = {}
    for commit in state.commits:
        if commit.deployment_id:
            d = committed[commit.deployment_id]
            newest[(d.namespace, d.model_name)] = d
    archive = _git(git_dir, "archive", "--format=tar", branch, binary=True)
    with tempfile.TemporaryDirectory(prefix="faults-head-") as tmp:
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(tmp, filter="data")
        root = Path(tmp)
        overlays = {
            (p.parent.name, p.name)
            for p in (root / "apps").glob("*/*")
            if p.is_dir() and f"apps/{p.parent.name}/{p.name}" not in foreign_paths
        }
        assert overlays == set(newest), f"overlays at HEAD {sorted(overlays)} != committed models {sorted(newest)}"
        for (namespace, model), d in sorted(newest.items()):
            built = subprocess.run(
                [*kustomize_cmd, str(root / "apps" / namespace / model)], capture_output=True, text=True
            )
            assert built.returncode == 0, f"kustomize build of apps/{namespace}/{model} at HEAD failed: {built.stderr}"
            objects = [o for o in yaml.safe_load_all(built.stdout) if o]
            kinds = Counter(o["kind"] for o in objects)
            assert kinds["Deployment"] == 1 and kinds["Service"] == 1, f"apps/{namespace}/{model}: {dict(kinds)}"
            deployment = next(o for o in objects if o["kind"] == "Deployment")
            images = [c["image"] for c in deployment["spec"]["template"]["spec"]["containers"]]
            assert images == [d.outputs["image_uri"]], (
                f"apps/{namespace}/{model} at HEAD runs {images}, newest deploy pushed {d.outputs['image_uri']}"
            )
            state.head_images[model] = images[0]
            application = root / "argocd-apps" / f"{namespace}--{model}.yaml"
            assert application.is_file(), f"{application.name} missing at HEAD"
            app = yaml.safe_load(application.read_text())
            assert app["kind"] == "Application" and app["spec"]["source"]["path"] == f"apps/{namespace}/{model}"


# ---- Argo CD (simulator) ------------------------------------------------------------------------


def _check_argocd(simulator, deploys: list[DeploymentRecord]) -> None:
    for d in deploys:
        if not _succeeded(d, "sync"):
            continue
        app = simulator.get_application(f"{d.namespace}--{d.model_name}")
        revisions = [h["revision"] for h in app["status"].get("history", [])]
        # A sync still applying (the wait step can time out first, e.g. a slow container start on a
        # loaded machine) has no history entry yet; its operation must then be for this commit.
        operation = app["status"].get("operationState") or {}
        if operation.get("phase") == "Running":
            revisions.append(operation["operation"]["sync"].get("revision"))
        assert d.outputs["commit"] in revisions, (
            f"Application of {d.id} never synced {d.outputs['commit']}: {revisions}"
        )
