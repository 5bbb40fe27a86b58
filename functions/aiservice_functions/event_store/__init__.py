"""The event store: dead letters and audit events, durable, queryable, replayable.

A small HTTP service deployed once per installation. The operator sets its
``/v1/namespaces/{ns}/aiservices/{name}/dead-letters`` URL as the ``deadLetterSink`` of
every Trigger; rollout decisions and replies go to ``.../audit``. It keeps each event
whole, lists and counts them (per AIService and per revision, for canary analysis), and
replays dead letters to the Broker. HTTP: :mod:`.ingest_front` (ingest, group-committed
by :mod:`.writer`) before :mod:`.app` (query API, console); the process's state:
:mod:`.service`; storage: :mod:`.database` and one module per table (SQLite by default,
PostgreSQL for production). ``python -m aiservice_functions.event_store serve`` runs it.
"""

from __future__ import annotations

from aiservice_functions.event_store.app import create_app
from aiservice_functions.event_store.service import EventStore, open_store

__all__ = ["EventStore", "create_app", "open_store"]
