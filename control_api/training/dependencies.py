"""What an installed package depends on, read from the distribution metadata of an environment.

Read from the environment's site-packages by this process (no interpreter of the environment is
started). Markers other than extras are evaluated for the service's interpreter, which builds the
environments with the same Python minor version by default.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name


def _distributions(site_packages: Path) -> dict[str, metadata.Distribution]:
    found: dict[str, metadata.Distribution] = {}
    for distribution in metadata.distributions(path=[str(site_packages)]):
        name = distribution.metadata["Name"]
        if name:
            found.setdefault(canonicalize_name(name), distribution)
    return found


def installed_versions(site_packages: Path) -> dict[str, str]:
    return {name: distribution.version for name, distribution in _distributions(site_packages).items()}


def _is_optional(marker: Marker | None) -> bool:
    return marker is not None and "extra" in str(marker)


def _requirements(distribution: metadata.Distribution) -> list[Requirement]:
    parsed: list[Requirement] = []
    for line in distribution.requires or []:
        try:
            parsed.append(Requirement(line))
        except InvalidRequirement:
            continue
    return parsed


def dependency_closure(site_packages: Path, roots: Iterable[str]) -> dict[str, set[str]]:
    """For each installed root: the installed packages it needs, directly or through others, plus its
    installed optional dependencies themselves (an extra's package that the environment has for another
    reason is still what the root's code imports when it is there; what that package needs in turn is
    the package's business, not the root's)."""
    installed = _distributions(site_packages)

    def required(name: str) -> set[str]:
        needed: set[str] = set()
        for requirement in _requirements(installed[name]):
            dependency = canonicalize_name(requirement.name)
            if dependency not in installed or _is_optional(requirement.marker):
                continue
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                needed.add(dependency)
        return needed

    def optional(name: str) -> set[str]:
        return {
            canonicalize_name(requirement.name)
            for requirement in _requirements(installed[name])
            if _is_optional(requirement.marker) and canonicalize_name(requirement.name) in installed
        }

    closures: dict[str, set[str]] = {}
    for root in (canonicalize_name(name) for name in roots):
        if root not in installed:
            continue
        seen: set[str] = set()
        pending = list(required(root))
        while pending:
            name = pending.pop()
            if name in seen or name == root:
                continue
            seen.add(name)
            pending.extend(required(name))
        closures[root] = seen | (optional(root) - {root})
    return closures
