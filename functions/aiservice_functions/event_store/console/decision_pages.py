"""The console's decision pages: find a chain by any of its ids and see it as a timeline,
browse one AIService's recent decisions and reprocessing runs, and a run side by side
with the answers it re-made.

Read-only, so any signed-in session may open them; they read the decision log directly
(same process), as ``/v1/decisions`` does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Final

from flask import Blueprint, Response, request

from aiservice_functions.event_store import params
from aiservice_functions.event_store.access import shown
from aiservice_functions.event_store.console import chains
from aiservice_functions.event_store.console.render import caller, page
from aiservice_functions.event_store.decisions import DecisionLog
from aiservice_functions.event_store.records import us_text

QUERY_MAX: Final = 512
RECENT_SHOWN: Final = 50
PAIRS_SHOWN: Final = 500


def when(us: int, digits: int = 19) -> str:
    """Epoch microseconds as ``YYYY-MM-DD HH:MM:SS`` (UTC) for a table cell."""
    return (us_text(us) or "")[:digits].replace("T", " ")


def add_routes(
    bp: Blueprint, decisions: DecisionLog, namespaces: Callable[[], Iterable[str]]
) -> None:
    """Register the decision pages on the console's blueprint (``namespaces``: those
    with records, among which the caller's readable ones are found)."""

    def forbidden(namespace: str) -> Response | None:
        if caller().may("read", namespace):
            return None
        return page("error.html", 403, message=f"You may not read namespace {namespace}.")

    @bp.get("/decisions")
    def decision_search() -> Response:
        query = (request.args.get("q") or "").strip()
        if len(query) > QUERY_MAX:
            return page(
                "decisions.html", 400, query=query[:QUERY_MAX], services=[], found=None,
                error=f"An id has at most {QUERY_MAX} characters.",
            )  # fmt: skip
        found = None
        readable = caller().readable(namespaces)
        hidden = 0
        if query:
            _, records = decisions.chain(query)
            visible = [r for r in records if shown(r.namespace, readable)]
            hidden = len(records) - len(visible)
            keys = sorted({(r.source, r.event_id) for r in visible})
            dead = [
                d["key"]
                for d in decisions.dead_letters_of(keys)
                if shown(str(d["namespace"]), readable)
            ]
            found = chains.chains(visible, dead)
        services = (
            [s for s in decisions.services() if shown(str(s["namespace"]), readable)]
            if not query
            else []
        )
        return page(
            "decisions.html",
            query=query,
            services=services,
            hidden=hidden,
            found=found,
            error=None,
            when=when,
        )

    @bp.get("/decisions/<namespace>/<name>")
    def decision_service(namespace: str, name: str) -> Response:
        refused = forbidden(namespace)
        if refused:
            return refused
        try:
            before = params.integer(request.args, "before", 1)
        except params.ParamError as err:
            return page("error.html", 400, message=str(err))
        items = decisions.recent(namespace, name, before, RECENT_SHOWN)
        return page(
            "decision_service.html",
            namespace=namespace,
            name=name,
            items=items,
            runs=decisions.runs(namespace, name),
            older=items[-1].seq if len(items) >= RECENT_SHOWN else None,
            data_text=chains.data_text,
            when=when,
        )

    @bp.get("/decisions/<namespace>/<name>/runs/<run>")
    def decision_run(namespace: str, name: str, run: str) -> Response:
        refused = forbidden(namespace)
        if refused:
            return refused
        found = chains.pairs(decisions.compare(namespace, name, run[:QUERY_MAX], PAIRS_SHOWN))
        return page(
            "decision_run.html",
            namespace=namespace,
            name=name,
            run=run[:QUERY_MAX],
            pairs=found,
            changed=sum(p.changed for p in found),
            truncated=len(found) >= PAIRS_SHOWN,
        )
