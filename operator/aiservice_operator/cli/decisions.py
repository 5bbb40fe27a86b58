"""`aisvc trace`, `aisvc reprocess`, `aisvc export`: the decision log's read side.

All three talk to the event store's decision API (see
`aiservice_functions.event_store.decision_api`) with the `--url` / `--token` of `aisvc dlq`.
`reprocess` sends logged inputs straight to one model version's tag URL, never through
the broker, so nothing downstream sees them unless `--publish` asks for it.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TextIO

import httpx
import typer
from aiservice_functions import contract
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table
from rich.tree import Tree

from aiservice_operator.cli.common import DEFAULT_STATE_DIR, fail, one_line, printable, shown
from aiservice_operator.cli.dlq import (
    Output,
    OutputOpt,
    StoreStateDirOpt,
    Token,
    Url,
    _call,
    _when,
    store_for,
)
from aiservice_operator.core.decision_view import Node, chain_tree, compare
from aiservice_operator.sources.event_store import EventStoreError

Namespace = Annotated[str, typer.Option("--namespace", "-n", help="Namespace.")]
Since = Annotated[
    str | None,
    typer.Option("--since", help="Logged at or after: RFC 3339, or an age like 30m, 1h30m, 7d."),
]
EXPORT_COLUMNS = (
    "id", "source", "type", "time", "input", "inputHash", "output", "modelVersion",
    "revision", "latencyMs", "outcome", "decisionId",
)  # fmt: skip


def _svc(namespace: str, name: str) -> str:
    return f"/v1/namespaces/{namespace}/aiservices/{name}/decisions"


# --- trace ---------------------------------------------------------------------------


def _label(node: Node) -> str:
    """The node as rich markup, its logged fields printable and escaped (never markup)."""
    seen = _safe(", ".join(f"{s} {r}" for s, r in node.seen_by))
    parts = [f"[bold]{_safe(node.type)}[/bold] {_safe(node.key)}", f"[dim]({seen})[/dim]"]
    if node.model_version:
        parts.append(f"model {_safe(node.model_version)}")
    if node.latency_ms is not None:
        parts.append(f"{node.latency_ms:.1f} ms")
    if node.receipts > 1:
        parts.append(f"[yellow]delivered {node.receipts}x[/yellow]")
    for d in node.dead_letters:
        state = "replayed" if d.get("replayed") else "not replayed"
        parts.append(
            f"[red]dead-lettered by {_safe(d.get('name'))} "
            f"(HTTP {_safe(d.get('errorCode'))}, {state})[/red]"
        )
    return " ".join(parts)


def _safe(text: object) -> str:
    return escape(printable(text))


def _add(tree: Tree, node: Node) -> None:
    branch = tree.add(_label(node))
    for child in node.children:
        _add(branch, child)


def trace(
    event: Annotated[
        str, typer.Argument(help="An event id, source#id, correlation id or traceparent.")
    ],
    url: Url = None,
    token: Token = None,
    state_dir: StoreStateDirOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Show an event's whole chain: input, each stage's reply, dead letters on the way."""
    url, token = store_for(url, token, state_dir)
    body = _call("GET", url, "/v1/decisions/trace", token, params={"id": event})
    roots = chain_tree(body["records"], body["deadLetters"])
    if output is Output.json:
        typer.echo(json.dumps({**body, "tree": [r.to_json() for r in roots]}, indent=2))
        return
    if not roots:
        typer.echo(f"no logged event matches {event!r}", err=True)
        raise typer.Exit(code=1)
    console = Console()
    for correlation in body["correlationIds"]:
        tree = Tree(shown(f"chain {correlation}"))
        for root in roots:
            if root.correlation == correlation:
                _add(tree, root)
        console.print(tree)


# --- reprocess -----------------------------------------------------------------------


def _tag_url(namespace: str, name: str, model: str, target: str | None, state_dir: Path) -> str:
    if target:
        return target
    from aiservice_operator.local.state_files import read_state

    state = read_state(state_dir) or {}
    if state.get("servingUrl"):
        return f"{state['servingUrl']}/{namespace}/{name}/tags/{model}"
    domain = state.get("clusterDomain") or "cluster.local"
    return f"http://{model}-{name}.{namespace}.svc.{domain}"


