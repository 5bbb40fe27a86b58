"""`aisvc up` and `aisvc send`: run AIServices on this machine, and post events to them.

`up` compiles the manifests with the operator's compiler and runs the Knative objects
it produces (see `aiservice_operator.local`); it writes where it listens to
``<state dir>/local.json``, which `send`, `status` and `dlq` read when no cluster is
targeted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from aiservice_functions import contract
from aiservice_functions.durations import parse_duration
from rich.console import Console

from aiservice_operator.cli.common import DEFAULT_STATE_DIR, StateDirOpt, fail, one_line

if TYPE_CHECKING:
    from aiservice_operator.local.runner import LocalRun

# The executor (aiohttp, the CloudEvents SDK) is imported inside the commands, so that
# mounting them keeps every other `aisvc` command quick to start.

DEFAULT_BROKER_PORT = 8480
DEFAULT_SERVING_PORT = 8481
DEFAULT_EVENT_STORE_PORT = 8482


def up(
    files: Annotated[
        list[Path], typer.Option("-f", "--filename", help="AIService (and Trigger) YAML files.")
    ],
    demo: Annotated[
        bool, typer.Option(help="Send a few sample events, print what comes back, and stop.")
    ] = False,
    state_dir: StateDirOpt = DEFAULT_STATE_DIR,
    broker_port: Annotated[int, typer.Option(help="Broker ingress port (0: any free port).")] = (
        DEFAULT_BROKER_PORT
    ),
    serving_port: Annotated[int, typer.Option(help="Service URLs port (0: any free port).")] = (
        DEFAULT_SERVING_PORT
    ),
    event_store_port: Annotated[int, typer.Option(help="Event store port (0: any free port).")] = (
        DEFAULT_EVENT_STORE_PORT
    ),
    idle: Annotated[
        str, typer.Option(help="Time without events before a minScale-0 revision stops.")
    ] = "30s",
    live: Annotated[
        bool, typer.Option(help="Show the live view (else a summary line when counts change).")
    ] = True,
    event_store: Annotated[
        bool,
        typer.Option(help="Run the event store (the default dead-letter sink and replay)."),
    ] = True,
    synchronous: Annotated[
        str, typer.Option(help="SQLite synchronous mode of the broker log: FULL or NORMAL.")
    ] = "FULL",
) -> None:
    """Run AIServices on this machine: broker, Triggers, revisions, traffic, dead letters.

    No cluster needed. Events: POST CloudEvents to the broker URL shown (Knative's
    /{namespace}/{broker} shape) or use `aisvc send`. Ctrl-C stops everything; events
    accepted but not yet delivered are delivered on the next `aisvc up`.
    """
    from aiservice_operator.local import manifests as manifest_files
    from aiservice_operator.local.runner import LocalRun, UpOptions

    console = Console()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        loaded = manifest_files.load(files)
    except manifest_files.ManifestError as err:
        for problem in str(err).splitlines():
            typer.echo(f"error: {problem}", err=True)
        raise typer.Exit(code=1) from None
    options = UpOptions(
        state_dir=state_dir,
        broker_port=broker_port,
        serving_port=serving_port,
        event_store_port=event_store_port,
        event_store=event_store,
        idle_seconds=_duration(idle, "--idle"),
        synchronous=synchronous.upper(),
    )
    with _event_loop() as runner:
        code = runner.run(_up(LocalRun(loaded, options), console, demo=demo, live=live))
    raise typer.Exit(code=code)


def _event_loop() -> asyncio.Runner:
    """uvloop when it is installed (a faster event loop for the broker), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.Runner()
    return asyncio.Runner(loop_factory=uvloop.new_event_loop)


