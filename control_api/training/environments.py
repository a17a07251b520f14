"""Virtual environments for training scripts, cached by a hash of what goes into them.

Built with uv (fast resolver, shared wheel cache). A deploy with the same requirements as an earlier
one reuses the environment; a new set of requirements costs one uv install, usually seconds once uv's
cache is warm. Environments are built in a temporary folder and renamed into place, so a crash never
leaves a half-built environment that a later deploy would trust.

Old pins. An exact pin (``scikit-learn==1.3.0``) names a release of a given day, and the newest
versions of its unpinned dependencies may no longer fit it (NumPy 2 broke binaries built for 1.x;
scikit-learn 1.6 removed what xgboost 1.7's estimators use). So the dependencies of each exactly pinned
package are resolved as of that release's upload date (uv's per-package ``--exclude-newer-package``),
found from a first, plain build. When that cannot resolve, the plain environment stays. When a pinned
package still cannot be imported, whatever the error says, the environment is rebuilt once more with
the known ABI constraint ``numpy<2``, and only then is the failure reported.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import sysconfig
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from types import TracebackType
from typing import Literal, Self, TextIO, TypedDict

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from control_api.errors import InvalidRequestError, RequirementsInstallFailed
from control_api.training.dependencies import dependency_closure, installed_versions
from control_api.training.release_dates import ReleaseDates

HOOK_DIR = Path(__file__).parent / "hook"
# Bump when the way environments are built changes, so old cached ones are not reused.
ENV_LAYOUT_VERSION = "5"
# The last resort when a pinned package does not import: most such failures of old binary wheels
# are NumPy 2's ABI break.
ABI_FALLBACK_CONSTRAINT = "numpy<2"
# The MLflow client is the service's own version (resolve_requirements), never dated back with a pin.
MLFLOW_DISTRIBUTIONS = frozenset({"mlflow", "mlflow-skinny", "mlflow-tracing"})
FIT_FILE = ".fit.json"
# The environment's exact versions of what a model trained in it needs (see ``write_lock``); the
# training hook hands them to MLflow's log_model instead of letting it infer requirements.
LOCK_FILE = "mlops-lock.txt"

# Receives the build's progress, one line at a time (the step log).
LogLine = Callable[[str], None]


def _ignore_line(line: str) -> None:
    pass


class FitJson(TypedDict):
    """An ``EnvironmentFit`` as stored in ``FIT_FILE`` and hashed into the environment's key."""

    constraints: list[str]
    exclude_newer: list[list[str]]


@dataclass(frozen=True)
class EnvironmentFit:
    """What narrows an environment's resolution beyond its requirements."""

    constraints: tuple[str, ...] = ()
    # (package, RFC 3339 time): that package resolves to versions uploaded before the time.
    exclude_newer: tuple[tuple[str, str], ...] = ()

    def with_constraint(self, constraint: str) -> EnvironmentFit:
        return EnvironmentFit(tuple(sorted({*self.constraints, constraint})), self.exclude_newer)

    def describe(self) -> str:
        parts = [*self.constraints, *(f"{name} as of {when}" for name, when in self.exclude_newer)]
        return ", ".join(parts) or "newest dependencies"

    def as_json(self) -> FitJson:
        return {"constraints": list(self.constraints), "exclude_newer": [list(pair) for pair in self.exclude_newer]}

    @classmethod
    def from_json(cls, data: FitJson) -> EnvironmentFit:
        return cls(
            tuple(data.get("constraints", [])), tuple((name, when) for name, when in data.get("exclude_newer", []))
        )


@dataclass(frozen=True)
class TrainingEnvironment:
    path: Path
    python: Path
    reused: bool
    requirements: tuple[str, ...]
    fit: EnvironmentFit = EnvironmentFit()
    # Installed versions of the requested packages and everything they depend on (MLflow aside):
    # the serving image installs exactly these.
    packages: dict[str, str] | None = None


def service_mlflow_version() -> str:
    return metadata.version("mlflow")


def find_uv() -> str:
    candidates = [Path(sys.executable).with_name("uv"), Path(sysconfig.get_path("scripts")) / "uv"]
    for candidate in candidates:
        if candidate.exists():
            return str(candidate)
    found = shutil.which("uv")
    if not found:
        raise RequirementsInstallFailed("uv is not installed; run scripts/python-env.sh", code="uv_missing")
    return found


def parse_requirements(lines: list[str]) -> list[Requirement]:
    parsed: list[Requirement] = []
    for line in lines:
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        try:
            parsed.append(Requirement(text))
        except InvalidRequirement as exc:
            raise InvalidRequestError(
                f"requirements: {text!r} is not a requirement specifier ({exc})",
                code="invalid_requirement",
                details=[{"field": "requirements", "rule": "pep508", "value": text}],
            ) from exc
    return parsed


