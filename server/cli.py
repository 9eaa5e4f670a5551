"""``sohoa-server``: run the archive service and administer it."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from server import auth, config
from server.db import Database


def _settings(args: argparse.Namespace) -> config.ServerSettings:
    try:
        return config.load(args.config)
    except config.ConfigError as exc:
        print(f"sohoa-server: invalid configuration: {exc}", file=sys.stderr)
        raise SystemExit(78) from exc


def cmd_run(args: argparse.Namespace) -> int:
    import uvicorn

    from server.app import create_app

    settings = _settings(args)
    updates = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    if args.no_ingest:
        updates["ingest"] = False
    settings = settings.model_copy(update=updates)
    logging.getLogger(__name__).info(
        "serving on http://%s:%d (data in %s)", settings.host, settings.port, settings.data_dir
    )
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_config=None)
    return 0


def cmd_token_create(args: argparse.Namespace) -> int:
    settings = _settings(args)
    db = Database(settings.sqlite_path())
    print(auth.create_token(db, args.user, args.note or ""))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sohoa-server", description="Central archive: ingest, store, staff web app and API."
    )
    parser.add_argument("--config", type=Path, help="TOML settings file")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run ingest + web app + API")
    run.add_argument("--host", help="listen address (default 127.0.0.1)")
    run.add_argument("--port", type=int, help="listen port (default 8080)")
    run.add_argument("--no-ingest", action="store_true", help="serve only; no MQTT ingest")
    run.set_defaults(func=cmd_run)
    token = sub.add_parser("token", help="API / web access tokens")
    token_sub = token.add_subparsers(dest="token_command", required=True)
    create = token_sub.add_parser("create", help="create a token and print it once")
    create.add_argument("--user", required=True, help="who the token is for")
    create.add_argument("--note", help="what it is for")
    create.set_defaults(func=cmd_token_create)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
