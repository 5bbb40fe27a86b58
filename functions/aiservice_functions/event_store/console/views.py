"""The console's routes: sign-in, overview, dead letters (list, detail, replay jobs),
rollouts; the decision pages are in :mod:`.decision_pages`.

Pages read the store directly (same process); a replay starts a background job through
``start_replay``, the same jobs as ``POST /v1/replays``, and its page or the script follows
it. Every response carries the security headers of :func:`_secure`; every POST is checked
for ``Origin`` and the session's CSRF token before its handler runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final
from urllib.parse import urlencode, urlsplit

from flask import Blueprint, Response, g, jsonify, redirect, request
from werkzeug.wrappers.response import Response as BaseResponse

from aiservice_functions.event_store import jobs, params
from aiservice_functions.event_store.console import decision_pages, present, rollouts
from aiservice_functions.event_store.console.render import (
    caller,
    current,
    json_error,
    page,
    refuse,
    remember,
    wants_json,
)
from aiservice_functions.event_store.console.session import (
    COOKIE,
    MAX_AGE_S,
    Access,
    Sessions,
    csrf_ok,
    new_session,
)
from aiservice_functions.event_store.console.signouts import SignOuts
from aiservice_functions.event_store.decisions import DecisionLog
from aiservice_functions.event_store.records import EventFilter, us_text
from aiservice_functions.event_store.service import EventStore

Replayer = Callable[[Sequence[int], bool, str], str]
"""Starts a replay job for the dead letters with these ``seq`` numbers (``force``: also
replayed ones) on behalf of a caller (named); the job's id."""

PAGE_SIZE: Final = 50
MAX_REPLAY: Final = 1000
AUDIT_SHOWN: Final = 500
"""Newest audit records read for one AIService's rollout page."""

CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
PUBLIC: Final = frozenset({"console.login", "console.static"})
DISABLED: Final = "The console is disabled: this event store has no token configured."


@dataclass(frozen=True)
class Filters:
    """The dead-letter list's filters as typed (echoed back into the form)."""

    values: dict[str, str]
    flt: EventFilter
    errors: list[str]


FILTER_FIELDS: Final = ("namespace", "name", "revision", "type", "code", "since", "until", "state")


def parse_filters(args: dict[str, str]) -> Filters:
    """Form values → a filter; a wrong value is reported by name instead of refused."""
    values = {k: args.get(k, "").strip() for k in FILTER_FIELDS}
    errors: list[str] = []

    code: int | None = None
    times: dict[str, int | None] = {"since": None, "until": None}
    try:
        code = params.integer(values, "code", 0, 999, label="HTTP code")
    except params.ParamError as err:
        errors.append(str(err))
    for key in times:
        try:
            times[key] = params.timestamp(values, key)
        except params.ParamError as err:
            errors.append(str(err))
    state = values["state"]
    if state not in ("", "pending", "replayed"):
        errors.append(f"state must be pending or replayed, got {state[:40]!r}")
        state = ""
    flt = EventFilter(
        kind="dead-letter",
        namespace=values["namespace"] or None,
        name=values["name"] or None,
        type=values["type"] or None,
        error_code=code,
        revision=values["revision"] or None,
        since=times["since"],
        until=times["until"],
        replayed={"pending": False, "replayed": True}.get(state),
    )
    return Filters(values, flt, errors)


