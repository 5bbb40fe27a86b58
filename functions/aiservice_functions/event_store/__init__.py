"""The event store: dead letters and audit events, durable, queryable, replayable.

A small HTTP service deployed once per installation. The operator sets its
``/v1/namespaces/{ns}/aiservices/{name}/dead-letters`` URL as the ``deadLetterSink`` of
every Trigger; rollout decisions and replies go to ``.../audit``. It keeps each event
whole, lists and counts them (per AIService and per revision, for canary analysis), and
replays dead letters to the Broker. HTTP API: :mod:`.app`; storage: :mod:`.storage`
(SQLite by default, PostgreSQL for production); ``python -m aiservice_functions.event_store
serve`` runs it.
"""

from __future__ import annotations

from aiservice_functions.event_store.app import create_app
from aiservice_functions.event_store.storage import SqlStore, open_store

__all__ = ["SqlStore", "create_app", "open_store"]
