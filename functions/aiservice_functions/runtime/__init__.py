"""The CloudEvents function runtime (see ``runtime.app`` for the function contract).

This package ``__init__`` stays import-light on purpose: the event store and the local
broker import :mod:`aiservice_functions.runtime.cloudevents_http` without Flask or torch.
"""
