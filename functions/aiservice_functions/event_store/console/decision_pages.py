"""The console's decision pages: find a chain by any of its ids and see it as a timeline,
browse one AIService's recent decisions and reprocessing runs, and a run side by side
with the answers it re-made.

Read-only, so any signed-in session may open them; they read the decision log directly
(same process), as ``/v1/decisions`` does.
"""

from __future__ import annotations

from typing import Final

from flask import Blueprint, Response, request

from aiservice_functions.event_store import params
from aiservice_functions.event_store.console import chains
from aiservice_functions.event_store.console.render import page
from aiservice_functions.event_store.decisions import DecisionLog
from aiservice_functions.event_store.records import us_text

QUERY_MAX: Final = 512
RECENT_SHOWN: Final = 50
PAIRS_SHOWN: Final = 500


def when(us: int, digits: int = 19) -> str:
    """Epoch microseconds as ``YYYY-MM-DD HH:MM:SS`` (UTC) for a table cell."""
    return (us_text(us) or "")[:digits].replace("T", " ")


def add_routes(bp: Blueprint, decisions: DecisionLog) -> None:
    """Register the decision pages on the console's blueprint."""

    @bp.get("/decisions")
    def decision_search() -> Response:
        query = (request.args.get("q") or "").strip()
        if len(query) > QUERY_MAX:
            return page(
                "decisions.html", 400, query=query[:QUERY_MAX], services=[], found=None,
                error=f"An id has at most {QUERY_MAX} characters.",
            )  # fmt: skip
        found = None
        if query:
            _, records = decisions.chain(query)
            keys = sorted({(r.source, r.event_id) for r in records})
            dead = [d["key"] for d in decisions.dead_letters_of(keys)]
            found = chains.chains(records, dead)
        return page(
            "decisions.html",
            query=query,
            services=decisions.services() if not query else [],
            found=found,
            error=None,
            when=when,
        )

    @bp.get("/decisions/<namespace>/<name>")
    def decision_service(namespace: str, name: str) -> Response:
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
