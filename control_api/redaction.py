"""The one redaction helper: credentials never reach a log line, an error body, the journal or git.

Two rules, applied to every text that leaves the service through one of those doors:

1. **Credentials in URLs.** ``scheme://user:password@host`` becomes ``scheme://user:***@host``; the
   lone user part of an http(s) URL (``https://TOKEN@host``, how some forges take a token) becomes
   ``***``. This needs no configuration, so it also covers URLs a remote echoes back.
2. **Known secret values.** Every ``SecretStr`` setting and the password of every URL-valued setting
   is registered when the service loads its settings (:func:`register_settings`, called by
   ``Services``). Each is replaced by ``***`` wherever it occurs: as is, URL-quoted, and inside an
   HTTP Basic credential (base64 of ``user:secret``).

The registry of known secrets is process-wide because logging is process-wide: a log record factory
(:func:`install_log_scrubber`) scrubs every record of every logger (the service's own, uvicorn's,
MLflow's, httpx's), formatted tracebacks included. Masking another app instance's secret in the same
process harms nothing. Secrets shorter than :data:`MIN_SECRET_LENGTH` characters are not registered:
masking them everywhere would garble every message while protecting nothing worth protecting.

Where it is applied: the step log and every error the orchestrator records (so the journal, the API
views and the event stream), every error body (``control_api.api.errors``), the status page, training
logs before they are kept, the git adapter's and the forge client's error texts, and what is rendered
into the GitOps repo (:func:`url_without_credentials`).
"""

from __future__ import annotations

import base64
import logging
import os
import re
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from pydantic import BaseModel, SecretStr

REDACTED = "***"
MIN_SECRET_LENGTH = 4
# Users that forges and registries accept with a token as the password (HTTP Basic forms).
TOKEN_USERS = ("x-access-token", "oauth2", "git", "token", "")

# scheme://userinfo@ — the userinfo runs up to the last "@" before the end of the authority. The
# scheme's length is bounded so that a long run like "a.a.a.a..." costs linear time, not quadratic.
_URL_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]{0,31}://)(?P<userinfo>[^\s/?#'\"<>\\]+)@")
_LONE_USER_SCHEMES = ("http://", "https://")

_lock = threading.Lock()
_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None


# ---- text ------------------------------------------------------------------------------------------


def _mask_userinfo(match: re.Match[str]) -> str:
    scheme, userinfo = match.group("scheme"), match.group("userinfo")
    if ":" in userinfo:
        user = userinfo.split(":", 1)[0]
        return f"{scheme}{user}:{REDACTED}@"
    if scheme.lower() in _LONE_USER_SCHEMES and userinfo != REDACTED:
        return f"{scheme}{REDACTED}@"
    return match.group(0)


def redact(text: str, extra: Iterable[str | None] = ()) -> str:
    """``text`` with URL credentials and every known secret (plus ``extra`` ones) masked."""
    if not text:
        return text
    if not isinstance(text, str):
        text = str(text)
    pattern = _pattern
    extra_forms = [form for secret in extra if secret for form in _forms(secret)]
    if extra_forms:
        pattern = _compile(set(extra_forms) | _secrets)
    if pattern is not None:
        text = pattern.sub(REDACTED, text)
    if "://" in text:
        text = _URL_USERINFO.sub(_mask_userinfo, text)
    return text