def resolve_requirements(user_requirements: list[str], *, embedded_store: bool) -> list[str]:
    """The script's requirements plus MLflow, which every training environment needs.

    A script may pin MLflow itself. With the embedded SQLite store the training process writes the
    same database as the service, so its MLflow must be the service's version; a different pin cannot
    work there and is refused with the reason.
    """
    parsed = parse_requirements(user_requirements)
    ours = service_mlflow_version()
    mlflow_pins = [r for r in parsed if canonicalize_name(r.name) in ("mlflow", "mlflow-skinny")]
    if mlflow_pins:
        pin = mlflow_pins[0]
        if embedded_store and pin.specifier and not pin.specifier.contains(ours, prereleases=True):
            raise RequirementsInstallFailed(
                f"requirements pin {pin}, but the embedded tracking store is written by MLflow {ours} and "
                f"an older or newer client cannot use its database schema. Remove the MLflow pin, pin "
                f"mlflow=={ours}, or point the service at an MLflow tracking server "
                f"(MLOPS_MLFLOW__TRACKING_URI), which speaks a stable REST API to every client version.",
                code="incompatible_requirement",
            )
        resolved = [str(r) for r in parsed]
    else:
        resolved = [str(r) for r in parsed] + [f"mlflow=={ours}"]
    return sorted(set(resolved), key=str.lower)


