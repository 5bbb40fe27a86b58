"""Whether the model's device still works, as readiness and liveness report it.

Two ways a GPU goes bad under a running model: a CUDA error (illegal memory access,
device-side assert, a lost device) leaves the process's context unusable for good, so
the fault is kept and both probes fail (a new container is the only cure); and a device
that stops answering (a kernel hung, the driver wedged) shows as a probe that does not
finish in time, so readiness fails while it lasts and traffic goes to other pods.

The probe is a callable (a tiny round trip through the device, ``accelerator.probe``),
so tests inject a failing or hanging one; on CPU there is none and the device is healthy.
Readiness runs on a worker's event loop, so a check never waits for a hung probe: it
reports what the latest probe found, and a probe past its deadline as unavailable.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

PROBE_TIMEOUT_S = 5.0
"""Longer than any batch should take: the probe queues behind the running one."""
PROBE_WAIT_S = 0.25
"""How long a readiness check waits for its probe: it runs on a worker's event loop, so a
wedged device must not hold the loop for long; a slower probe reports at a later check."""


class DeviceHealth:
    """The device's state: a kept fault, or the outcome of the latest probe.

    Each check starts a probe (unless one is still running) and waits up to ``wait_s``
    for it; a probe still running after ``timeout_s`` makes the device unavailable until
    it finishes.
    """

    def __init__(
        self,
        probe: Callable[[], None] | None,
        timeout_s: float = PROBE_TIMEOUT_S,
        wait_s: float = PROBE_WAIT_S,
    ) -> None:
        self._probe = probe
        self._timeout_s = timeout_s
        self._wait_s = wait_s
        self._lock = threading.Lock()
        self._fault: str | None = None
        self._last: str | None = None
        """Why the latest finished probe failed, None if it passed."""
        self._running: threading.Thread | None = None
        self._started = 0.0

    @property
    def fault(self) -> str | None:
        """The CUDA error that broke the device for this process, if one did."""
        return self._fault

    def mark_broken(self, reason: str) -> None:
        with self._lock:
            if self._fault is None:
                self._fault = reason

    def problem(self) -> str | None:
        """Why the device cannot serve now, or None."""
        if self._fault is not None:
            return self._fault
        if self._probe is None:
            return None
        with self._lock:
            running = self._running
            if running is not None and running.is_alive():
                if time.monotonic() - self._started >= self._timeout_s:
                    return f"the device has not answered a probe for over {self._timeout_s:g}s"
                return self._last
            running = threading.Thread(target=self._run_probe, name="device-probe", daemon=True)
            self._running, self._started = running, time.monotonic()
            running.start()
        running.join(self._wait_s)
        return self._fault or self._last

    def _run_probe(self) -> None:
        assert self._probe is not None
        try:
            self._probe()
        except Exception as err:
            self._last = f"device probe failed: {type(err).__name__}: {err}"
        else:
            self._last = None