def redact_value(value: Any) -> Any:
    """A JSON-like value (dicts, lists, strings) with every string redacted."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact_value(key) if isinstance(key, str) else key: redact_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact_value(item) for item in value)
    return value


def url_without_credentials(url: str) -> str:
    """``url`` with its whole user part removed, for URLs that are stored or shown (GitOps manifests,
    image labels). Anything that is not a URL with a user part comes back unchanged."""
    parts = urlsplit(url)
    if not parts.scheme or "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=host))


def redact_file(path: Path, chunk_bytes: int = 1 << 20) -> None:
    """Rewrite a log file with every secret masked, streaming (training logs can be large)."""
    path = Path(path)
    if not path.exists():
        return
    overlap = max([len(secret) for secret in _secrets] + [512])
    handle, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with open(path, "rb") as source, os.fdopen(handle, "wb") as target:
            carry = b""
            while True:
                chunk = source.read(chunk_bytes)
                buffer = carry + chunk
                if not chunk:
                    target.write(redact(buffer.decode("utf-8", "surrogateescape")).encode("utf-8", "surrogateescape"))
                    break
                # Cut after the last newline so a secret or URL is never split; a line longer than
                # a few chunks is cut anyway, keeping the longest secret's length as overlap.
                cut = buffer.rfind(b"\n") + 1
                if cut == 0 and len(buffer) > 4 * chunk_bytes:
                    cut = len(buffer) - overlap
                head, carry = buffer[:cut], buffer[cut:]
                target.write(redact(head.decode("utf-8", "surrogateescape")).encode("utf-8", "surrogateescape"))
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


# ---- registry of known secrets ---------------------------------------------------------------------


def _forms(secret: str, users: Iterable[str] = ()) -> set[str]:
    forms = {secret, quote(secret, safe="")}
    for user in {*TOKEN_USERS, *users}:
        forms.add(base64.b64encode(f"{user}:{secret}".encode()).decode())
    return {form for form in forms if len(form) >= MIN_SECRET_LENGTH}


def _compile(forms: set[str]) -> re.Pattern[str] | None:
    if not forms:
        return None
    # Longest first, so a secret that contains another is masked whole.
    return re.compile("|".join(re.escape(form) for form in sorted(forms, key=len, reverse=True)))


def register_secret(secret: str | SecretStr | None, users: Iterable[str] = ()) -> None:
    """Mask ``secret`` from now on (in every form listed in the module docstring)."""
    global _pattern
    if isinstance(secret, SecretStr):
        secret = secret.get_secret_value()
    if not secret or len(secret) < MIN_SECRET_LENGTH:
        return
    forms = _forms(secret, users)
    with _lock:
        if forms <= _secrets:
            return
        _secrets.update(forms)
        _pattern = _compile(_secrets)
    install_log_scrubber()


def secrets_in_settings(settings: BaseModel) -> tuple[list[str], list[str]]:
    """(secret values, user names) of a settings tree: every SecretStr, every URL's password (and the
    lone user part of an http(s) URL), and every ``username`` for the Basic forms."""
    secrets: list[str] = []
    users: list[str] = []

    def visit(value: Any, name: str) -> None:
        if isinstance(value, SecretStr):
            secrets.append(value.get_secret_value())
        elif isinstance(value, BaseModel):
            for field in type(value).model_fields:
                visit(getattr(value, field), field)
        elif isinstance(value, (list, tuple)):
            for item in value:
                visit(item, name)
        elif isinstance(value, str):
            if name == "username" and value:
                users.append(value)
            for match in _URL_USERINFO.finditer(value):
                user, colon, password = match.group("userinfo").partition(":")
                if colon:
                    secrets.extend({password, unquote(password)})
                    users.append(unquote(user))
                elif match.group("scheme").lower() in _LONE_USER_SCHEMES:
                    secrets.extend({user, unquote(user)})

    visit(settings, "")
    return [secret for secret in secrets if secret], users


def register_settings(settings: BaseModel) -> None:
    """Register every secret of the service's settings (see :func:`secrets_in_settings`)."""
    secrets, users = secrets_in_settings(settings)
    for secret in secrets:
        register_secret(secret, users)
    install_log_scrubber()


# ---- logging ---------------------------------------------------------------------------------------

_scrubber_installed = False


def _scrub(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except Exception:  # a malformed record: logging reports it itself when it formats it
        return
    clean = redact(message)
    if clean != message:
        # Keep the record's shape where possible: some formatters (uvicorn's access log) unpack args.
        if isinstance(record.args, tuple) and isinstance(record.msg, str):
            msg = redact(record.msg)
            args = tuple(redact(arg) if isinstance(arg, str) else arg for arg in record.args)
            try:
                kept = (msg % args if args else msg) == clean
            except (TypeError, ValueError):
                kept = False
            if kept:
                record.msg, record.args = msg, args
                return _scrub_exception(record)
        record.msg, record.args = clean, ()
    _scrub_exception(record)


def _scrub_exception(record: logging.LogRecord) -> None:
    if record.exc_info and not record.exc_text:
        record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
    if record.stack_info:
        record.stack_info = redact(record.stack_info)


def install_log_scrubber() -> None:
    """Scrub every log record of the process when it is created (idempotent)."""
    global _scrubber_installed
    with _lock:
        if _scrubber_installed:
            return
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            _scrub(record)
            return record

        logging.setLogRecordFactory(factory)
        _scrubber_installed = True
