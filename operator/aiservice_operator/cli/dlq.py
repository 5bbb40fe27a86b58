"""`aisvc dlq`: browse, inspect and replay dead letters held by the event store.

Talks to the event store's HTTP API (see `aiservice_functions.event_store.app`) at
`--url` / `AISVC_EVENT_STORE_URL`, with the bearer token from `--token` /
`AISVC_EVENT_STORE_TOKEN`, else the user's own token from the current kubeconfig context
(:mod:`.identity`; an event store in auth mode ``kubernetes``). Tables for people,
`--output json` for scripts.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from aiservice_functions import contract
from aiservice_functions.durations import EXAMPLES, parse_duration
from aiservice_functions.timestamps import parse_time, rfc3339
from rich.console import Console
from rich.highlighter import JSONHighlighter
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from aiservice_operator.cli.common import DEFAULT_STATE_DIR, fail, one_line, printable, shown
from aiservice_operator.sources.event_store import EventStoreClient, EventStoreError

app = typer.Typer(
    name="dlq",
    help="Browse and replay dead letters held by the event store.",
    no_args_is_help=True,
    add_completion=False,
)

DEFAULT_URL = f"http://127.0.0.1:{contract.EVENT_STORE_DEFAULT_PORT}"
"""Not the function runtime's port: a forgotten --url must not send the token there."""
REPLAYS_PATH = "/v1/replays"
POLL_S = 0.2


class Output(StrEnum):
    table = "table"
    json = "json"


Url = Annotated[
    str | None,
    typer.Option(
        "--url",
        envvar=contract.ENV_EVENT_STORE_URL,
        help="Base URL of the event store (default: the local run's, when `aisvc up` runs "
        f"with --state-dir, else {DEFAULT_URL}, e.g. a port-forward).",
        show_default=False,
    ),
]
Token = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar=contract.ENV_EVENT_STORE_TOKEN,
        help="Bearer token of the event store's query API (default: the current "
        "kubeconfig context's token, for a store in auth mode kubernetes).",
        show_default=False,
    ),
]
OutputOpt = Annotated[Output, typer.Option("--output", "-o", help="table or json.")]
Namespace = Annotated[str | None, typer.Option("--namespace", "-n", help="Namespace.")]
Name = Annotated[str | None, typer.Option("--name", help="AIService name.")]
Type = Annotated[str | None, typer.Option("--type", help="CloudEvent type.")]
Code = Annotated[int | None, typer.Option("--code", help="HTTP status of the failed delivery.")]
Revision = Annotated[
    str | None, typer.Option("--revision", help="Revision name or traffic tag (canary, v2).")
]
Since = Annotated[
    str | None,
    typer.Option("--since", help="Received at or after: RFC 3339, or an age like 30m, 1h30m, 7d."),
]
Until = Annotated[str | None, typer.Option("--until", help="Received before: RFC 3339, or an age.")]


def _when(value: str | None, option: str) -> str | None:
    """An RFC 3339 timestamp, or an age in the duration grammar (`2h`, `1h30m`, `7d`)
    turned into one."""
    if value is None:
        return None
    try:
        ago = timedelta(seconds=parse_duration(value.strip()))
    except ValueError:
        pass
    else:
        return rfc3339(datetime.now(UTC) - ago, digits=6)
    try:
        parse_time(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is neither an RFC 3339 timestamp nor an age such as {EXAMPLES}",
            param_hint=option,
        ) from None
    return value


StoreStateDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        help="State directory of a local run (`aisvc up --state-dir`) whose event store to "
        f"use (default: {DEFAULT_STATE_DIR}, when a run is live there).",
        show_default=False,
    ),
]


def store_for(url: str | None, token: str | None, state_dir: Path | None) -> tuple[str, str | None]:
    """(base URL, token) of the event store a command talks to.

    ``--url`` (or its variable) wins, with the token. Else the store of the live local
    run in ``--state-dir`` (default ``.aisvc``), never with the token: a local run's
    store needs none, and a state file must not be able to send it elsewhere. A
    ``--state-dir`` naming no live run is an error, as for `aisvc send`; without one,
    and no run in ``.aisvc``, DEFAULT_URL (a port-forward), with the token. Without a
    token, a cluster's store gets the user's own, from the current kubeconfig context.
    """
    from aiservice_operator.local.state_files import read_state

    if url:
        return url, token or _own_token()
    state = read_state(state_dir or DEFAULT_STATE_DIR)
    if state is not None and state.get("eventStoreUrl"):
        return str(state["eventStoreUrl"]), None
    if state_dir is not None and state is not None:
        raise fail(f"the local run in {state_dir} runs without an event store; pass --url")
    if state_dir is not None:
        raise fail(
            f"no local run found in {state_dir} (start one with `aisvc up -f FILE`), or pass --url"
        )
    return DEFAULT_URL, token or _own_token()


