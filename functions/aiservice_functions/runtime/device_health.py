"""Whether the model's device still works, as readiness and liveness report it.

Two ways a GPU goes bad under a running model: a CUDA error (illegal memory access,
device-side assert, a lost device) leaves the process's context unusable for good, so
the fault is kept and both probes fail (a new container is the only cure); and a device
that stops answering (a kernel hung, the driver wedged) shows as a probe that does not
finish in time, so readiness fails while it lasts and traffic goes to other pods.

The probe is a callable (a tiny round trip through the device, ``accelerator.probe``),
so tests inject a failing or hanging one; on CPU there is none and the device is healthy.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

PROBE_TIMEOUT_S = 5.0
"""Longer than any batch should take: the probe queues behind the running one."""


class DeviceHealth:
    """The device's state: a kept fault, or the outcome of a probe with a deadline."""

    def __init__(
        self, probe: Callable[[], None] | None, timeout_s: float = PROBE_TIMEOUT_S
    ) -> None:
        self._probe = probe
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._fault: str | None = None
        self._running: threading.Thread | None = None

    @property
    def fault(self) -> str | None:
        """The CUDA error that broke the device for this process, if one did."""
        return self._fault

    def mark_broken(self, reason: str) -> None:
        with self._lock:
            if self._fault is None:
                self._fault = reason

    def problem(self) -> str | None:
        """Why the device cannot serve now, or None: runs one probe, at most one at a time
        (a probe still stuck from an earlier check answers for itself)."""
        if self._fault is not None:
            return self._fault
        if self._probe is None:
            return None
        with self._lock:
            stuck = self._running
            if stuck is not None and stuck.is_alive():
                return f"the device has not answered a probe for over {self._timeout_s:g}s"
            failure: list[str] = []
            thread = threading.Thread(
                target=self._run_probe, args=(failure,), name="device-probe", daemon=True
            )
            self._running = thread
            thread.start()
        thread.join(self._timeout_s)
        if thread.is_alive():
            return f"the device did not answer a probe within {self._timeout_s:g}s"
        return failure[0] if failure else self._fault

    def _run_probe(self, failure: list[str]) -> None:
        assert self._probe is not None
        try:
            self._probe()
        except Exception as err:
            failure.append(f"device probe failed: {type(err).__name__}: {err}")