def _inputs(
    url: str, token: str | None, namespace: str, name: str, since: str | None, limit: int
) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    after = 0
    while len(items) < limit:
        page = _call(
            "GET",
            url,
            _svc(namespace, name),
            token,
            params={"role": "input", "after": after, "limit": min(500, limit - len(items)),
                    **({"since": since} if since else {})},
        )  # fmt: skip
        items += page["items"]
        if page["next"] is None:
            break
        after = page["next"]
    return items


def _binary(attributes: dict[str, Any], data: Any) -> tuple[dict[str, str], bytes]:
    headers = {f"ce-{k}": str(v) for k, v in attributes.items() if k != "datacontenttype"}
    headers["content-type"] = str(attributes.get("datacontenttype") or "application/json")
    return headers, json.dumps(data).encode("utf-8")


def _event_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """A binary-mode reply's CloudEvent headers (its ``ce-`` attributes and content type),
    without the framing and encoding of the answer it came in (Content-Length,
    Transfer-Encoding, Content-Encoding: httpx has already decoded the body)."""
    return {
        k: v
        for k, v in headers.items()
        if k.lower().startswith("ce-") or k.lower() == "content-type"
    }


@dataclass
class _Resender:
    """Posts logged inputs to a model version and files each answer in the store, at most
    `rate` events per second (0: no limit), counting failures."""

    endpoint: str
    ingest: str
    auth: dict[str, str]
    rate: float
    errors: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _pace: threading.Lock = field(default_factory=threading.Lock)
    _next_at: float = field(default_factory=time.monotonic)

    def _wait_turn(self) -> None:
        if self.rate <= 0:
            return
        with self._pace:
            wait = self._next_at - time.monotonic()
            self._next_at = max(self._next_at, time.monotonic()) + 1.0 / self.rate
        if wait > 0:
            time.sleep(wait)

    def send(self, client: httpx.Client, item: dict[str, Any]) -> None:
        self._wait_turn()
        headers, body = _binary(dict(item["attributes"]), item["data"])
        try:
            answer = client.post(self.endpoint, headers=headers, content=body)
            if answer.status_code != 200:
                raise EventStoreError(f"{self.endpoint} answered {answer.status_code}")
            stored = client.post(
                self.ingest, headers={**_event_headers(answer.headers), **self.auth},
                content=answer.content,
            )  # fmt: skip
            if stored.status_code >= 300:
                raise EventStoreError(
                    f"the event store refused the new decision: {stored.text[:200]}"
                )
        except (httpx.HTTPError, EventStoreError) as err:
            with self._lock:
                self.errors += 1
                if self.errors <= 3:
                    typer.echo(f"warning: {one_line(item['key'])}: {one_line(err)}", err=True)