def _own_token() -> str | None:
    """The current kubeconfig context's bearer token (``None`` without a kubeconfig)."""
    from aiservice_operator.cli.identity import NoToken, kubeconfig_token

    try:
        return kubeconfig_token()
    except NoToken as err:
        typer.echo(f"note: {err}", err=True)
        return None


def _call(method: str, url: str, path: str, token: str | None, **kwargs: Any) -> Any:
    """One call to the store for a command: a failure is printed and ends the command
    with status 1."""
    store = EventStoreClient(url, token, timeout_seconds=30.0)
    try:
        return store.json(method, path, **kwargs)
    except EventStoreError as err:
        hint = ""
        if err.status in (401, 403):
            hint = (
                f" (set --token or {contract.ENV_EVENT_STORE_TOKEN}; a store in auth mode "
                "kubernetes takes your kubeconfig's token, and RBAC decides)"
            )
        typer.echo(f"error: {one_line(err)}{hint}", err=True)
        raise typer.Exit(code=1) from None


def _filters(
    namespace: str | None,
    name: str | None,
    type_: str | None,
    code: int | None,
    revision: str | None,
    since: str | None,
    until: str | None,
) -> dict[str, Any]:
    values = {
        "namespace": namespace,
        "name": name,
        "type": type_,
        "code": code,
        "revision": revision,
        "since": _when(since, "--since"),
        "until": _when(until, "--until"),
    }
    return {k: v for k, v in values.items() if v is not None}


def _short_time(value: str | None) -> str:
    return (value or "")[:19].replace("T", " ")


