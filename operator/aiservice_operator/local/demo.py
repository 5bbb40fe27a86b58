"""`aisvc up --demo`: send a few events into the pipeline and print what comes out.

Events go through the real broker URL, so the demo exercises exactly what a user's
producer would. Sample data is chosen by the function's entrypoint (the shipped
functions' input shapes); other functions get a small JSON object.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp
from aiservice_functions.cloudevents_http import CloudEvent, event_to_dict
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from aiservice_operator.core.spec import Filter
from aiservice_operator.local.dispatcher import TriggerRuntime
from aiservice_operator.local.runner import LocalRun

SAMPLES: Mapping[str, list[Any]] = {
    "aiservice_functions.sentiment": [
        {"text": "The parcel arrived a week late and the box was crushed."},
        {"text": "Support hung up on me twice and never called back."},
        {"text": "The handle snapped off after two days, cheap plastic."},
        {"text": "Great value, half the price of the big brands."},
    ],
    "aiservice_functions.topic": [
        {"text": "The courier left my parcel in the rain.", "label": "negative", "score": 0.93},
        {"text": "The agent on the phone was patient and kind.", "label": "positive"},
        {"text": "The setup instructions make no sense."},
    ],
    "aiservice_functions.fraud": [
        {"amount": 912.5, "merchant_category": "electronics", "hour": 3,
         "country_mismatch": True, "card_present": False, "transaction_id": "tx-1"},
        {"amount": 23.0, "merchant_category": "grocery", "hour": 14,
         "country_mismatch": False, "card_present": True, "transaction_id": "tx-2"},
        {"amount": 310.0, "merchant_category": "travel", "hour": 22,
         "country_mismatch": True, "card_present": False, "transaction_id": "tx-3"},
    ],
}  # fmt: skip


def entry_points(run: LocalRun) -> list[tuple[str, str, str, str]]:
    """(broker, event type, source, entrypoint) for each AIService input no other produces."""
    produced = {r.ais.spec.produces for r in run.services_runs.values()}
    out = []
    for r in run.services_runs.values():
        env = {}
        for template in r.desired.revisions.values():
            for e in template["spec"]["containers"][0].get("env", []):
                env[e["name"]] = e.get("value", "")
        for consume in r.ais.spec.consumes:
            if consume.type in produced:
                continue
            source = _source_for(consume.filters)
            out.append(
                (
                    f"{r.ais.namespace}/{r.ais.spec.broker}",
                    consume.type,
                    source,
                    env.get("AISVC_ENTRYPOINT", ""),
                )
            )
    return out


def _source_for(filters: Sequence[Filter]) -> str:
    """A source that passes the Trigger's source filters (exact/prefix), so events reach it."""
    for f in filters:
        found = _source_in(f)
        if found:
            return found
    return "/aisvc/demo"


def _source_in(f: Filter) -> str:
    if f.dialect in ("exact", "prefix"):
        value = dict(f.attributes).get("source", "")
        return value + "demo" if value and f.dialect == "prefix" else value
    if f.dialect in ("all", "any"):
        return next((s for s in map(_source_in, f.children) if s), "")
    return ""


async def run_demo(run: LocalRun, console: Console, timeout: float = 120.0) -> int:
    """Send the samples, wait until every delivery settled, print replies and dead letters."""
    assert run.dispatcher is not None
    seen: list[tuple[str, TriggerRuntime | None, CloudEvent]] = []
    run.dispatcher.listeners.append(
        lambda kind, trigger, event: seen.append((kind, trigger, event))
    )
    sent = 0
    async with aiohttp.ClientSession() as session:
        for broker, event_type, source, entrypoint in entry_points(run):
            for data in SAMPLES.get(entrypoint, [{"demo": n} for n in range(3)]):
                headers = {
                    "ce-specversion": "1.0",
                    "ce-id": str(uuid.uuid4()),
                    "ce-source": source,
                    "ce-type": event_type,
                    "content-type": "application/json",
                }
                url = f"{run.broker_url}/{broker}"
                async with session.post(url, data=json.dumps(data), headers=headers) as resp:
                    if resp.status != 202:
                        console.print(
                            f"[red]{url} refused the event: {resp.status} {await resp.text()}"
                        )
                        return 1
                sent += 1
                console.print(
                    f"sent {event_type} to {url}: {json.dumps(data)}", markup=False, soft_wrap=True
                )
    try:
        await asyncio.wait_for(run.dispatcher.drain(), timeout)
    except TimeoutError:
        console.print(f"[yellow]some deliveries were still retrying after {timeout:.0f}s")
    # A reply whose type no AIService consumes is the pipeline's result, not a broken link:
    # it is already shown as a reply, so its "unrouted" echo is left out.
    consumed = {c.type for r in run.services_runs.values() for c in r.ais.spec.consumes}
    print_table(console, reply_table(seen, consumed, sent))
    results = [e for kind, _, e in seen if kind == "reply" and e.get_type() not in consumed]
    types = ", ".join(sorted({e.get_type() for e in results})) or "none"
    console.print(f"{len(results)} of {sent} events reached the end of the pipeline ({types})")
    return 0


def reply_table(
    seen: Sequence[tuple[str, TriggerRuntime | None, CloudEvent]], consumed: set[str], sent: int
) -> Table:
    """One row per reply, dead letter or unrouted event (the pipeline's results excepted)."""
    table = Table(title=f"{sent} events sent; what came back", title_justify="left")
    for column in ("outcome", "service", "type", "data / error"):
        table.add_column(column, overflow="fold")
    for kind, trigger, event in seen:
        if kind == "unrouted" and event.get_type() not in consumed:
            continue
        doc = event_to_dict(event)
        detail = _summary(_rounded(doc.get("data", doc.get("data_base64", ""))))
        if kind == "dead-letter":
            code = doc.get("knativeerrorcode", "-")
            detail = f"code {code}: {_decoded(doc.get('knativeerrordata', ''))}"
        if kind == "unrouted":
            detail = f"no Trigger matches it (source {event.get_source()}); {detail}"
        owner = (trigger.owner or trigger.name) if trigger is not None else "-"
        table.add_row(kind, owner, event.get_type(), detail[:200])
    return table


def print_table(console: Console, table: Table) -> None:
    """On a terminal the table fits the window; anywhere else (a pipe, a CI log) it is as
    wide as its content, as nothing there would wrap it: no cell is folded into lines."""
    if console.is_terminal:
        console.print(table)
        return
    natural = Measurement.get(console, console.options.update_width(UNBOUNDED), table).maximum
    width = console.width
    console.width = max(width, natural)
    try:
        console.print(table)
    finally:
        console.width = width


UNBOUNDED = 100_000
"""A width no table of the demo reaches (each cell is at most 200 characters)."""


def _summary(data: Any) -> str:
    """A reply's fields as `key=value`, without the echoed input text (shown when sent)."""
    if isinstance(data, dict):
        shown = {k: v if isinstance(v, str) else json.dumps(v) for k, v in data.items()}
        return " ".join(f"{k}={v}" for k, v in shown.items() if k != "text")
    return json.dumps(data)


def _rounded(data: Any) -> Any:
    """Scores to 3 decimals, so the table shows answers rather than float noise."""
    if isinstance(data, float):
        return round(data, 3)
    if isinstance(data, dict):
        return {k: _rounded(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_rounded(v) for v in data]
    return data


def _decoded(data: str) -> str:
    import base64

    try:
        return base64.b64decode(data).decode("utf-8", "replace")
    except ValueError:
        return data
