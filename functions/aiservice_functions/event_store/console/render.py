"""How every console response is made: pages, JSON errors, the session of the request.

The request's :class:`~.session.Access` and :class:`~.session.Session` live on Flask's
``g`` (set by the guard in :mod:`.views` before any handler runs), so route modules share
these few helpers instead of closing over them.
"""

from __future__ import annotations

from typing import Any

from flask import Response, g, jsonify, render_template, request

from aiservice_functions.event_store.access import Caller
from aiservice_functions.event_store.console.session import Session


def page(template: str, status: int = 200, **values: Any) -> Response:
    """A rendered page (autoescaped Jinja) with the session and access it shows."""
    return Response(
        render_template(
            template, session=g.get("console_session"), access=g.get("console_access"), **values
        ),
        status=status,
        content_type="text/html; charset=utf-8",
    )


def json_error(status: int, reason: str) -> Response:
    response = jsonify({"error": reason})
    response.status_code = status
    return response


def wants_json() -> bool:
    """The console's script asks for JSON; a plain form post gets a page."""
    return request.accept_mimetypes.best == "application/json"


def refuse(status: int, reason: str) -> Response:
    """A refusal in the form the caller asked for."""
    if wants_json():
        return json_error(status, reason)
    return page("error.html", status, message=reason)


def current() -> Session:
    """The request's session (the guard always sets one)."""
    session: Session | None = g.get("console_session")
    assert session is not None
    return session


def remember(session: Session) -> None:
    """Make ``session`` the request's; its cookie is written with the response."""
    g.console_session = session
    g.console_cookie_dirty = True


def caller() -> Caller:
    """Who the signed-in session acts as (the guard sets it before any page runs)."""
    found: Caller = g.console_caller
    return found
