"""The ``kiosk`` command: serve the kiosk, manage its database, run a device simulator."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from kiosk.config import ConfigError, Settings, load_settings

SIMULATED_DEVICES = ("card", "fingerprint", "vending")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args, rest = parser.parse_known_args(argv)
    if args.command != "simulate" and rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Alembic narrates every plugin it loads; the kiosk says what matters itself.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        if args.command == "simulate":
            module = importlib.import_module(f"simulators.{args.device}")
            code: int = module.console(rest)
            return code
        overrides = {k: v for k, v in (("host", args.__dict__.get("host")),
                                        ("port", args.__dict__.get("port"))) if v is not None}
        settings = load_settings(**overrides)
        if args.command == "serve":
            return _serve(settings)
        if args.command == "technician":
            return _technician(args, settings)
        if args.command == "motors-off":
            from kiosk.motors import all_off

            print(f"kiosk: {all_off(settings.vending, settings.state_dir)}")
            return 0
        return _db(args.db_command, settings)
    except ConfigError as exc:
        print(f"kiosk: configuration error: {exc}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kiosk", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the kiosk (HTTP API, UIs, devices)")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8000)")
    db = commands.add_parser("db", help="the kiosk's database")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    db_commands.add_parser("upgrade", help="create or migrate the database to this version")
    db_commands.add_parser("seed", help="put demo products and members into an empty database")
    db_commands.add_parser("status", help="say which schema the database has")
    technician = commands.add_parser("technician", help="who may use the maintenance page")
    technician_commands = technician.add_subparsers(dest="technician_command", required=True)
    add = technician_commands.add_parser("add", help="add a technician (asks for a secret twice)")
    add.add_argument("name")
    add.add_argument("--secret-stdin", action="store_true",
                     help="read the secret from one line of standard input (for scripts)")
    technician_commands.add_parser("list", help="list the technicians")
    commands.add_parser(
        "motors-off", help="drive every motor output inactive (systemd runs it after the server)"
    )
    simulate = commands.add_parser(
        "simulate", help="run a device simulator on its own (commands on standard input)"
    )
    simulate.add_argument("device", choices=SIMULATED_DEVICES)
    return parser


def _serve(settings: Settings) -> int:
    import uvicorn

    from kiosk.app import create_app
    from kiosk.db import Database, SchemaError
    from kiosk.server import KioskServer

    database = Database(settings.database)
    try:
        database.check()
    except SchemaError as exc:
        print(f"kiosk: {exc}", file=sys.stderr)
        return 2
    finally:
        database.dispose()
    app = create_app(settings)
    config = uvicorn.Config(app, host=settings.host, port=settings.port,
                            log_config=None, timeout_graceful_shutdown=5)
    KioskServer(config, app).run()
    return 0


def _technician(args: argparse.Namespace, settings: Settings) -> int:
    import getpass

    from kiosk import technicians
    from kiosk.db import Database, SchemaError

    database = Database(settings.database)
    try:
        database.check()
        if args.technician_command == "list":
            for name, active in technicians.names(database):
                print(name if active else f"{name} (deactivated)")
            return 0
        if args.secret_stdin:
            secret = sys.stdin.readline().rstrip("\n")
        else:
            secret = getpass.getpass(f"secret for {args.name}: ")
            if getpass.getpass("the same secret again: ") != secret:
                print("kiosk: the two secrets differ; nothing was added", file=sys.stderr)
                return 1
        technicians.add(database, args.name, secret)
        print(f"technician {args.name} added")
        return 0
    except (SchemaError, technicians.TechnicianError) as exc:
        print(f"kiosk: {exc}", file=sys.stderr)
        return 1
    finally:
        database.dispose()


def _db(command: str, settings: Settings) -> int:
    from kiosk import db, demo

    if command == "upgrade":
        revision = db.upgrade(settings.database)
        print(f"{settings.database}: schema at revision {revision}")
        return 0
    database = db.Database(settings.database)
    try:
        if command == "status":
            current = db.current_revision(database.engine)
            print(f"{settings.database}: schema at revision {current or 'none'}")
            try:
                database.check()
            except db.SchemaError as exc:
                print(f"kiosk: {exc}", file=sys.stderr)
                return 1
            return 0
        database.check()
        if demo.seed(database):
            print(f"{settings.database}: demo products and members added")
        else:
            print(f"{settings.database}: not empty, demo data left out")
        return 0
    except db.SchemaError as exc:
        print(f"kiosk: {exc}", file=sys.stderr)
        return 2
    finally:
        database.dispose()


if __name__ == "__main__":
    sys.exit(main())
