"""The Flask app serving one function as CloudEvents over HTTP.

Error contract with Knative delivery (4xx is dead-lettered at once, 5xx is retried
with backoff and then dead-lettered):

=====  ==========================================================================
200    reply event, in the request's content mode; for a shadow copy, the reply typed
       ``contract.SHADOW_REPLY_TYPE`` (only the decision log subscribes to it)
202    processed, no reply (no ``produces`` type, or the function returned None)
400    not a valid CloudEvent, or data the function cannot read (JSON reason)
413    body over ``AISVC_MAX_BODY_BYTES``
415    batched or non-JSON structured content mode
422    the function rejected the payload (reason names the field)
500    the model failed or passed ``AISVC_TIMEOUT_SECONDS``
503    the model is not loaded yet, or failed to load; or the device ran out of memory
       on this event's batch (the cache is freed and the worker serves on)
=====  ==========================================================================

An event whose data is a reference (``dataref``) is resolved before ``decode``; its own
statuses (413/415/422 for a bad reference, 503 for a store outage) are in ``claimcheck``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any, NamedTuple

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from aiservice_functions import contract
from aiservice_functions.cloudevents_http import (
    CloudEvent,
    InvalidEvent,
    Mode,
    hops,
    make_event,
    parse_request,
    render_response,
)
from aiservice_functions.models import accelerator
from aiservice_functions.models import uri as model_uri
from aiservice_functions.models.batching import (
    BatchFailure,
    InlineRunner,
    MicroBatcher,
    describe,
)
from aiservice_functions.models.device import Placement
from aiservice_functions.models.torch_setup import configure_torch
from aiservice_functions.runtime.claimcheck import (
    ClaimCheck,
    RefFailed,
    may_carry_reference,
    wants_resolving,
)
from aiservice_functions.runtime.config import RuntimeConfig
from aiservice_functions.runtime.device_health import DeviceHealth
from aiservice_functions.runtime.function import (
    ByReference,
    Function,
    Rejected,
    load_entrypoint,
)
from aiservice_functions.runtime.metrics import RuntimeMetrics
from aiservice_functions.runtime.reply import BinaryReplyWriter
from aiservice_functions.serving import multiproc
from aiservice_functions.serving.bodies import read_body

log = logging.getLogger("aiservice_functions.runtime")


class Answer(NamedTuple):
    """One HTTP answer to one event, with the outcome label metrics and logs use."""

    status: int
    headers: dict[str, str]
    body: bytes
    outcome: str
    event: CloudEvent | None = None


class NotReady(Exception):
    pass


class DeviceOutOfMemory(BatchFailure):
    """The device ran out of memory on a batch: its events get 503 and are retried."""


@dataclass
class ModelState:
    """Loaded in the background so liveness answers while a big model loads."""

    ready: threading.Event = field(default_factory=threading.Event)
    error: str | None = None
    model: Any = None
    sha256: str | None = None
    runner: MicroBatcher[Any, Any] | InlineRunner[Any, Any] | None = None
    stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


class FunctionService:
    """Everything one served function needs; the Flask views are thin wrappers."""

    def __init__(
        self,
        function: Function,
        config: RuntimeConfig,
        *,
        load_gate: threading.Event | None = None,
        device_probe: Callable[[], None] | None = None,
        claim_check: ClaimCheck | None = None,
    ) -> None:
        """``device_probe``: checks the device for readiness (default: a round trip
        through a CUDA device, none on CPU)."""
        self.function = function
        self.config = config
        self.claim_check = claim_check or ClaimCheck(config.claim_check)
        self.metrics = RuntimeMetrics(config.model_version)
        self.state = ModelState()
        device = config.placement.device
        if device_probe is None and device.is_cuda:
            device_probe = functools.partial(accelerator.probe, device)
        self.device_health = DeviceHealth(device_probe)
        self._load_gate = load_gate
        self._binary_reply = _reply_writer(config)
        self._loader = threading.Thread(target=self._load, name="model-loader", daemon=True)

    # --- model lifecycle ------------------------------------------------------------

    def start(self) -> None:
        self._loader.start()

    def wait_ready(self, timeout: float | None = None) -> bool:
        return self.state.ready.wait(timeout)

    def _load(self) -> None:
        cfg = self.config
        uri = cfg.model_uri or self.function.default_model_uri
        started = time.monotonic()
        try:
            if self._load_gate is not None:
                self._load_gate.wait()
            if uri is None:
                raise model_uri.ModelURIError(
                    f"no model: set {contract.ENV_MODEL_URI} (the function has no bundled model)"
                )
            threads = cfg.torch_threads
            if self.function.uses_torch:
                configure_torch(threads)
            resolved = model_uri.resolve(uri, cfg.model_sha256, stack=self.state.stack)
            model = self._load_model(resolved.path)
            self.state.model = model
            self.state.sha256 = resolved.sha256
            self.state.runner = self._make_runner(model, threads)
        except Exception as err:
            self.state.error = f"{type(err).__name__}: {err}"
            log.error("model failed to load", extra={"model_uri": uri, "error": self.state.error})
            return
        self.metrics.model_load.labels(cfg.model_version).set(time.monotonic() - started)
        self.metrics.model_ready.labels(cfg.model_version).set(1)
        placement = cfg.placement
        self.metrics.model_info.labels(
            cfg.model_version, str(placement.device), placement.precision
        ).set(1)
        self.state.ready.set()
        shared = multiproc.shared_dir()
        if shared is not None:
            multiproc.mark_ready(shared)
        log.info(
            "model loaded",
            extra={
                "function": self.function.name,
                "model_uri": uri,
                "model_sha256": resolved.sha256,
                "model_version": cfg.model_version,
                "load_seconds": round(time.monotonic() - started, 3),
                "torch_threads": threads if self.function.uses_torch else None,
                "device": str(cfg.placement.device),
                "precision": cfg.placement.precision,
                **describe(self.state.runner),
            },
        )

    def _load_model(self, path: Path) -> Any:
        """The function's model, on the configured device when the function can be placed."""
        fn, cfg = self.function, self.config
        if fn.load_on_device is not None:
            return fn.load_on_device(path, cfg.model_version, cfg.placement)
        return fn.load(path, cfg.model_version)

    def _make_runner(
        self, model: Any, threads: int
    ) -> MicroBatcher[Any, Any] | InlineRunner[Any, Any]:
        batch_hist = self.metrics.batch_size.labels(self.config.model_version)
        placement = self.config.placement

        def infer(items: Sequence[Any]) -> Sequence[Any]:
            try:
                return self.function.infer(model, items)
            except Exception as err:
                raise self._device_failure(err, placement, len(items)) from err

        if self.config.batch_max_size <= 1:
            return InlineRunner(infer, on_batch=batch_hist.observe)

        def thread_setup() -> None:
            if self.function.uses_torch:
                import torch

                torch.set_num_threads(threads)

        return MicroBatcher(
            infer,
            max_size=self.config.batch_max_size,
            max_wait_s=self.config.batch_max_wait_ms / 1000.0,
            on_batch=batch_hist.observe,
            thread_setup=thread_setup,
            keep_busy=placement.device.is_cuda,
        )

    def _device_failure(self, err: Exception, placement: Placement, size: int) -> Exception:
        """What a failed forward pass means: out of memory fails the batch with 503 and frees
        the allocator's cache; a CUDA fault marks the device broken; else ``err`` itself."""
        if accelerator.is_out_of_memory(err):
            accelerator.release_cached_memory()
            return DeviceOutOfMemory(
                f"{placement.device} ran out of memory on a batch of {size}: {err}"
            )
        if placement.device.is_cuda and accelerator.is_device_fault(err):
            self.device_health.mark_broken(f"{type(err).__name__}: {err}")
        return err

    def all_workers_ready(self) -> bool:
        """This process's model is loaded, and so is every other worker's of the container."""
        if not self.state.ready.is_set():
            return False
        shared = multiproc.shared_dir()
        return shared is None or multiproc.ready_workers(shared) >= self.config.workers

    def close(self) -> None:
        runner = self.state.runner
        if isinstance(runner, MicroBatcher):
            runner.close()
        self.state.stack.close()

    # --- one event ------------------------------------------------------------------

    def infer_one(self, item: Any) -> Any:
        runner = self.state.runner
        if not self.state.ready.is_set() or runner is None:
            raise NotReady(self.state.error or "model is still loading")
        timeout = self.config.timeout_seconds
        if isinstance(runner, InlineRunner):
            started = time.monotonic()
            output = runner.run(item)
            if time.monotonic() - started > timeout:
                # A forward pass cannot be interrupted; answer as a timeout all the same
                # so the sender sees one consistent deadline.
                raise TimeoutError(f"inference took longer than {timeout:g}s")
            return output
        future: Future[Any] = runner.submit(item)
        try:
            return future.result(timeout=timeout)
        except FutureTimeout:
            future.cancel()
            raise TimeoutError(f"inference took longer than {timeout:g}s") from None

    def reply_event(
        self,
        incoming: CloudEvent,
        data: Any,
        trace: Mapping[str, str] | None = None,
        latency_ms: float | None = None,
        type_: str | None = None,
    ) -> CloudEvent:
        """The reply: ``produces`` type (or ``type_``), this revision as source, model
        version, trace, cause and correlation.

        ``trace`` holds the W3C ``traceparent``/``tracestate`` HTTP headers, used when
        the event itself carries no trace extension (Knative propagates the headers).
        """
        attributes: dict[str, Any] = {
            "type": type_ or self.config.reply_type,
            "source": self.config.reply_source,
            contract.EXT_MODEL_VERSION: self.config.model_version,
        }
        attributes.update(self._reply_extensions(incoming, trace, latency_ms))
        return make_event(attributes, data)

    @staticmethod
    def _reply_extensions(
        incoming: CloudEvent, trace: Mapping[str, str] | None, latency_ms: float | None = None
    ) -> dict[str, Any]:
        """The per-event attributes of a reply: trace context, hop count, what caused it
        (``causationid``), the chain it belongs to (``correlationid``) and the latency."""
        extensions: dict[str, Any] = {}
        for name in (contract.EXT_TRACEPARENT, "tracestate"):
            value = incoming.get_extension(name) or (trace or {}).get(name)
            if value:
                extensions[name] = value
        extensions[contract.EXT_HOPS] = str(hops(incoming) + 1)
        cause = contract.event_key(incoming.get_source(), incoming.get_id())
        extensions[contract.EXT_CAUSATION] = cause
        extensions[contract.EXT_CORRELATION] = (
            str(incoming.get_extension(contract.EXT_CORRELATION) or "") or cause
        )
        if latency_ms is not None:
            extensions[contract.EXT_LATENCY_MS] = f"{latency_ms:.3f}"
        return extensions

    def handle(self, headers: Any, body: bytes, *, shadow: bool = False) -> Answer:
        """Answer one HTTP request (never raises), inferring on the calling thread.

        ``shadow``: the event was mirrored to this revision (posted to ``SHADOW_PATH``, or
        carrying ``EXT_SHADOW``): it is processed and counted, but answered without a reply.
        """
        started = self.begin(headers, body, shadow=shadow)
        if isinstance(started, Answer):
            return started
        try:
            output = self.infer_one(started.item)
        except Exception as err:
            return self.infer_failed(err, started.event)
        return self.finish(started, output)

    async def handle_async(self, headers: Any, body: bytes, *, shadow: bool = False) -> Answer:
        """:meth:`handle` for an event loop: waits for its batch without holding a thread."""
        if may_carry_reference(headers, body):  # fetching blocks: off the event loop
            started = await asyncio.to_thread(self.begin, headers, body, shadow=shadow)
        else:
            started = self.begin(headers, body, shadow=shadow)
        if isinstance(started, Answer):
            return started
        try:
            output = await self.infer_async(started.item)
        except Exception as err:
            return self.infer_failed(err, started.event)
        return self.finish(started, output)

    async def infer_async(self, item: Any) -> Any:
        """The output for ``item``: inline when not batching, else awaited from the batcher."""
        runner = self.state.runner
        if not self.state.ready.is_set() or runner is None:
            raise NotReady(self.state.error or "model is still loading")
        if isinstance(runner, InlineRunner):
            return self.infer_one(item)
        timeout = self.config.timeout_seconds
        waiting = asyncio.wrap_future(runner.submit(item))
        expired: list[bool] = []

        def expire() -> None:
            expired.append(True)
            waiting.cancel()  # cancels the batcher's future too: its batch skips it

        timer = asyncio.get_running_loop().call_later(timeout, expire)
        try:
            return await waiting
        except asyncio.CancelledError:
            if expired:
                raise TimeoutError(f"inference took longer than {timeout:g}s") from None
            raise
        finally:
            timer.cancel()

    def begin(self, headers: Any, body: bytes, *, shadow: bool = False) -> Answer | Pending:
        """Validate and decode: an error :class:`Answer`, or the item to infer."""
        started = time.perf_counter()
        try:
            parsed = parse_request(headers, body)
        except InvalidEvent as err:
            return _error(err.status, err.reason, "invalid_event")  # no event to name
        event = parsed.event
        if wants_resolving(event):
            try:
                event = self.claim_check.resolve(event)
            except RefFailed as err:
                outcome = "unavailable" if err.status >= 500 else "rejected"
                return _error(err.status, err.reason, outcome, field=err.field, event=event)
        try:
            item = self.function.decode(event)
        except Rejected as err:
            return _error(err.status, err.reason, "rejected", field=err.field, event=event)
        except InvalidEvent as err:
            return _error(err.status, err.reason, "rejected", event=event)
        except Exception as err:
            log.exception("decode failed", extra=_event_log(event))
            return _error(
                500,
                f"function failed to decode the event: {type(err).__name__}",
                "error",
                event=event,
            )
        trace = {k: headers[k] for k in (contract.EXT_TRACEPARENT, "tracestate") if k in headers}
        return Pending(event, item, parsed.mode, trace, shadow, started)

    def infer_failed(self, err: Exception, event: CloudEvent) -> Answer:
        """The answer to an event whose inference raised ``err``."""
        if isinstance(err, NotReady):
            return _error(503, f"not ready: {err}", "not_ready", event=event)
        if isinstance(err, DeviceOutOfMemory):
            return _error(503, str(err), "out_of_memory", event=event)
        if isinstance(err, TimeoutError):
            log.warning("inference timed out", extra=_event_log(event))
            return _error(500, str(err), "timeout", event=event)
        if isinstance(err, Rejected):
            return _error(err.status, err.reason, "rejected", field=err.field, event=event)
        log.error("inference failed", exc_info=err, extra=_event_log(event))
        return _error(500, f"model failed: {type(err).__name__}", "error", event=event)

    def finish(self, pending: Pending, output: Any) -> Answer:
        """The reply to a decoded event, from the function's output."""
        event = pending.event
        shadow = pending.shadow or _truthy(event.get_extension(contract.EXT_SHADOW))
        if output is None or not self.config.reply_type:
            return Answer(202, {}, b"", "shadow" if shadow else "no_reply", event)
        try:
            latency_ms = (time.perf_counter() - pending.started) * 1000
            if isinstance(output, ByReference):
                return self._reply_by_reference(pending, output, latency_ms)
            if shadow:
                # Only the decision log subscribes to this type: the answer is kept for
                # the rollout's quality checks and reaches no consumer.
                reply = self.reply_event(
                    event, output, pending.trace, latency_ms, contract.SHADOW_REPLY_TYPE
                )
                status, out_headers, out_body = render_response(reply, pending.mode)
                return Answer(status, out_headers, out_body, "shadow", event)
            if pending.mode == "binary" and self._binary_reply is not None:
                status, out_headers, out_body = self._binary_reply.write(
                    output, self._reply_extensions(event, pending.trace, latency_ms)
                )
            else:
                status, out_headers, out_body = render_response(
                    self.reply_event(event, output, pending.trace, latency_ms), pending.mode
                )
        except Exception as err:
            log.exception("reply could not be rendered", extra=_event_log(event))
            return _error(
                500, f"reply could not be rendered: {type(err).__name__}", "error", event=event
            )
        return Answer(status, out_headers, out_body, "replied", event)

    def _reply_by_reference(
        self, pending: Pending, output: ByReference, latency_ms: float
    ) -> Answer:
        """Write a large output to the claim-check bucket; reply with its reference."""
        try:
            ref, digest = self.claim_check.store(output.data, output.content_type)
        except RefFailed as err:
            return _error(err.status, err.reason, "error", event=pending.event)
        except Exception as err:  # the store failed: retried like a failed model
            log.warning("output could not be stored", extra=_event_log(pending.event))
            return _error(
                503, f"output could not be stored: {type(err).__name__}", "unavailable",
                event=pending.event,
            )  # fmt: skip
        reply = self.reply_event(pending.event, None, pending.trace, latency_ms)
        attributes = {
            **reply.get_attributes(),
            contract.EXT_DATAREF: ref,
            contract.EXT_DATASHA256: digest,
            "datacontenttype": output.content_type,
        }
        status, out_headers, out_body = render_response(make_event(attributes), pending.mode)
        return Answer(status, out_headers, out_body, "replied", pending.event)

    def too_large(self) -> Answer:
        limit = self.config.max_body_bytes
        return _error(
            413,
            f"body larger than {limit} bytes ({contract.ENV_MAX_BODY_BYTES}); "
            "send a reference to large data instead",
            "too_large",
        )

    def conclude(self, answer: Answer, started: float) -> tuple[str, list[tuple[str, str]], bytes]:
        """Count and log an answer; its status line, headers and body as sent.

        ``started``: ``time.perf_counter()`` when the request arrived.
        """
        if answer.status >= 400:
            answer = _naming_revision(answer, self.config.revision)
        elapsed = time.perf_counter() - started
        self.metrics.record(answer.outcome, elapsed)
        _log_answer(answer, elapsed)
        headers = list(answer.headers.items())
        headers.append(("Content-Length", str(len(answer.body))))
        return STATUS_LINES[answer.status], headers, answer.body