def _summary_table(items: list[dict[str, Any]], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("SEQ", "RECEIVED", "AISERVICE", "TYPE", "ID", "CODE", "REVISION", "REPLAYED"):
        table.add_column(column, overflow="fold")
    for item in items:
        replayed = f"yes ({item['replayCount']})" if item["replayed"] else "no"
        if not item["replayed"] and item.get("lastReplayStatus"):
            replayed = f"failed ({item['lastReplayStatus']})"
        table.add_row(
            str(item["seq"]),
            shown(_short_time(item["receivedAt"])),
            shown(f"{item['namespace']}/{item['name']}"),
            shown(item["type"]),
            shown(item["id"]),
            str(item["errorCode"] or ""),
            shown(item["revision"] or ""),
            shown(replayed),
        )
    return table


@app.command("list")
def list_(
    url: Url = None,
    token: Token = None,
    state_dir: StoreStateDirOpt = None,
    namespace: Namespace = None,
    name: Name = None,
    type_: Type = None,
    code: Code = None,
    revision: Revision = None,
    since: Since = None,
    until: Until = None,
    replayed: Annotated[
        bool | None,
        typer.Option("--replayed/--pending", help="Only replayed, or only pending ones."),
    ] = None,
    audit: Annotated[
        bool, typer.Option("--audit", help="List audit events instead of dead letters.")
    ] = False,
    limit: Annotated[int, typer.Option(help="Records per page (max 500).")] = 50,
    cursor: Annotated[str | None, typer.Option(help="Continue after a previous page.")] = None,
    all_pages: Annotated[bool, typer.Option("--all", help="Follow every page.")] = False,
    output: OutputOpt = Output.table,
) -> None:
    """List dead letters (newest first), filtered and paginated."""
    url, token = store_for(url, token, state_dir)
    params = _filters(namespace, name, type_, code, revision, since, until)
    params["kind"] = "audit" if audit else "dead-letter"
    if replayed is not None:
        params["replayed"] = "true" if replayed else "false"
    params["limit"] = limit
    items: list[dict[str, Any]] = []
    next_cursor = cursor
    while True:
        if next_cursor:
            params["cursor"] = next_cursor
        page = _call("GET", url, "/v1/events", token, params=params)
        items += page["items"]
        next_cursor = page["nextCursor"]
        if not all_pages or not next_cursor:
            break
    if output is Output.json:
        typer.echo(json.dumps({"items": items, "nextCursor": next_cursor}, indent=2))
        return
    console = Console()
    what = "audit events" if audit else "dead letters"
    console.print(_summary_table(items, f"{len(items)} {what}"))
    if next_cursor:
        console.print(f"more: --cursor {next_cursor}  (or --all)")


@app.command()
def show(
    seq: Annotated[int, typer.Argument(help="The record's SEQ (from `aisvc dlq list`).")],
    url: Url = None,
    token: Token = None,
    state_dir: StoreStateDirOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Show one record: why it failed and the whole event."""
    url, token = store_for(url, token, state_dir)
    record = _call("GET", url, f"/v1/events/{seq}", token)
    if output is Output.json:
        typer.echo(json.dumps(record, indent=2))
        return
    console = Console()
    table = Table(show_header=False, title=f"record {seq}", title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for label, key in (
        ("kind", "kind"),
        ("aiservice", None),
        ("id", "id"),
        ("source", "source"),
        ("type", "type"),
        ("received", "receivedAt"),
        ("receipts", "receipts"),
        ("failed at", "errorDest"),
        ("status", "errorCode"),
        ("revision", "revision"),
        ("replays", "replayCount"),
        ("replayed at", "replayedAt"),
        ("last replay", "lastReplayError"),
    ):
        value = f"{record['namespace']}/{record['name']}" if key is None else record.get(key)
        table.add_row(label, shown("" if value is None else value))
    error_data = record.get("errorData")
    if error_data is not None:
        text = error_data if isinstance(error_data, str) else json.dumps(error_data, indent=2)
        table.add_row("response", shown(text))
    console.print(table)
    event = json.dumps(record["event"], indent=2, ensure_ascii=False)
    console.print(JSONHighlighter()(printable(event)))


def _print_replay(summary: dict[str, Any]) -> None:
    """The replay summary as a table, one row per record sent."""
    console = Console()
    table = Table(
        title=(
            f"{summary['selected']} selected, {summary['replayed']} replayed, "
            f"{summary['failed']} failed"
        ),
        title_justify="left",
    )
    for column in ("SEQ", "ID", "AISERVICE", "REPLAY", "RESULT"):
        table.add_column(column, overflow="fold")
    for r in summary["results"]:
        result = f"ok ({r['status']})" if r["ok"] else (r["error"] or "failed")
        table.add_row(
            str(r["seq"]),
            shown(r["id"]),
            shown(f"{r['namespace']}/{r['name']}"),
            str(r["replay"]),
            shown(result),
        )
    console.print(table)
    if summary["selected"] == 0:
        console.print("nothing to replay (already replayed? use --force to re-send)")
    if summary["state"] != "succeeded":
        console.print(printable(f"replay {summary['id']} {summary['state']}"), markup=False)


def _selection_body(seqs: list[int] | None, flt: dict[str, Any], all_: bool) -> dict[str, Any]:
    """What a replay selects: SEQs and/or filters, or everything only when asked to."""
    body: dict[str, Any] = {}
    if seqs:
        body["seqs"] = seqs
    if flt:
        body["filter"] = flt
    if not body:
        if not all_:
            typer.echo(
                "error: say what to replay: SEQs, a filter (-n/--name/--type/...), or --all",
                err=True,
            )
            raise typer.Exit(code=2)
        body["all"] = True
    return body


@app.command()
def replay(
    seqs: Annotated[
        list[int] | None, typer.Argument(help="SEQs to replay; or select with the filters.")
    ] = None,
    url: Url = None,
    token: Token = None,
    state_dir: StoreStateDirOpt = None,
    namespace: Namespace = None,
    name: Name = None,
    type_: Type = None,
    code: Code = None,
    revision: Revision = None,
    since: Since = None,
    until: Until = None,
    all_: Annotated[
        bool, typer.Option("--all", help="Every pending dead letter (no other selection).")
    ] = False,
    target: Annotated[
        str | None,
        typer.Option(help="Send to this URL instead of the namespace's Broker ingress."),
    ] = None,
    broker: Annotated[str | None, typer.Option(help="Broker name (default: default).")] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Also re-send records replayed before.")
    ] = False,
    concurrency: Annotated[
        int | None, typer.Option(help="Parallel sends (default: the store's, 4; at most 64).")
    ] = None,
    rate: Annotated[float | None, typer.Option(help="Events per second (0: unbounded).")] = None,
    limit: Annotated[
        int | None,
        typer.Option(help="At most this many records, oldest first (default 1000, max 10000)."),
    ] = None,
    detach: Annotated[
        bool,
        typer.Option(
            "--detach", help="Start the replay job and print its id; follow it with `dlq job`."
        ),
    ] = False,
    output: OutputOpt = Output.table,
) -> None:
    """Re-send dead letters with their original id; marks them replayed on a 2xx.

    Runs as a job in the event store, with a progress bar here; Ctrl-C stops watching
    (the job goes on: `aisvc dlq cancel ID` stops it). Replaying the same selection
    again sends nothing unless --force.
    """
    url, token = store_for(url, token, state_dir)
    flt = _filters(namespace, name, type_, code, revision, since, until)
    body = _selection_body(seqs, flt, all_)
    settings = {"target": target, "broker": broker, "concurrency": concurrency, "rate": rate}
    body.update({k: v for k, v in settings.items() if v is not None})
    if limit is not None:
        body["limit"] = limit
    if force:
        body["force"] = True
    job = _call("POST", url, REPLAYS_PATH, token, json=body)
    if detach:
        typer.echo(json.dumps(job, indent=2) if output is Output.json else job["id"])
        return
    summary = _follow(url, token, job, show=output is Output.table)
    if output is Output.json:
        typer.echo(json.dumps(summary, indent=2))
    else:
        _print_replay(summary)
    if summary["failed"] or summary["state"] != "succeeded":
        raise typer.Exit(code=1)


def _follow(url: str, token: str | None, job: dict[str, Any], show: bool) -> Any:
    """Poll a replay job until it ends, drawing a progress bar on stderr when ``show``."""
    path = f"{REPLAYS_PATH}/{job['id']}"
    console = Console(stderr=True)
    try:
        with Progress(
            TextColumn("replay"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[failed]} failed"),
            TimeElapsedColumn(),
            console=console,
            disable=not show,
            transient=console.is_terminal,  # a log keeps the final line
        ) as bar:
            task = bar.add_task("replay", total=None, failed=0)
            while True:
                state = _call("GET", url, path, token)
                total = state["selected"] or None
                bar.update(task, total=total, completed=state["done"], failed=state["failed"])
                if state["state"] != "running":
                    return state
                time.sleep(POLL_S)
    except KeyboardInterrupt:
        typer.echo(
            f"stopped watching; replay {job['id']} goes on (aisvc dlq cancel {job['id']})",
            err=True,
        )
        raise typer.Exit(code=130) from None


@app.command("job")
def job_(
    job_id: Annotated[str, typer.Argument(help="Replay job id (from `dlq replay --detach`).")],
    url: Url = None,
    token: Token = None,
    state_dir: StoreStateDirOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Show a replay job: its state and progress."""
    url, token = store_for(url, token, state_dir)
    state = _call("GET", url, f"{REPLAYS_PATH}/{job_id}", token)
    if output is Output.json:
        typer.echo(json.dumps(state, indent=2))
        return
    typer.echo(
        printable(
            f"{state['id']}  {state['state']}  {state['done']}/{state['selected']} done, "
            f"{state['replayed']} replayed, {state['failed']} failed, "
            f"{state['cancelled']} cancelled"
        )
    )


@app.command()
def cancel(
    job_id: Annotated[str, typer.Argument(help="Replay job id.")],
    url: Url = None,
    token: Token = None,
    state_dir: StoreStateDirOpt = None,
) -> None:
    """Cancel a replay job: sends in flight finish, the rest stay pending."""
    url, token = store_for(url, token, state_dir)
    state = _call("DELETE", url, f"{REPLAYS_PATH}/{job_id}", token)
    typer.echo(printable(f"cancel requested for {state['id']} ({state['state']})"))


@app.command()
def stats(
    url: Url = None,
    token: Token = None,
    state_dir: StoreStateDirOpt = None,
    namespace: Namespace = None,
    name: Name = None,
    since: Since = None,
    until: Until = None,
    output: OutputOpt = Output.table,
) -> None:
    """Dead-letter counts per AIService and per revision."""
    url, token = store_for(url, token, state_dir)
    params = _filters(namespace, name, None, None, None, since, until)
    result = _call("GET", url, contract.EVENT_STORE_STATS_PATH, token, params=params)
    if output is Output.json:
        typer.echo(json.dumps(result, indent=2))
        return
    console = Console()
    services = Table(title="per AIService", title_justify="left")
    for column in ("AISERVICE", "DEAD LETTERS", "PENDING", "AUDIT", "LAST"):
        services.add_column(column)
    for s in result["services"]:
        services.add_row(
            shown(f"{s['namespace']}/{s['name']}"),
            str(s["deadLetters"]),
            str(s["unreplayed"]),
            str(s["audit"]),
            _short_time(s["lastDeadLetterAt"]),
        )
    revisions = Table(title="per revision", title_justify="left")
    for column in ("AISERVICE", "REVISION", "DEAD LETTERS", "PENDING"):
        revisions.add_column(column)
    for r in result["revisions"]:
        revisions.add_row(
            shown(f"{r['namespace']}/{r['name']}"),
            shown(r["revision"] or "(untagged route)"),
            str(r["deadLetters"]),
            str(r["unreplayed"]),
        )
    console.print(services)
    console.print(revisions)
