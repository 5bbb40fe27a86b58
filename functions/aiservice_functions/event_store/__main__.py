"""``python -m aiservice_functions.event_store serve --db URL --port N``.

Configuration also comes from the environment (what the chart sets):
``AISVC_EVENT_STORE_DB`` (database URL), ``AISVC_EVENT_STORE_TOKEN_FILE`` /
``AISVC_EVENT_STORE_TOKEN`` (query/replay token), ``AISVC_EVENT_STORE_AUTH_MODE``
(``token`` or ``kubernetes``), ``AISVC_EVENT_STORE_BROKER_URL``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from flask import Flask

from aiservice_functions import contract
from aiservice_functions.durations import parse_duration
from aiservice_functions.event_store import auth
from aiservice_functions.event_store.app import DEFAULT_MAX_BODY_BYTES, create_app
from aiservice_functions.event_store.guard import TargetPolicy
from aiservice_functions.event_store.kube_auth import (
    DEFAULT_TTL_S,
    SA_DIR,
    ApiServer,
    KubeReviews,
)
from aiservice_functions.event_store.replay import (
    DEFAULT_BROKER_URL,
    MAX_CONCURRENCY,
    MAX_RATE,
    MIN_RATE,
    ReplayOptions,
)
from aiservice_functions.event_store.retention import RetentionPolicy
from aiservice_functions.event_store.service import open_store
from aiservice_functions.loopback_hosts import is_loopback
from aiservice_functions.sink_key import load_sink_key

ENV_DB = "AISVC_EVENT_STORE_DB"
ENV_BROKER_URL = "AISVC_EVENT_STORE_BROKER_URL"
ENV_REPLAY_ALLOW = "AISVC_EVENT_STORE_REPLAY_ALLOW"
ENV_AUTH_CACHE_TTL = "AISVC_EVENT_STORE_AUTH_CACHE_TTL"


def duration(text: str) -> float:
    """A command-line duration (``90s``, ``15m``, ``12h``, ``30d``, ``1h30m``) in seconds."""
    try:
        return parse_duration(text.strip())
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _serving_options(s: argparse.ArgumentParser) -> None:
    """Where the store keeps records and how it serves them."""
    s.add_argument(
        "--db",
        default=os.environ.get(ENV_DB, "sqlite:///var/lib/aisvc/events.db"),
        help="sqlite:///path or postgresql://user@host/db "
        "(default: $AISVC_EVENT_STORE_DB, else sqlite:///var/lib/aisvc/events.db)",
    )
    s.add_argument(
        "--host",
        default=os.environ.get(contract.ENV_HOST, "127.0.0.1"),
        help="address to bind (default: $AISVC_HOST, else 127.0.0.1; the image sets 0.0.0.0)",
    )
    s.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get(contract.ENV_PORT, contract.EVENT_STORE_DEFAULT_PORT)),
        help=f"default: $PORT, else {contract.EVENT_STORE_DEFAULT_PORT}",
    )
    s.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes (default 1: keep 1 on SQLite, where one group writer is fastest; "
        "raise on PostgreSQL)",
    )
    s.add_argument(
        "--threads",
        type=int,
        default=8,
        help="threads per process for the query API and console (default: 8; ingest needs "
        "none: it is answered on the event loop)",
    )
    s.add_argument(
        "--max-body-bytes",
        type=int,
        default=DEFAULT_MAX_BODY_BYTES,
        help="larger requests are refused with 413 (default: 1 MiB)",
    )
    s.add_argument(
        "--read-timeout",
        type=duration,
        default=30.0,
        help="a request's headers and body must arrive within this (default: 30s; else 408)",
    )
    s.add_argument(
        "--idle-timeout",
        type=duration,
        default=10.0,
        help="longest pause while a request arrives (default: 10s; else dropped)",
    )
    s.add_argument(
        "--log-format",
        choices=("json", "text"),
        default=None,
        help="json lines (default, or $AISVC_LOG_FORMAT) or text",
    )


def _access_options(s: argparse.ArgumentParser) -> None:
    """Who may query, replay and post records."""
    s.add_argument(
        "--auth-mode",
        choices=auth.MODES,
        default=os.environ.get(auth.ENV_AUTH_MODE, "token"),
        help="kubernetes: callers send their own Kubernetes token and RBAC decides, per "
        "namespace (TokenReview, SubjectAccessReview); token: the shared token(s) below "
        f"(default: ${auth.ENV_AUTH_MODE}, else token)",
    )
    s.add_argument(
        "--kube-api-url",
        default=None,
        help="API server for --auth-mode=kubernetes (default: the pod's, from "
        "KUBERNETES_SERVICE_HOST and the ServiceAccount mount)",
    )
    s.add_argument(
        "--kube-token-file",
        default=None,
        help="the store's own token for the reviews (default: the ServiceAccount's)",
    )
    s.add_argument(
        "--kube-ca-file",
        default=None,
        help="CA of the API server (default: the ServiceAccount's ca.crt)",
    )
    s.add_argument(
        "--auth-cache-ttl",
        type=duration,
        default=os.environ.get(ENV_AUTH_CACHE_TTL, f"{DEFAULT_TTL_S:g}s"),
        help=f"how long review answers are kept (default: ${ENV_AUTH_CACHE_TTL}, else "
        f"{DEFAULT_TTL_S:g}s; a revoked RoleBinding takes effect within it)",
    )
    s.add_argument(
        "--token-file",
        default=None,
        help="file holding the query/replay token (default: "
        "$AISVC_EVENT_STORE_TOKEN_FILE, else the token in $AISVC_EVENT_STORE_TOKEN)",
    )
    s.add_argument(
        "--sink-key-file",
        default=None,
        help="file holding the key of the ingest credentials in sink URLs (default: "
        "$AISVC_EVENT_STORE_SINK_KEY_FILE, else $AISVC_EVENT_STORE_SINK_KEY; none: ingest "
        "is open, for local use only)",
    )
    s.add_argument(
        "--read-token-file",
        default=None,
        help="file holding a second token that lists and shows but cannot replay "
        f"(default: ${auth.ENV_READ_TOKEN_FILE}, else none)",
    )
    s.add_argument(
        "--allow-unauthenticated",
        action="store_true",
        help="serve the query/replay API without a token (local use only)",
    )
    s.add_argument(
        "--loopback-only",
        action="store_true",
        help="answer only requests whose Host names the loopback --host and --port "
        "(127.0.0.1:PORT, localhost:PORT, [::1]:PORT), refusing others with 421: a web "
        "page rebinding its name to 127.0.0.1 cannot reach the store (aisvc up sets it)",
    )


def _replay_options(s: argparse.ArgumentParser) -> None:
    """Where replays go and how fast."""
    s.add_argument(
        "--broker-url",
        default=os.environ.get(ENV_BROKER_URL, DEFAULT_BROKER_URL),
        help="Broker ingress base; replays go to {url}/{namespace}/{broker} "
        f"(default: $AISVC_EVENT_STORE_BROKER_URL, else {DEFAULT_BROKER_URL})",
    )
    s.add_argument(
        "--replay-concurrency", type=int, default=4, help="parallel sends of a replay (default: 4)"
    )
    s.add_argument(
        "--replay-rate", type=float, default=0.0, help="events/s, 0 = unbounded (default)"
    )
    s.add_argument(
        "--replay-allow-target",
        action="append",
        default=[e for e in os.environ.get(ENV_REPLAY_ALLOW, "").split(",") if e.strip()],
        metavar="HOST|*.SUFFIX|CIDR",
        help="admit replay targets on this host, domain or network; by default a replay "
        "goes only to the Broker (--broker-url), never to an internal or public address; "
        "repeatable "
        f"(default: ${ENV_REPLAY_ALLOW}, comma-separated)",
    )


def _retention_options(s: argparse.ArgumentParser) -> None:
    """How long records are kept."""
    s.add_argument(
        "--retention-max-age",
        type=duration,
        default=None,
        help="drop records older than this, e.g. 30d (default: keep)",
    )
    s.add_argument(
        "--retention-max-count",
        type=int,
        default=None,
        help="records kept per AIService and kind (default: no limit)",
    )
    s.add_argument(
        "--retention-interval",
        type=duration,
        default=60.0,
        help="how often retention runs (default: 60s)",
    )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m aiservice_functions.event_store")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run the event store HTTP service")
    for add in (_serving_options, _access_options, _replay_options, _retention_options):
        add(s)
    return p


def _kube_reviews(args: argparse.Namespace) -> KubeReviews | None:
    """The cluster's reviews in ``kubernetes`` mode (``None`` in ``token`` mode)."""
    if args.auth_mode != "kubernetes":
        return None
    if args.kube_api_url:
        server = ApiServer(
            args.kube_api_url,
            Path(args.kube_token_file or SA_DIR / "token"),
            Path(args.kube_ca_file) if args.kube_ca_file else SA_DIR / "ca.crt",
        )
    else:
        server = ApiServer.in_cluster()
        if args.kube_token_file or args.kube_ca_file:
            server = ApiServer(
                server.url,
                Path(args.kube_token_file) if args.kube_token_file else server.token_file,
                Path(args.kube_ca_file) if args.kube_ca_file else server.ca_file,
            )
    server.token_file.read_text(encoding="utf-8")  # fail fast: the store's own token
    return KubeReviews(server, ttl_s=args.auth_cache_ttl)


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    token = auth.load_token(token_file=args.token_file)
    try:
        sink_key = load_sink_key(key_file=args.sink_key_file)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if sink_key is None:
        print(
            "note: no sink key configured; ingest accepts records for any AIService "
            f"(set {contract.ENV_EVENT_STORE_SINK_KEY_FILE} or --sink-key-file)",
            file=sys.stderr,
        )
    read_token = auth.load_read_token(args.read_token_file)
    try:
        reviews = _kube_reviews(args)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if reviews is None and token is None and not args.allow_unauthenticated:
        print(
            "note: no token configured; the query/replay API refuses every request "
            f"(set {contract.ENV_EVENT_STORE_TOKEN_FILE} or --allow-unauthenticated)",
            file=sys.stderr,
        )
    if args.loopback_only and not is_loopback(args.host):
        print(f"error: --loopback-only needs a loopback --host, not {args.host}", file=sys.stderr)
        return 2
    # Fail fast on a bad URL or an unreachable database, before forking workers.
    open_store(args.db).close()
    retention = RetentionPolicy(
        max_age_s=args.retention_max_age,
        max_count=args.retention_max_count,
        interval_s=args.retention_interval,
    )
    try:
        policy = TargetPolicy.parse(args.replay_allow_target)
    except ValueError as err:
        print(f"error: --replay-allow-target: {err}", file=sys.stderr)
        return 2
    if not 1 <= args.replay_concurrency <= MAX_CONCURRENCY:
        print(f"error: --replay-concurrency must be 1 to {MAX_CONCURRENCY}", file=sys.stderr)
        return 2
    if args.replay_rate != 0 and not MIN_RATE <= args.replay_rate <= MAX_RATE:
        print(f"error: --replay-rate must be 0 or {MIN_RATE} to {MAX_RATE:g}", file=sys.stderr)
        return 2
    replay_defaults = ReplayOptions(
        broker_url=args.broker_url,
        concurrency=args.replay_concurrency,
        rate=args.replay_rate,
        policy=policy,
    )

    def factory() -> Flask:
        authenticator = auth.Authenticator(
            token, read_token, args.allow_unauthenticated, _kube_reviews(args)
        )
        return create_app(
            open_store(args.db, retention=retention),
            authenticator=authenticator,
            max_body_bytes=args.max_body_bytes,
            replay_defaults=replay_defaults,
            sink_key=sink_key,
            loopback_listener=(args.host, args.port) if args.loopback_only else None,
        )

    from aiservice_functions.event_store.server import serve

    serve(
        factory,
        args.host,
        args.port,
        workers=args.workers,
        threads=args.threads,
        log_format=args.log_format,
        read_timeout=args.read_timeout,
        idle_timeout=args.idle_timeout,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
