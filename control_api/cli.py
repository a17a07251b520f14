"""``mlops-control`` / ``python -m control_api``: run the control service."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from control_api.settings import Settings


def is_loopback_host(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


def open_api_refusal(settings: Settings, host: str) -> str | None:
    """Why serving on ``host`` would expose an API nobody has to authenticate to, or None.

    auth.mode=auto leaves the API open until the first key exists, which is meant for a first try on
    one's own machine; on any other address that would hand deploy rights to the network.
    """
    from control_api.api.security import KeysFileUnreadable, load_keys

    try:
        if settings.auth.mode != "auto" or is_loopback_host(host) or load_keys(settings):
            return None
    except KeysFileUnreadable:
        return None  # the service refuses every protected route (503) until the file is repaired
    return (
        f"refusing to serve on {host}: no API key exists yet, so the API would be open to anyone who can reach it. "
        "Create one first (mlops-control create-key --name admin --role admin), or set MLOPS_AUTH__MODE=required; "
        "MLOPS_AUTH__MODE=disabled serves without authentication on purpose."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mlops-control", description="MLOps GitOps deploy control service")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the HTTP API")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--log-level", default="info")
    create_key = sub.add_parser("create-key", help="create an API key, store its hash, print the key once")
    create_key.add_argument("--name", required=True)
    create_key.add_argument("--role", choices=["reader", "deployer", "admin"], default="admin")
    args = parser.parse_args(argv)

    if args.command == "create-key":
        from control_api.api.security import add_key
        from control_api.settings import Settings

        settings = Settings()
        try:
            key = add_key(settings, args.name, args.role)
        except ValueError as exc:
            print(f"mlops-control: {exc}", file=sys.stderr)
            return 1
        print(key)
        print(
            f"stored the hash of {args.role} key {args.name!r} in {settings.api_keys_file()}; "
            "the key is not shown again",
            file=sys.stderr,
        )
        return 0

    if args.command == "serve":
        import uvicorn

        from control_api.app import create_app
        from control_api.settings import Settings
        from control_api.stack.validation import stack_problems

        settings = Settings()
        problems = stack_problems(settings)
        if problems:
            print("mlops-control: refusing to start: the settings do not work together:", file=sys.stderr)
            for problem in problems:
                print(f"  - {problem}", file=sys.stderr)
            return 2
        refusal = open_api_refusal(settings, args.host)
        if refusal:
            print(f"mlops-control: {refusal}", file=sys.stderr)
            return 2
        logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        # proxy_headers=False: uvicorn would believe X-Forwarded-For from loopback; the service itself
        # believes it only from api.trusted_proxies (see api/security.py).
        uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level=args.log_level, proxy_headers=False)
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