class Pending(NamedTuple):
    """A valid, decoded event waiting for its inference."""

    event: CloudEvent
    item: Any
    mode: Mode
    trace: dict[str, str]
    shadow: bool
    started: float
    """``time.perf_counter()`` when decoding began: the reply's latency counts from it."""


def _reply_writer(config: RuntimeConfig) -> BinaryReplyWriter | None:
    """The fast binary-mode writer, or None when there are no replies or the fixed
    attributes are invalid (then every reply takes the SDK path, which reports it)."""
    if not config.reply_type:
        return None
    try:
        return BinaryReplyWriter(
            {
                "type": config.reply_type,
                "source": config.reply_source,
                contract.EXT_MODEL_VERSION: config.model_version,
            }
        )
    except Exception:
        return None


def _event_log(event: CloudEvent) -> dict[str, Any]:
    trace = event.get_extension(contract.EXT_TRACEPARENT)
    return {
        **({"traceparent": trace} if trace else {}),
        "event_id": event.get_id(),
        "event_type": event.get_type(),
        "event_source": event.get_source(),
    }


def _naming_revision(answer: Answer, revision: str) -> Answer:
    """Name this revision in an error body: Knative copies the body into the dead letter's
    ``knativeerrordata``, which is how the event store counts dead letters per revision."""
    payload = json.loads(answer.body)
    payload["revision"] = revision
    return answer._replace(body=json.dumps(payload, ensure_ascii=False).encode("utf-8"))