async def _up(run: LocalRun, console: Console, *, demo: bool, live: bool) -> int:
    from rich.live import Live

    from aiservice_operator.local.supervisor import RevisionFailed
    from aiservice_operator.local.view import render

    main = asyncio.current_task()
    loop = asyncio.get_running_loop()
    if main is not None:
        loop.add_signal_handler(signal.SIGTERM, main.cancel)
    try:
        with console.status("starting revisions (each must report ready first)..."):
            await run.start()
    except (RevisionFailed, ValueError) as err:
        typer.echo(f"error: cannot start: {one_line(err)}", err=True)
        return 1
    except OSError as err:  # most often a port in use
        typer.echo(
            f"error: cannot start: {one_line(err)} (another `aisvc up`? pass --broker-port 0 "
            "and friends for free ports)",
            err=True,
        )
        return 1
    try:
        console.print(f"broker: {', '.join(run.broker_urls().values())}", markup=False)
        console.print(
            f"services: {run.serving_url}/<namespace>/<service>[/tags/<tag>]", markup=False
        )
        if run.console_url:
            console.print(f"console: {run.console_url}", markup=False)
        if run.resumed:
            console.print(f"resuming {run.resumed} events accepted before the last stop")
        if demo:
            from aiservice_operator.local.demo import run_demo

            return await run_demo(run, console)
        if live:
            with Live(render(run.snapshot()), console=console, refresh_per_second=2) as view:
                while True:
                    await asyncio.sleep(0.5)
                    view.update(render(run.snapshot()))
        else:
            await _plain_progress(run, console)
        return 0
    except asyncio.CancelledError:
        return 0
    finally:
        with contextlib.suppress(Exception):
            loop.remove_signal_handler(signal.SIGTERM)
        await run.stop()
        console.print("stopped")


async def _plain_progress(run: LocalRun, console: Console) -> None:
    """Without the live view: one summary line whenever the counts change (every 5 s at most)."""
    last = ""
    while True:
        await asyncio.sleep(5)
        snap = run.snapshot()
        events = [s["events"] for s in snap["services"]]
        line = (
            f"events in {sum(b['accepted'] for b in snap['brokers'].values())}, "
            f"answered {sum(e['answered'] for e in events)}, "
            f"dead-lettered {sum(e['deadLettered'] for e in events)}, "
            f"retries {sum(e['retries'] for e in events)}"
        )
        if line != last:
            console.print(line, markup=False)
            last = line


