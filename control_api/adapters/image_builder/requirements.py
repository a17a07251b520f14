"""The runtime image's requirement list: the model's MLflow requirements.txt, normalised, plus the
model server's own.

``mlflow`` becomes ``mlflow-skinny`` of the same version: serving needs pyfunc, not the tracking
server, UI and their dependencies (hundreds of MB). Normalising (canonical names, no comments,
sorted) makes two models with the same dependencies share one runtime image.

The training environment's versions (the requested packages and what they depend on) become exact:
a requirement either list names is pinned to the trained version, and the others become constraints,
so the image runs what the model was trained with wherever it installs those packages at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from control_api.errors import ImageBuildFailed

FULL_MLFLOW = "mlflow"
SKINNY_MLFLOW = "mlflow-skinny"


@dataclass(frozen=True)
class RuntimeRequirements:
    lines: list[str]  # sorted, one requirement each: what the runtime image installs
    skipped: list[str] = field(default_factory=list)  # pip options and the like, not reproducible in a build
    constraints: list[str] = field(default_factory=list)  # sorted name==version from the training environment


def parse_requirement(line: str) -> Requirement:
    try:
        return Requirement(line)
    except InvalidRequirement as exc:
        raise ImageBuildFailed(
            f"the model's requirements.txt has a line the image build cannot install: {line!r} ({exc})",
            code="invalid_requirements",
            details={"line": line},
        ) from exc


def _normalised(requirement: Requirement) -> Requirement:
    name = canonicalize_name(requirement.name)
    if name == FULL_MLFLOW:
        requirement = Requirement(
            f"{SKINNY_MLFLOW}{requirement.specifier}" + (f"; {requirement.marker}" if requirement.marker else "")
        )
    else:
        requirement.name = name
    return requirement


def _meaningful_lines(text: str) -> tuple[list[str], list[str]]:
    requirements: list[str] = []
    skipped: list[str] = []
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        (skipped if line.startswith("-") else requirements).append(line)
    return requirements, skipped


def runtime_requirements(
    model_requirements: str,
    server_requirements: str,
    mlflow_version: str | None,
    training_packages: dict[str, str] | None = None,
) -> RuntimeRequirements:
    """Merge the model's and the server's requirements; on a package both name, the model's pin wins,
    because its pickles were made with that version and the server only needs a compatible one. The
    training environment's versions win over both, for the same reason."""
    model_lines, skipped = _meaningful_lines(model_requirements)
    model: dict[str, Requirement] = {}
    for line in model_lines:
        requirement = _normalised(parse_requirement(line))
        model[canonicalize_name(requirement.name)] = requirement
    if SKINNY_MLFLOW not in model and mlflow_version:
        # Non-sklearn flavors load through mlflow.pyfunc; pin the version that saved the model.
        model[SKINNY_MLFLOW] = Requirement(f"{SKINNY_MLFLOW}=={mlflow_version}")
    server_lines, _ = _meaningful_lines(server_requirements)
    server: dict[str, Requirement] = {
        canonicalize_name(r.name): r for r in (_normalised(parse_requirement(line)) for line in server_lines)
    }
    merged = {**server, **model}
    constraints = []
    for raw_name, version in sorted((training_packages or {}).items()):
        name = canonicalize_name(raw_name)
        if name in (FULL_MLFLOW, SKINNY_MLFLOW):
            continue
        if name in merged:
            marker = merged[name].marker
            merged[name] = Requirement(f"{name}=={version}" + (f"; {marker}" if marker else ""))
        else:
            constraints.append(f"{name}=={version}")
    return RuntimeRequirements(lines=sorted(str(r) for r in merged.values()), skipped=skipped, constraints=constraints)