def reprocess(
    name: Annotated[str, typer.Argument(help="AIService name.")],
    model: Annotated[str, typer.Option("--model", help="Model version to answer with.")],
    namespace: Namespace = "default",
    since: Since = None,
    limit: Annotated[int, typer.Option(help="At most this many inputs.")] = 1000,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only count the inputs.")] = False,
    publish: Annotated[
        bool, typer.Option("--publish", help="Send changed replies to the broker as corrections.")
    ] = False,
    target: Annotated[
        str | None, typer.Option(help="URL of the model version (default: its tag URL).")
    ] = None,
    broker_url: Annotated[
        str | None, typer.Option(help="Broker ingress for --publish (default: the local run's).")
    ] = None,
    concurrency: Annotated[int, typer.Option(min=1, max=64)] = 4,
    rate: Annotated[float, typer.Option(help="Events per second at most (0: no limit).")] = 0.0,
    url: Url = None,
    token: Token = None,
    state_dir: StoreStateDirOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Answer logged inputs again with another model version and report what changed."""
    url, token = store_for(url, token, state_dir)
    local_dir = state_dir or DEFAULT_STATE_DIR
    inputs = _inputs(url, token, namespace, name, _when(since, "--since"), limit)
    usable = [i for i in inputs if i.get("data") is not None]
    if dry_run:
        typer.echo(json.dumps({"inputs": len(inputs), "withData": len(usable)}))
        return
    if inputs and not usable:
        typer.echo("error: the inputs were logged without data (includeData: false)", err=True)
        raise typer.Exit(code=1)
    run_id = f"{model}-{uuid.uuid4().hex[:12]}"
    endpoint = _tag_url(namespace, name, model, target, local_dir)
    store = url.rstrip("/")
    ingest = f"{store}{_svc(namespace, name)}/reprocessed?data=true&run={run_id}"
    auth = {"Authorization": f"Bearer {token}"} if token else {}
    resender = _Resender(endpoint, ingest, auth, rate)
    with (
        httpx.Client(timeout=60) as client,
        ThreadPoolExecutor(concurrency) as pool,
        Progress(console=Console(stderr=True), transient=True) as progress,
    ):
        task = progress.add_task(f"reprocessing with {model}", total=len(usable))
        for _ in pool.map(lambda i: resender.send(client, i), usable):
            progress.advance(task)
    pairs = _call("GET", url, _svc(namespace, name) + "/compare", token, params={"run": run_id})
    errors = resender.errors
    result = compare(pairs["pairs"], errors)
    published = (
        _publish(
            pairs["pairs"], result.changed_keys, broker_url or _local_broker(namespace, local_dir)
        )
        if publish
        else 0
    )
    summary = {"run": run_id, "model": model, "inputs": len(usable), **result.to_json()}
    summary["published"] = published
    if output is Output.json:
        typer.echo(json.dumps(summary, indent=2))
        return
    console = Console()
    console.print(
        f"run {run_id}: {result.compared} compared, [bold]{result.changed} changed[/bold], "
        f"{errors} errors; median latency {result.old_latency_ms} -> {result.new_latency_ms} ms"
    )
    if result.mean_score_shift is not None:
        console.print(f"mean score shift {result.mean_score_shift:+.4f}")
    if result.confusion:
        table = Table("old label", "new label", "count")
        for (old, new), count in sorted(result.confusion.items()):
            table.add_row(shown(old), shown(new), str(count), style="bold" if old != new else None)
        console.print(table)
    if publish:
        console.print(f"published {published} corrections")


def _local_broker(namespace: str, state_dir: Path) -> str | None:
    """The local run's Broker in ``namespace``: ``default``, or the only one there."""
    from aiservice_operator.local.state_files import read_state

    brokers: dict[str, str] = (read_state(state_dir) or {}).get("brokers") or {}
    if f"{namespace}/default" in brokers:
        return brokers[f"{namespace}/default"]
    mine = [url for key, url in brokers.items() if key.startswith(f"{namespace}/")]
    return mine[0] if len(mine) == 1 else None


def _publish(pairs: list[dict[str, Any]], changed: tuple[str, ...], broker_url: str | None) -> int:
    """Send each changed new reply into the broker, naming the decision it replaces."""
    if not broker_url:
        typer.echo("error: --publish needs --broker-url (no local run here)", err=True)
        raise typer.Exit(code=1)
    wanted = set(changed)
    sent = 0
    with httpx.Client(timeout=30) as client:
        for pair in pairs:
            new, old = pair.get("new"), pair.get("old")
            if not new or not old or new.get("causationId") not in wanted:
                continue
            attributes = dict(new["attributes"])
            attributes["id"] = str(uuid.uuid4())
            attributes[contract.EXT_CORRECTS] = old["key"]
            headers, body = _binary(attributes, new["data"])
            if client.post(broker_url, headers=headers, content=body).status_code < 300:
                sent += 1
    return sent


# --- export --------------------------------------------------------------------------


def _rows(
    url: str, token: str | None, path: str, params: dict[str, str]
) -> Iterator[dict[str, Any]]:
    base = url.rstrip("/")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with (
        httpx.Client(timeout=None) as client,
        client.stream("GET", base + path, params=params, headers=headers) as response,
    ):
        if response.status_code >= 400:
            response.read()
            typer.echo(
                f"error: event store answered {response.status_code}: {one_line(response.text)}",
                err=True,
            )
            raise typer.Exit(code=1)
        for line in response.iter_lines():
            if line:
                yield json.loads(line)


def export(
    name: Annotated[str, typer.Argument(help="AIService name.")],
    namespace: Namespace = "default",
    since: Since = None,
    fmt: Annotated[str, typer.Option("--format", help="jsonl, csv or parquet.")] = "jsonl",
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="File to write (default: stdout); replaced only on success."
        ),
    ] = None,
    with_feedback: Annotated[
        bool, typer.Option("--with-feedback", help="Join feedback labels.")
    ] = False,
    url: Url = None,
    token: Token = None,
    state_dir: StoreStateDirOpt = None,
) -> None:
    """Stream logged inputs with their decisions as training data (constant memory).

    CSV cells that a spreadsheet would run as a formula (starting with =, +, -, @, a tab
    or a carriage return) are written with a leading ' so they stay text.
    """
    url, token = store_for(url, token, state_dir)
    if fmt not in ("jsonl", "csv", "parquet"):
        raise typer.BadParameter("must be jsonl, csv or parquet", param_hint="--format")
    if fmt == "parquet" and out is None:
        raise typer.BadParameter("parquet needs --out", param_hint="--out")
    if out is not None and not out.parent.is_dir():
        raise fail(f"cannot write {out}: the directory {out.parent} does not exist")
    params = {"feedback": "true" if with_feedback else "false"}
    when = _when(since, "--since")
    if when:
        params["since"] = when
    rows = _rows(url, token, _svc(namespace, name) + "/export", params)
    columns = [*EXPORT_COLUMNS, *(["feedbackLabel"] if with_feedback else [])]
    try:
        if out is None:
            _write_text(rows, columns, fmt, sys.stdout)
            return
        with _replacing(out) as tmp:
            if fmt == "parquet":
                _parquet(rows, columns, tmp)
            else:
                with tmp.open("w", encoding="utf-8", newline="") as handle:
                    _write_text(rows, columns, fmt, handle)
    except httpx.HTTPError as err:
        raise fail(
            f"cannot read the export from the event store at {url}: {one_line(err)}"
        ) from None
    except OSError as err:
        raise fail(f"cannot write {out}: {one_line(err)}") from None


