"""``python -m aiservice_functions.runtime serve ENTRYPOINT [--model URI] [--port PORT]``."""

from __future__ import annotations

import argparse
import os
import sys

from aiservice_functions import contract
from aiservice_functions.models.uri import ModelURIError
from aiservice_functions.runtime.config import ConfigError
from aiservice_functions.runtime.server import default_host, default_port, serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aiservice_functions.runtime")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("serve", help="serve a function as CloudEvents over HTTP")
    run.add_argument(
        "entrypoint",
        nargs="?",
        default=os.environ.get(contract.ENV_ENTRYPOINT) or None,
        help=f"function module (default: ${contract.ENV_ENTRYPOINT})",
    )
    run.add_argument("--model", help="model URI or local path (default: the bundled model)")
    run.add_argument("--sha256", help="sha256 the model file must match")
    run.add_argument("--model-version", help="version sent back as 'modelversion'")
    run.add_argument("--reply-type", help="CloudEvent type of replies (empty: no reply)")
    run.add_argument("--port", type=int, default=None, help=f"default: $PORT or {default_port()}")
    run.add_argument("--host", default=None, help=f"default: {default_host()}")
    args = parser.parse_args(argv)
    if not args.entrypoint:
        parser.error(f"name the function to serve, or set {contract.ENV_ENTRYPOINT}")
    try:
        serve(
            args.entrypoint,
            args.model,
            args.port,
            args.host,
            model_sha256=args.sha256,
            model_version=args.model_version,
            reply_type=args.reply_type,
        )
    except (ValueError, ConfigError, ModelURIError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
