"""The CloudEvents function runtime: serve one torch model as CloudEvents over HTTP.

A function is a module exposing ``function = Function(...)``
(:class:`aiservice_functions.runtime.function.Function`)::

    function = Function(
        name="fraud",
        load=load,          # (model_path: Path, version: str) -> model; once, in background
        decode=decode,      # (event: CloudEvent) -> item; raise Rejected(reason) for bad data
        infer=infer,        # (model, items: Sequence[item]) -> [reply data | None per item]
        default_model_uri="pkg://aiservice_functions.fraud/models/fraud-v1.pt",
        batching=BatchDefaults(enabled=False),  # True pays for big models
    )

The runtime resolves the model URI (``aiservice_functions.models.uri``: sha256
checked, never a model hub), calls ``load`` in a background thread (liveness answers
meanwhile, readiness waits for it), validates each request as a CloudEvent
(``cloudevents_http``), calls ``decode`` on the request thread and ``infer`` either
inline or in micro-batches on one inference thread under ``torch.inference_mode()``.
Each output becomes the data of a reply event of type ``AISVC_REPLY_TYPE`` in the
request's content mode; ``None`` means no reply (202).

Entry points: :func:`aiservice_functions.runtime.app.create_app` (WSGI app, for tests
and embedding), :func:`aiservice_functions.runtime.server.serve` (uvicorn workers, blocks),
``python -m aiservice_functions.runtime serve ENTRYPOINT [--model URI] [--port PORT]``.
The status codes are listed in :mod:`aiservice_functions.runtime.app`.

This ``__init__`` stays import-light on purpose: the event store and the local broker
import :mod:`aiservice_functions.cloudevents_http` without Flask or torch.
"""
