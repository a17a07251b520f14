"""What every kind registry does: map the kinds by their names, and find one by the name a setting
gives, naming the known ones when it is not there."""

from __future__ import annotations

from typing import Protocol, TypeVar


class Named(Protocol):
    @property
    def name(self) -> str: ...


K = TypeVar("K", bound=Named)


def by_name(*kinds: K) -> dict[str, K]:
    return {kind.name: kind for kind in kinds}


def kind_named(kinds: dict[str, K], name: str, what: str) -> K:
    try:
        return kinds[name]
    except KeyError:
        raise ValueError(f"unknown {what} {name!r}; known: {', '.join(sorted(kinds))}") from None