def _same_origin() -> bool:
    """A POST from a page of this console: the browser says so (``Sec-Fetch-Site``), or
    its ``Origin`` is this host. Clients that send neither still need the CSRF token."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        return site == "same-origin"
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    parts = urlsplit(origin)
    return f"{parts.scheme}://{parts.netloc}" == request.host_url.rstrip("/")


def _secure(response: Response) -> Response:
    headers = response.headers
    headers["Content-Security-Policy"] = CSP
    headers["X-Content-Type-Options"] = "nosniff"
    headers["X-Frame-Options"] = "DENY"
    headers["Referrer-Policy"] = "same-origin"
    headers["Cross-Origin-Opener-Policy"] = "same-origin"
    headers["Cache-Control"] = "no-store"
    return response


def blueprint(
    store: EventStore, access: Access, start_replay: Replayer, decisions: DecisionLog
) -> Blueprint:
    """The console as a Flask blueprint mounted at ``/console``."""
    bp = Blueprint(
        "console",
        __name__,
        url_prefix="/console",
        template_folder="templates",
        static_folder="static",
    )
    signouts = SignOuts(store.db)
    _guard_requests(bp, access, Sessions(access), signouts)
    _sign_in_routes(bp, access, signouts)
    _overview_routes(bp, store)
    _dead_letter_routes(bp, store)
    _replay_routes(bp, store, start_replay)
    _rollout_routes(bp, store)
    decision_pages.add_routes(bp, decisions, store.namespaces)
    return bp


def _guard_requests(bp: Blueprint, access: Access, sessions: Sessions, signouts: SignOuts) -> None:
    """Before every request: its session, CSRF and origin on POSTs, sign-in where needed;
    after it: the session cookie when it changed, and the security headers."""

    @bp.before_request
    def guard() -> Response | BaseResponse | None:
        g.console_access = access
        g.console_cookie_dirty = False
        session = sessions.load(request.cookies.get(COOKIE))
        if session is not None and session.scope is not None and signouts.signed_out(session.id):
            session = None  # a copy of a cookie its owner signed out
        g.console_session = session
        if access.open and (session is None or session.scope is None):
            remember(new_session("replay"))
        elif session is None:
            remember(new_session(None))
        if request.method == "POST" and (
            not _same_origin()
            or not csrf_ok(
                current(), request.form.get("csrf") or request.headers.get("X-CSRF-Token")
            )
        ):
            return page(
                "error.html",
                403,
                message="The form expired or came from another site. "
                "Reload the page and try again.",
            )
        if request.endpoint in PUBLIC:
            return None
        if access.disabled:
            return page("error.html", 403, message=DISABLED)
        if current().scope is None:
            if request.path.startswith("/console/api/"):
                return json_error(401, "sign in first")
            return redirect("/console/login?" + urlencode({"next": request.full_path.rstrip("?")}))
        g.console_caller = access.caller(current())
        return None

    @bp.after_request
    def finish(response: Response) -> Response:
        if g.get("console_cookie_dirty"):
            response.set_cookie(
                COOKIE,
                sessions.dump(current()),
                max_age=MAX_AGE_S,
                path="/console",
                secure=request.is_secure,
                httponly=True,
                samesite="Strict",
            )
        return _secure(response)


def _sign_in_routes(bp: Blueprint, access: Access, signouts: SignOuts) -> None:
    @bp.route("/login", methods=["GET", "POST"])
    def login() -> Response | BaseResponse:
        target = params.console_path(request.values.get("next"))
        if access.open:
            return redirect(target)
        if access.disabled:
            return page("error.html", 403, message=DISABLED)
        error = None
        if request.method == "POST":
            signed_in = access.sign_in(request.form.get("token", ""))
            if not isinstance(signed_in, str):
                remember(signed_in)  # a fresh CSRF token with the new scope
                return redirect(target)
            error = signed_in
        return page("login.html", 401 if error else 200, error=error, next=target)

    @bp.post("/logout")
    def logout() -> BaseResponse:
        if current().scope is not None:
            signouts.sign_out(current().id, MAX_AGE_S)
        remember(new_session(None))
        return redirect("/console/login")


def counts(store: EventStore) -> dict[str, Any]:
    """Dead letters and audit records per AIService and revision, with totals (of the
    namespaces the caller may read)."""
    services, revisions = store.events.stats(EventFilter(namespaces=readable(store)))
    return {
        "services": [
            {
                "namespace": c.namespace,
                "name": c.name,
                "deadLetters": c.dead_letters,
                "unreplayed": c.unreplayed,
                "audit": c.audit,
                "lastDeadLetterAt": us_text(c.last_dead_letter_at),
            }
            for c in services
        ],
        "revisions": [
            {
                "namespace": c.namespace,
                "name": c.name,
                "revision": c.revision,
                "deadLetters": c.dead_letters,
                "unreplayed": c.unreplayed,
            }
            for c in revisions
        ],
        "totals": {
            "deadLetters": sum(c.dead_letters for c in services),
            "unreplayed": sum(c.unreplayed for c in services),
            "audit": sum(c.audit for c in services),
        },
    }


def readable(store: EventStore) -> frozenset[str] | None:
    """The namespaces the signed-in caller may read (``None``: all)."""
    return caller().readable(store.namespaces)


def _overview_routes(bp: Blueprint, store: EventStore) -> None:
    @bp.get("/")
    def overview() -> Response:
        return page("overview.html", counts=counts(store))

    @bp.get("/api/counts")
    def api_counts() -> Response:
        return jsonify(counts(store))


def _dead_letter_routes(bp: Blueprint, store: EventStore) -> None:
    @bp.get("/dead-letters")
    def dead_letters() -> Response:
        filters = parse_filters(dict(request.args))
        items: list[Any] = []
        next_url = None
        if not filters.errors:
            try:
                found = store.events.page(
                    replace(filters.flt, namespaces=readable(store)),
                    limit=PAGE_SIZE,
                    cursor=params.cursor(request.args),
                )
            except ValueError as err:  # ParamError included
                filters.errors.append(str(err))
            else:
                items = found.items
                if found.next_cursor:
                    query = {k: v for k, v in filters.values.items() if v}
                    next_url = "/console/dead-letters?" + urlencode(
                        {**query, "cursor": found.next_cursor}
                    )
        return page(
            "dead_letters.html",
            400 if filters.errors else 200,
            filters=filters,
            items=items,
            next_url=next_url,
            state=present.state,
            here=request.full_path.rstrip("?"),
        )

    @bp.get("/dead-letters/<int:seq>")
    def dead_letter(seq: int) -> Response:
        record = store.events.get(seq) if seq <= params.INT64_MAX else None
        if (
            record is None
            or record.kind != "dead-letter"
            or not caller().may("read", record.namespace)
        ):
            return page("error.html", 404, message=f"No dead letter with seq {seq}.")
        return page(
            "dead_letter.html",
            record=record,
            attributes=present.attributes(record),
            data=present.data(record),
            error_data=present.error_data(record),
            history=present.history(record),
            state=present.state(record),
            here=request.path,
        )


def _replay_denied(store: EventStore, seqs: Sequence[int]) -> str | None:
    """The first namespace of these dead letters where the caller may not replay."""
    who = caller()
    if who.everywhere("replay"):
        return None
    for namespace in sorted(store.events.namespaces(EventFilter(seqs=tuple(seqs)))):
        if not who.may("replay", namespace):
            return namespace
    return None


def _job_visible(row: dict[str, Any] | None) -> bool:
    """A job is shown to whoever started it and to those who may read everywhere."""
    if row is None:
        return False
    who = caller()
    if who.identity is None or who.everywhere("read"):
        return True
    return bool(jobs.job_json(row, with_results=False)["request"].get("by") == who.name)


def _replay_routes(bp: Blueprint, store: EventStore, start_replay: Replayer) -> None:
    """Replay as a job: started by a POST, followed on its page or by the script."""

    @bp.post("/replay")
    def replay() -> Response | BaseResponse:
        if not current().can_replay:
            return refuse(403, "This token allows reading only, not replay.")
        try:
            seqs = sorted({params.whole(s, "seq", 1) for s in request.form.getlist("seq")})
        except params.ParamError as err:
            return refuse(400, str(err))
        if not seqs or len(seqs) > MAX_REPLAY:
            return refuse(400, f"Select between 1 and {MAX_REPLAY} dead letters to replay.")
        denied = _replay_denied(store, seqs)
        if denied is not None:
            return refuse(403, f"You may not replay in namespace {denied} (aiservices/replay).")
        job_id = start_replay(seqs, request.form.get("force") == "true", caller().name)
        where = f"/console/replays/{job_id}"
        if not wants_json():
            back = params.console_path(request.form.get("back"))
            return redirect(where + "?" + urlencode({"back": back}), code=303)
        row = store.jobs.get(job_id)
        assert row is not None
        response = jsonify(jobs.job_json(row, with_results=False))
        response.status_code = 202
        response.headers["Location"] = where
        return response

    @bp.get("/replays/<job_id>")
    def replay_job(job_id: str) -> Response:
        row = store.jobs.get(job_id[:64])
        if row is None or not _job_visible(row):
            return page("error.html", 404, message=f"No replay job {job_id[:64]!r}.")
        job = jobs.job_json(row)
        return page(
            "replay_job.html",
            job=job,
            asked=len(job["request"].get("seqs") or []),
            back=params.console_path(request.args.get("back")),
        )

    @bp.get("/api/replays/<job_id>")
    def api_replay_job(job_id: str) -> Response:
        row = store.jobs.get(job_id[:64])
        if row is None or not _job_visible(row):
            return json_error(404, f"no replay job {job_id[:64]!r}")
        return jsonify(jobs.job_json(row))


def _rollout_routes(bp: Blueprint, store: EventStore) -> None:
    @bp.get("/rollouts")
    def rollout_list() -> Response:
        services, _ = store.events.stats(EventFilter(namespaces=readable(store)))
        return page("rollouts.html", services=[c for c in services if c.audit])

    @bp.get("/rollouts/<namespace>/<name>")
    def rollout(namespace: str, name: str) -> Response:
        if not caller().may("read", namespace):
            return page("error.html", 403, message=f"You may not read namespace {namespace}.")
        found = store.events.page(
            EventFilter(kind="audit", namespace=namespace, name=name), limit=AUDIT_SHOWN
        )
        items = rollouts.decisions(found.items)
        return page(
            "rollout.html",
            namespace=namespace,
            name=name,
            decisions=list(reversed(items)),
            chart=rollouts.chart(items),
            quality=rollouts.quality(items, found.items),
            truncated=found.next_cursor is not None,
        )
