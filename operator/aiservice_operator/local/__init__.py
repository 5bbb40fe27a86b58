"""The local executor (`aisvc up`): runs the Knative objects the operator compiles.

One module per concern: ``ingress`` (broker HTTP), ``log`` (durable SQLite log),
``dispatcher`` (Trigger delivery), ``supervisor`` (function processes), ``serving``
(service routing), ``runner`` (start-up and status). Decisions are pure, in
``filters``, ``delivery``, ``traffic`` and ``scaling``.
"""
