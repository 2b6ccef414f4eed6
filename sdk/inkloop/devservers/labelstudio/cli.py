"""``python -m inkloop.devservers.labelstudio setup|start|stop|status|token|config|instructions``."""

from __future__ import annotations

import argparse
import errno
import sys
from collections.abc import Sequence
from pathlib import Path

from inkloop.devservers.labelstudio.server import (
    LabelStudioHandle,
    LabelStudioServer,
    build_template,
    running_server,
    stop,
)
from inkloop.devservers.labelstudio.settings import (
    LABEL_STUDIO_VERSION,
    READY_TIMEOUT,
    LabelStudioServerError,
    default_data_dir,
    default_template_dir,
)
from inkloop.devservers.labelstudio.tokens import read_token, token_file
from inkloop.devservers.labelstudio.venv import ensure_venv
from inkloop.review.labeling import instructions_html, labeling_config


def _print_ready(handle: LabelStudioHandle) -> None:
    note = " (from the template data dir)" if handle.used_template else ""
    print(f"Label Studio is ready in {handle.started_in:.1f} s{note}")
    print(f"  url:      {handle.url}")
    print(f"  token:    {handle.token}")
    print("            (the admin's Personal Access Token; legacy tokens are off, as Label Studio ships)")
    print(f"  user:     {handle.username}")
    print(f"  pid:      {handle.pid} (pid file {handle.pid_file})")
    print(f"  log:      {handle.log_file}")
    print(f"  data dir: {handle.data_dir}")
    print(f"  local files under: {handle.document_root}")
    print("For inkloop review and the Airflow connection (password = the token):")
    where = "" if handle.data_dir == default_data_dir() else f" --data-dir {handle.data_dir}"
    print(f'  export INKLOOP_LS_URL={handle.url} INKLOOP_LS_TOKEN="$(labeling/token.sh{where})"')


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m inkloop.devservers.labelstudio",
        description="Run a local Label Studio server for inkloop (see the module docstring).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_setup = sub.add_parser("setup", help="create the venv and install Label Studio (idempotent)")
    p_setup.add_argument(
        "--template",
        action="store_true",
        help="also migrate an empty database once, so the first server starts in seconds",
    )
    p_start = sub.add_parser("start", help="start a server and wait until it is ready")
    p_start.add_argument("--port", type=int, default=None)
    p_start.add_argument("--data-dir", type=Path, default=None)
    p_start.add_argument("--no-setup", action="store_true", help="fail instead of installing")
    p_start.add_argument("--timeout", type=float, default=READY_TIMEOUT)
    p_stop = sub.add_parser("stop", help="stop the server of the data dir's pid file")
    p_stop.add_argument("--data-dir", type=Path, default=None)
    p_status = sub.add_parser("status", help="say whether the server of the data dir runs")
    p_status.add_argument("--data-dir", type=Path, default=None)
    p_token = sub.add_parser("token", help="print the admin's Personal Access Token of the data dir")
    p_token.add_argument("--data-dir", type=Path, default=None)
    p_config = sub.add_parser("config", help="print the labeling config for class names")
    p_config.add_argument("class_names", nargs="*", default=["signature"])
    sub.add_parser("instructions", help="print the reviewer instructions as HTML")
    args = parser.parse_args(argv)

    try:
        if args.command == "setup":
            venv = ensure_venv()
            print(f"Label Studio {LABEL_STUDIO_VERSION} is installed in {venv}")
            if args.template:
                built = build_template()
                print(f"template data dir {'built' if built else 'already there'}: {default_template_dir()}")
        elif args.command == "start":
            server = LabelStudioServer(timeout=args.timeout)
            if args.port is not None:
                server.port = args.port
            if args.data_dir is not None:
                server.data_dir = args.data_dir.resolve()
            if not args.no_setup:
                server.setup()
            _print_ready(server.start())
        elif args.command == "stop":
            data_dir = args.data_dir.resolve() if args.data_dir else default_data_dir()
            print("stopped" if stop(data_dir) else f"no running server for {data_dir}")
        elif args.command == "status":
            data_dir = args.data_dir.resolve() if args.data_dir else default_data_dir()
            found = running_server(data_dir)
            print(f"running: pid {found[0]}, {found[1]}" if found else f"not running ({data_dir})")
            return 0 if found else 3
        elif args.command == "token":
            data_dir = args.data_dir.resolve() if args.data_dir else default_data_dir()
            token = read_token(data_dir)
            if token is None:
                print(f"error: no token in {token_file(data_dir)}: start the server once", file=sys.stderr)
                return 3
            print(token)
        elif args.command == "config":
            sys.stdout.write(labeling_config(args.class_names))
        elif args.command == "instructions":
            sys.stdout.write(instructions_html())
    except LabelStudioServerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        if exc.errno == errno.EPIPE:
            return 0
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
