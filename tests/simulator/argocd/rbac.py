"""Accounts, tokens and the RBAC policy (Argo CD's casbin CSV: ``p, subject, resource, action, object, effect``
and ``g, user, role``), with the built-in roles ``role:admin`` and ``role:readonly``
(assets/builtin-policy.csv). An application's object is ``<project>/<app>``."""

from __future__ import annotations

import fnmatch
import secrets
import threading
from dataclasses import dataclass, field

BUILTIN_POLICY = """\
p, role:readonly, applications, get, */*, allow
p, role:readonly, projects, get, *, allow
p, role:readonly, clusters, get, *, allow
p, role:readonly, repositories, get, *, allow
p, role:readonly, logs, get, */*, allow
g, role:admin, role:readonly
p, role:admin, applications, *, */*, allow
p, role:admin, projects, *, *, allow
p, role:admin, clusters, *, *, allow
p, role:admin, repositories, *, *, allow
p, role:admin, logs, *, */*, allow
g, admin, role:admin
"""


@dataclass
class Rbac:
    policy_csv: str = ""
    default_role: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)
    passwords: dict[str, str] = field(default_factory=dict)  # account -> password (session login)
    tokens: dict[str, str] = field(default_factory=dict)  # bearer token -> account

    def _rules(self) -> tuple[list[list[str]], dict[str, set[str]]]:
        policies, groups = [], {}
        for line in (BUILTIN_POLICY + "\n" + self.policy_csv).splitlines():
            parts = [p.strip() for p in line.split(",")]
            if parts[0] == "p" and len(parts) >= 5:
                policies.append(parts[1:6] if len(parts) >= 6 else [*parts[1:5], "allow"])
            elif parts[0] == "g" and len(parts) == 3:
                groups.setdefault(parts[1], set()).add(parts[2])
        return policies, groups

    def _subjects(self, account: str, groups: dict[str, set[str]]) -> set[str]:
        seen, todo = set(), [account] + ([self.default_role] if self.default_role else [])
        while todo:
            subject = todo.pop()
            if subject not in seen:
                seen.add(subject)
                todo.extend(groups.get(subject, ()))
        return seen

    def enforce(self, account: str | None, resource: str, action: str, obj: str) -> bool:
        """Casbin with Argo CD's model: a matching deny wins over any allow; globs match."""
        if account is None:
            return False
        policies, groups = self._rules()
        subjects = self._subjects(account, groups)
        allowed = False
        for subject, p_resource, p_action, p_object, effect in policies:
            if (
                subject in subjects
                and fnmatch.fnmatchcase(resource, p_resource)
                and fnmatch.fnmatchcase(action, p_action)
                and fnmatch.fnmatchcase(obj, p_object)
            ):
                if effect == "deny":
                    return False
                allowed = True
        return allowed

    def login(self, username: str, password: str) -> str | None:
        if not username or self.passwords.get(username) != password:
            return None
        token = f"session-{secrets.token_hex(16)}"
        with self._lock:
            self.tokens[token] = username
        return token

    def account(self, token: str | None) -> str | None:
        with self._lock:
            return self.tokens.get(token) if token else None

    def expire_sessions(self) -> None:
        """Forget every session token (static tokens stay), like a restarted server with a new key."""
        with self._lock:
            self.tokens = {t: a for t, a in self.tokens.items() if not t.startswith("session-")}
