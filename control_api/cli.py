"""``mlops-control`` / ``python -m control_api``: run the control service."""

from __future__ import annotations

import argparse
import logging
import sys


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
        print(f"stored the hash of {args.role} key {args.name!r} in {settings.api_keys_file()}; the key is not shown again", file=sys.stderr)
        return 0

    if args.command == "serve":
        import uvicorn

        from control_api.app import create_app
        from control_api.settings import Settings

        logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        uvicorn.run(create_app(Settings()), host=args.host, port=args.port, log_level=args.log_level)
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
