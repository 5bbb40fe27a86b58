"""The web console: dead letters and rollouts for people, served by the event store itself.

Server-rendered pages under ``/console`` (Jinja, autoescaped) with one small script for
live counts and replay progress; every asset ships in this package, nothing is fetched
from elsewhere, so the pages work offline and under a strict Content-Security-Policy.

Security, in short: the API's bearer token is typed once into a login form (POST, never a
URL) and the session cookie keeps only what it granted (:mod:`.session`); a read-only
token gives a read-only console; every POST needs the session's CSRF token and a matching
``Origin``; event data is untrusted and only ever rendered as escaped text.
"""

from __future__ import annotations

from aiservice_functions.event_store.console.session import Access
from aiservice_functions.event_store.console.views import Replayer, blueprint

__all__ = ["Access", "Replayer", "blueprint"]