def environment_key(python: str, requirements: list[str], fit: EnvironmentFit = EnvironmentFit()) -> str:
    payload = json.dumps(
        {"python": python, "requirements": requirements, **fit.as_json(), "layout": ENV_LAYOUT_VERSION},
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def exact_pins(user_requirements: list[str]) -> dict[str, str]:
    """Package -> version for each requirement pinned to one exact version (``==1.3.0``)."""
    pins: dict[str, str] = {}
    for requirement in parse_requirements(user_requirements):
        specifiers = list(requirement.specifier)
        if len(specifiers) == 1 and specifiers[0].operator in ("==", "===") and "*" not in specifiers[0].version:
            pins[canonicalize_name(requirement.name)] = specifiers[0].version
    return pins


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class EnvironmentCache:
    def __init__(
        self, root: Path, python: str, install_timeout: float, release_dates: ReleaseDates | None = None
    ) -> None:
        self.root = root
        self.python = python
        self.install_timeout = install_timeout
        self.release_dates = release_dates or ReleaseDates()
        self.root.mkdir(parents=True, exist_ok=True)

    def ensure(
        self, user_requirements: list[str], *, embedded_store: bool, log: LogLine = _ignore_line
    ) -> TrainingEnvironment:
        requirements = resolve_requirements(user_requirements, embedded_store=embedded_store)
        env = self._ensure(requirements, EnvironmentFit(), log)
        fit = self._fit_to_pins(env, user_requirements, log)
        if fit != env.fit:
            try:
                env = self._ensure(requirements, fit, log)
            except RequirementsInstallFailed as exc:
                log(f"dependencies as of the pinned releases do not resolve together ({exc}); keeping the newest ones")
                # Remembered, so later deploys of these requirements do not try the same resolution again.
                (env.path / FIT_FILE).write_text(json.dumps(EnvironmentFit().as_json()))
        problem = self._import_check(env, user_requirements)
        if problem:
            fallback = env.fit.with_constraint(ABI_FALLBACK_CONSTRAINT)
            log(
                f"a pinned package cannot be imported ({problem}); "
                f"rebuilding the environment with {fallback.describe()}"
            )
            env = self._ensure(requirements, fallback, log)
            problem = self._import_check(env, user_requirements)
        if problem:
            raise RequirementsInstallFailed(
                f"the requirements installed, but a pinned package cannot be imported: {problem}",
                code="requirements_import_failed",
            )
        return self._with_package_versions(env, user_requirements)

    def _fit_to_pins(self, plain: TrainingEnvironment, user_requirements: list[str], log: LogLine) -> EnvironmentFit:
        """Each exactly pinned package's dependencies (those the user gave no version) as of its upload date.

        Worked out once per plain environment (from its installed metadata and the index's dates) and
        kept beside it, so a reused environment needs no index.
        """
        remembered = plain.path / FIT_FILE
        if remembered.exists():
            return EnvironmentFit.from_json(json.loads(remembered.read_text()))
        pins = exact_pins(user_requirements)
        # A requirement with a version specifier is the user's choice; a bare name is as unpinned as
        # any other dependency, so it is dated too (xgboost==1.7.6 with plain "scikit-learn").
        user_pinned = {canonicalize_name(r.name) for r in parse_requirements(user_requirements) if r.specifier}
        closures = dependency_closure(self._site_packages(plain.path), list(pins))
        cutoff: dict[str, str] = {}
        for name, version in pins.items():
            dependencies = closures.get(name, set()) - user_pinned - MLFLOW_DISTRIBUTIONS
            if not dependencies:
                continue
            uploaded = self.release_dates.uploaded(name, version)
            if uploaded is None:
                log(f"the package index gives no upload date for {name}=={version}; its dependencies stay the newest")
                continue
            for dependency in dependencies:
                when = _rfc3339(uploaded)
                cutoff[dependency] = min(cutoff.get(dependency, when), when)
        fit = EnvironmentFit(exclude_newer=tuple(sorted(cutoff.items())))
        remembered.write_text(json.dumps(fit.as_json()))
        return fit

    def _with_package_versions(self, env: TrainingEnvironment, user_requirements: list[str]) -> TrainingEnvironment:
        site_packages = self._site_packages(env.path)
        requested = sorted(
            {canonicalize_name(r.name) for r in parse_requirements(user_requirements)} - MLFLOW_DISTRIBUTIONS
        )
        wanted = set(requested).union(*dependency_closure(site_packages, requested).values()) - MLFLOW_DISTRIBUTIONS
        versions = installed_versions(site_packages)
        packages = {name: versions[name] for name in sorted(wanted) if name in versions}
        write_lock(env.path, packages, versions)
        return replace(env, packages=packages)

    def _ensure(self, requirements: list[str], fit: EnvironmentFit, log: LogLine) -> TrainingEnvironment:
        key = environment_key(self.python, requirements, fit)
        final = self.root / key
        python = final / "bin" / "python"
        with self._lock(key):
            if (final / ".complete").exists():
                log(f"training environment {key} reused ({fit.describe()})")
                return TrainingEnvironment(final, python, True, tuple(requirements), fit)
            building = self.root / f".{key}.building"
            shutil.rmtree(building, ignore_errors=True)
            log(f"building training environment {key}: {', '.join(requirements)} ({fit.describe()})")
            uv = find_uv()
            self._run([uv, "venv", "--quiet", "--python", self.python, str(building)], "create the virtual environment")
            req_file = building / "mlops-requirements.txt"
            req_file.write_text("\n".join(requirements) + "\n")
            # --compile-bytecode: scripts run with PYTHONDONTWRITEBYTECODE (they must not write into the
            # shared environment), so without .pyc files every run compiles MLflow, pandas and
            # scikit-learn from source again: about 7 s of CPU per training run, 3x the import.
            cmd = [
                uv,
                "pip",
                "install",
                "--compile-bytecode",
                "--python",
                str(building / "bin" / "python"),
                "-r",
                str(req_file),
            ]
            if fit.constraints:
                constraint_file = building / "mlops-constraints.txt"
                constraint_file.write_text("\n".join(fit.constraints) + "\n")
                cmd += ["-c", str(constraint_file)]
            for name, when in fit.exclude_newer:
                cmd += ["--exclude-newer-package", f"{name}={when}"]
            try:
                self._run(cmd, "install the requirements", log)
            except RequirementsInstallFailed:
                shutil.rmtree(building, ignore_errors=True)
                raise
            site_packages = self._site_packages(building)
            for name in ("mlops_training_hook.py", "mlops_training_hook.pth"):
                shutil.copy2(HOOK_DIR / name, site_packages / name)
            _readable_by_all(building)
            (building / ".complete").write_text(json.dumps({"requirements": requirements, **fit.as_json()}))
            shutil.rmtree(final, ignore_errors=True)
            # uv writes absolute paths into scripts; rename keeps them valid because we only ever
            # call bin/python by its final path and the venv's pyvenv.cfg is location independent.
            os.rename(building, final)
            return TrainingEnvironment(final, python, False, tuple(requirements), fit)

    def _import_check(self, env: TrainingEnvironment, user_requirements: list[str]) -> str | None:
        names = [canonicalize_name(r.name) for r in parse_requirements(user_requirements)]
        if not names:
            return None
        # An environment never changes after it is built (its key is these requirements), so one
        # passing check stands; running it for every deploy cost ~2 s of CPU (importing the packages).
        passed = env.path / ".imports-checked"
        if passed.exists():
            return None
        script = (
            "import importlib, importlib.metadata as md, importlib.util, json, sys\n"
            "dists = md.packages_distributions()\n"
            "wanted = set(json.loads(sys.argv[1]))\n"
            "canon = lambda n: n.lower().replace('_', '-').replace('.', '-')\n"
            "mods = sorted({m for m, ds in dists.items() for d in ds\n"
            "               if canon(d) in wanted and m.isidentifier() and not m.startswith('_')})\n"
            "for m in mods:\n"
            # A distribution's files outside site-packages (xgboost's lib/libxgboost.so) also look like
            # top-level names; only what the interpreter can find is a module to import.
            "    if importlib.util.find_spec(m) is None:\n"
            "        continue\n"
            "    try:\n"
            "        importlib.import_module(m)\n"
            "    except Exception as e:\n"
            "        print(f'{m}: {type(e).__name__}: {e}'); sys.exit(1)\n"
        )
        result = subprocess.run(
            [str(env.python), "-c", script, json.dumps(names)],
            capture_output=True,
            text=True,
            timeout=300,
            env={"PATH": "/usr/bin:/bin", "HOME": str(env.path)},
        )
        if result.returncode == 0:
            passed.touch()
            return None
        detail = result.stdout.strip() or (result.stderr.strip().splitlines() or ["import failed"])[-1]
        return detail[:1000]

    def _site_packages(self, venv: Path) -> Path:
        found = sorted(venv.glob("lib/python*/site-packages"))
        if not found:
            raise RequirementsInstallFailed(f"no site-packages in {venv}", code="requirements_install_failed")
        return found[0]

    def _run(self, cmd: list[str], what: str, log: LogLine = _ignore_line) -> None:
        try:
            result = subprocess.run(cmd, capture_output=True, text=True, timeout=self.install_timeout)
        except subprocess.TimeoutExpired as exc:
            raise RequirementsInstallFailed(
                f"could not {what}: no result after {self.install_timeout:.0f} s", code="requirements_install_failed"
            ) from exc
        for line in (result.stderr or "").splitlines()[-30:]:
            log(line)
        if result.returncode != 0:
            detail = _uv_error_summary(result.stderr or result.stdout)
            raise RequirementsInstallFailed(f"could not {what}: {detail}", code="requirements_install_failed")

    def _lock(self, key: str) -> _FileLock:
        return _FileLock(self.root / f".{key}.lock")


def lock_lines(packages: dict[str, str], installed: dict[str, str]) -> list[str]:
    """``name==version`` of the requested packages and their dependencies, plus the MLflow client that
    saves the model (the serving image installs its pyfunc of the same version)."""
    pinned = dict(packages)
    for name in ("mlflow", "mlflow-skinny"):
        if name in installed:
            pinned[name] = installed[name]
            break
    return [f"{name}=={version}" for name, version in sorted(pinned.items())]


def write_lock(venv: Path, packages: dict[str, str], installed: dict[str, str]) -> None:
    """Keep the lock in the environment, readable by sandboxed scripts (the environment is mounted
    read-only there). An environment never changes once built, so an existing lock with the same
    text is left alone; otherwise it is replaced atomically, since deploys share environments."""
    text = "\n".join(lock_lines(packages, installed)) + "\n"
    path = venv / LOCK_FILE
    with contextlib.suppress(FileNotFoundError):
        if path.read_text() == text:
            return
    partial = venv / f".{LOCK_FILE}.{os.getpid()}.{threading.get_ident()}.partial"
    partial.write_text(text)
    partial.chmod(0o444)
    os.replace(partial, path)


def _readable_by_all(root: Path) -> None:
    """Sandboxed scripts run as other uids and must read (never write) the environment, whatever the
    service's umask was when it was built."""
    for dirpath, _dirnames, filenames in os.walk(root):
        for path, wanted in [(dirpath, 0o555), *((os.path.join(dirpath, f), 0o444) for f in filenames)]:
            st = os.lstat(path)
            if not stat.S_ISLNK(st.st_mode):
                extra = wanted & (0o555 if st.st_mode & 0o111 else 0o444)
                if st.st_mode & extra != extra:
                    os.chmod(path, stat.S_IMODE(st.st_mode) | extra)


def _uv_error_summary(text: str) -> str:
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    # uv explains resolution failures in a few "Because ..." lines; keep them whole.
    interesting = [
        line
        for line in lines
        if re.search(r"(error|because|no solution|not found|failed|unsatisfiable|requires)", line, re.I)
    ]
    chosen = (interesting or lines)[-12:]
    return "\n".join(chosen)[:3000] or "uv failed without output"


class _FileLock:
    """An exclusive ``flock`` on a file, held for the ``with`` block (one build of one key at a time)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: TextIO | None = None

    def __enter__(self) -> Self:
        self._fh = open(self.path, "w")
        fcntl.flock(self._fh, fcntl.LOCK_EX)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> Literal[False]:
        assert self._fh is not None, "__exit__ without __enter__"
        fcntl.flock(self._fh, fcntl.LOCK_UN)
        self._fh.close()
        return False