def send(
    event_type: Annotated[str, typer.Option("--type", "-t", help="CloudEvent type.")],
    data: Annotated[str, typer.Option("--data", "-d", help="JSON data.")] = "{}",
    source: Annotated[str, typer.Option(help="CloudEvent source.")] = "/aisvc/send",
    event_id: Annotated[str, typer.Option("--id", help="CloudEvent id (default: random).")] = "",
    extension: Annotated[
        list[str], typer.Option("--ext", "-e", help="Extension attribute name=value.")
    ] = [],  # noqa: B006 - typer reads the default
    broker: Annotated[
        str, typer.Option(help="namespace/broker of the local run (default: its only broker).")
    ] = "",
    to: Annotated[str, typer.Option(help="Post here instead of the local broker.")] = "",
    structured: Annotated[bool, typer.Option(help="Structured content mode.")] = False,
    data_file: Annotated[
        Path | None,
        typer.Option(
            "--data-file",
            help="Upload this file to the claim-check bucket and send a reference to it "
            "(dataref) instead of data.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    bucket: Annotated[
        str,
        typer.Option(
            envvar=contract.ENV_CLAIMCHECK_BUCKET,
            help="Bucket for --data-file (the AIService's spec.function.claimCheck.bucket).",
        ),
    ] = "",
    endpoint: Annotated[
        str,
        typer.Option(
            envvar=contract.ENV_CLAIMCHECK_ENDPOINT,
            help="S3 endpoint for --data-file (default: AWS_ENDPOINT_URL, else AWS).",
        ),
    ] = "",
    state_dir: StateDirOpt = DEFAULT_STATE_DIR,
) -> None:
    """Post one CloudEvent, by default to the broker of the local run (`aisvc up`)."""
    import httpx

    try:
        payload: Any = json.loads(data)
    except ValueError as err:
        raise fail(f"--data is not JSON: {err}", 2) from None
    url = to or _broker_url(state_dir, broker)
    reference: dict[str, str] = {}
    if data_file is not None:
        if data != "{}":
            raise fail("--data and --data-file exclude each other", 2)
        if not bucket and not to:
            bucket, endpoint = _local_claim_check(state_dir, endpoint)
        reference = _upload(data_file, bucket, endpoint)
    attributes = {
        "specversion": "1.0",
        "id": event_id or str(uuid.uuid4()),
        "source": source,
        "type": event_type,
    }
    for item in extension:
        name, sep, value = item.partition("=")
        if not sep:
            raise fail(f"--ext {item!r}: expected name=value", 2)
        attributes[name] = value
    if reference:
        content_type = reference.pop("datacontenttype")
        attributes.update(reference)
        if structured:
            headers = {"content-type": "application/cloudevents+json"}
            body = json.dumps({**attributes, "datacontenttype": content_type})
        else:
            headers = {f"ce-{k}": v for k, v in attributes.items()}
            headers["content-type"] = content_type
            body = ""
    elif structured:
        headers = {"content-type": "application/cloudevents+json"}
        body = json.dumps({**attributes, "datacontenttype": "application/json", "data": payload})
    else:
        headers = {f"ce-{k}": v for k, v in attributes.items()}
        headers["content-type"] = "application/json"
        body = json.dumps(payload)
    try:
        response = httpx.post(url, headers=headers, content=body.encode(), timeout=30)
    except httpx.HTTPError as err:
        raise fail(f"{url}: {one_line(err)}") from None
    typer.echo(f"{response.status_code} {url} id={attributes['id']}")
    if response.content:
        typer.echo(response.text)
    if response.status_code >= 300:
        raise typer.Exit(code=1)


def _local_claim_check(state_dir: Path, endpoint: str) -> tuple[str, str]:
    """The bucket (and endpoint) of the local run's only AIService with a claimCheck."""
    from aiservice_operator.local.state_files import read_state

    state = read_state(state_dir) or {}
    checks: dict[str, dict[str, str]] = dict(state.get("claimChecks") or {})
    buckets = {c["bucket"]: c.get("endpoint", "") for c in checks.values()}
    if len(buckets) != 1:
        found = f"buckets {', '.join(sorted(buckets))}" if buckets else "no claimCheck"
        raise fail(f"--data-file: the local run declares {found}; pick one with --bucket", 2)
    ((bucket, declared),) = buckets.items()
    return bucket, endpoint or declared


def _upload(path: Path, bucket: str, endpoint: str) -> dict[str, str]:
    """Put ``path`` under ``uploads/<sha256>`` of ``bucket``; the claim-check attributes."""
    import hashlib
    import mimetypes

    from aiservice_functions import object_store

    if not bucket:
        raise fail(f"--data-file needs a bucket: --bucket or {contract.ENV_CLAIMCHECK_BUCKET}", 2)
    content = path.read_bytes()
    digest = hashlib.sha256(content).hexdigest()
    content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    key = f"uploads/{digest}"
    try:
        s3 = object_store.client(endpoint_url=endpoint or None, timeout_s=30)
        s3.put_object(Bucket=bucket, Key=key, Body=content, ContentType=content_type)
    except object_store.ObjectStoreError as err:
        raise fail(str(err), 2) from None
    except Exception as err:  # boto3 raises many unrelated types
        raise fail(f"upload to s3://{bucket}/{key} failed: {one_line(err)}") from None
    return {
        contract.EXT_DATAREF: f"s3://{bucket}/{key}",
        contract.EXT_DATASHA256: digest,
        "datacontenttype": content_type,
    }


def _duration(text: str, option: str) -> float:
    """Seconds in a duration option (`30s`, `5m`, `1h30m`), or a usage error naming it."""
    try:
        return parse_duration(text.strip())
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint=option) from None


def _broker_url(state_dir: Path, broker: str) -> str:
    from aiservice_operator.local.state_files import read_state

    state = read_state(state_dir)
    if state is None:
        raise fail(
            f"no local run found in {state_dir} (start one with `aisvc up -f FILE`), "
            "or pass --to URL"
        )
    brokers: dict[str, str] = dict(state.get("brokers") or {})
    if broker:
        if broker not in brokers:
            raise fail(f"no broker {broker} in the local run ({', '.join(brokers)})")
        return brokers[broker]
    if len(brokers) != 1:
        raise fail(f"the local run has brokers {', '.join(brokers)}: pick one with --broker")
    return next(iter(brokers.values()))


def register(app: typer.Typer) -> None:
    """Mount `up` and `send` on the `aisvc` app."""
    app.command()(up)
    app.command()(send)


if __name__ == "__main__":  # python -m aiservice_operator.cli.local up -f ...
    cli = typer.Typer(add_completion=False)
    register(cli)
    sys.exit(cli())