def _error(
    status: int,
    reason: str,
    outcome: str,
    field: str | None = None,
    event: CloudEvent | None = None,
) -> Answer:
    payload: dict[str, Any] = {"error": reason, "status": status}
    if field is not None:
        payload["field"] = field
    body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    return Answer(status, {"content-type": "application/json"}, body, outcome, event)


def create_app(
    function: Function | str,
    config: RuntimeConfig | None = None,
    *,
    load_gate: threading.Event | None = None,
    start: bool = True,
    device_probe: Callable[[], None] | None = None,
    claim_check: ClaimCheck | None = None,
) -> Flask:
    """Build the WSGI app for ``function`` (a :class:`Function` or an entrypoint string).

    The model starts loading in a background thread at once (``start=False`` defers it;
    ``load_gate`` holds it until set, for tests of readiness; ``device_probe`` replaces
    the device check of readiness). ``app.extensions["aisvc"]`` is the
    :class:`FunctionService`. ``claim_check`` replaces the one built from ``config``
    (tests give it a stand-in host resolver).
    """
    fn = load_entrypoint(function) if isinstance(function, str) else function
    cfg = config or RuntimeConfig.for_function(fn)
    service = FunctionService(
        fn, cfg, load_gate=load_gate, device_probe=device_probe, claim_check=claim_check
    )
    app = Flask(f"aisvc-{fn.name}")
    app.extensions["aisvc"] = service
    _route_events(app, service)
    _route_health(app, service)
    if start:
        service.start()
    return app