@contextmanager
def _replacing(out: Path) -> Iterator[Path]:
    """A temporary file next to `out`, renamed onto it when the block succeeds and removed
    when it fails, so a failed export leaves `out` as it was."""
    fd, name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".part")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)


def _write_text(
    rows: Iterator[dict[str, Any]], columns: list[str], fmt: str, handle: TextIO
) -> None:
    if fmt == "jsonl":
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        return
    writer = csv.DictWriter(handle, fieldnames=columns)
    writer.writeheader()
    for row in rows:
        writer.writerow({c: _csv_cell(v) for c, v in _flat(row, columns).items()})


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""What makes a spreadsheet read a cell as a formula (OWASP's CSV injection guidance)."""


def _csv_cell(value: Any) -> Any:
    """A text cell that a spreadsheet would run as a formula, prefixed with ' (kept as text)."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def _flat(row: dict[str, Any], columns: list[str]) -> dict[str, Any]:
    """Nested values (input, output) as JSON text, for csv and parquet."""
    return {
        c: json.dumps(row.get(c), ensure_ascii=False)
        if isinstance(row.get(c), dict | list)
        else row.get(c)
        for c in columns
    }


def _parquet(rows: Iterator[dict[str, Any]], columns: list[str], out: Path) -> None:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        typer.echo("error: --format parquet needs pyarrow (pip install pyarrow)", err=True)
        raise typer.Exit(code=1) from None
    schema = pa.schema([(c, pa.float64() if c == "latencyMs" else pa.string()) for c in columns])
    batch: list[dict[str, Any]] = []
    with pq.ParquetWriter(str(out), schema) as writer:
        for row in rows:
            flat = _flat(row, columns)
            batch.append({c: flat[c] if c == "latencyMs" or flat[c] is None else str(flat[c])
                          for c in columns})  # fmt: skip
            if len(batch) >= 5000:
                writer.write_table(pa.Table.from_pylist(batch, schema))
                batch = []
        if batch:
            writer.write_table(pa.Table.from_pylist(batch, schema))


def register(app: typer.Typer) -> None:
    """Mount `trace`, `reprocess` and `export` on the `aisvc` app."""
    app.command()(trace)
    app.command()(reprocess)
    app.command()(export)