def _answer(
    service: FunctionService, environ: dict[str, Any]
) -> tuple[str, list[tuple[str, str]], bytes]:
    """Answer one event posted to ``/`` or ``SHADOW_PATH``, straight from the WSGI environ."""
    cfg = service.config
    started = time.perf_counter()
    shadow = environ.get("PATH_INFO") == contract.SHADOW_PATH
    try:
        body = read_body(environ, cfg.max_body_bytes)
        answer = service.handle(_environ_headers(environ), body, shadow=shadow)
    except RequestEntityTooLarge:
        answer = service.too_large()
    except Exception as err:  # last resort: never crash, never a 2xx for a failure
        log.exception("unexpected failure")
        answer = _error(500, f"internal error: {type(err).__name__}", "error")
    return service.conclude(answer, started)


def _route_events(app: Flask, service: FunctionService) -> None:
    """Events are the hot path: answered without Flask's request context, URL matching
    and response object, which cost about as much as the event itself for a small model.
    Health, metrics and every other request go through Flask."""

    @app.post("/")
    @app.post(contract.SHADOW_PATH)
    def receive() -> Response:
        # Kept so that other methods on these paths get 405; POSTs are answered by
        # the fast path below before Flask routes them.
        status, headers, body = _answer(service, request.environ)
        return Response(body, status=int(status.split(" ", 1)[0]), headers=headers)

    flask_wsgi = app.wsgi_app
    event_paths = frozenset(("/", contract.SHADOW_PATH))

    def wsgi_app(environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("REQUEST_METHOD") == "POST" and environ.get("PATH_INFO") in event_paths:
            status, headers, body = _answer(service, environ)
            start_response(status, headers)
            return [body]
        return flask_wsgi(environ, start_response)

    app.wsgi_app = wsgi_app  # type: ignore[method-assign]


def _route_health(app: Flask, service: FunctionService) -> None:
    """Liveness, readiness, metrics, and JSON for every HTTP error."""
    version = service.config.model_version

    @app.get(contract.PATH_LIVENESS)
    def liveness() -> Response:
        if service.state.error is not None:
            # A model that cannot load will not load by waiting: let the kubelet restart us.
            return _json(500, {"status": "failed", "error": service.state.error})
        fault = service.device_health.fault
        if fault is not None:
            # Nor does a CUDA context after a device fault recover in this process.
            return _json(500, {"status": "device_failed", "error": fault})
        return _json(200, {"status": "alive"})

    @app.get(contract.PATH_READINESS)
    def readiness() -> Response:
        if service.all_workers_ready():
            problem = service.device_health.problem()
            if problem is not None:
                return _json(503, {"status": "device_unavailable", "error": problem})
            return _json(
                200,
                {
                    "status": "ready",
                    "model_version": version,
                    "model_sha256": service.state.sha256,
                    "device": str(service.config.placement.device),
                    "precision": service.config.placement.precision,
                },
            )
        if service.state.error is not None:
            return _json(503, {"status": "failed", "error": service.state.error})
        if service.state.ready.is_set():
            return _json(503, {"status": "loading", "detail": "other worker processes are loading"})
        return _json(503, {"status": "loading"})

    @app.get(contract.PATH_METRICS)
    def metrics() -> Response:
        return Response(service.metrics.render(), content_type=service.metrics.content_type)

    @app.errorhandler(HTTPException)
    def http_error(err: HTTPException) -> Response:
        # 404/405 and friends as JSON too, so every answer carries a reason.
        code = err.code or 500
        return _json(code, {"error": err.description or err.name, "status": code})


STATUS_LINES = {status.value: f"{status.value} {status.phrase}" for status in HTTPStatus}


def _environ_headers(environ: Mapping[str, Any]) -> dict[str, str]:
    """The request headers, lower-cased, from a WSGI environ (values as WSGI gives them)."""
    headers: dict[str, str] = {}
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            headers[key[5:].replace("_", "-").lower()] = value
    for key, name in (("CONTENT_TYPE", "content-type"), ("CONTENT_LENGTH", "content-length")):
        if environ.get(key):
            headers[name] = environ[key]
    return headers


def _json(status: int, payload: dict[str, Any]) -> Response:
    return Response(json.dumps(payload), status=status, content_type="application/json")


def _reason(body: bytes) -> str:
    try:
        return str(json.loads(body).get("error", ""))[:300]
    except ValueError:
        return ""


def _log_answer(answer: Answer, elapsed: float) -> None:
    """One line per event: attributes and outcome only, never the event data."""
    if answer.status < 400 and not log.isEnabledFor(logging.DEBUG):
        return
    extra: dict[str, Any] = {
        "status": answer.status,
        "outcome": answer.outcome,
        "latency_ms": round(elapsed * 1000, 3),
    }
    if answer.event is not None:
        extra.update(_event_log(answer.event))
    if answer.status >= 400:
        extra["reason"] = _reason(answer.body)
        level = logging.WARNING if answer.status >= 500 else logging.INFO
        log.log(level, "event failed" if answer.status >= 500 else "event refused", extra=extra)
    else:
        log.debug("event handled", extra=extra)
