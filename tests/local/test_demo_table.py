"""The demo's closing table: whole lines wherever it is printed. On a terminal it fits the
window; in a pipe or a CI log (where nothing wraps lines) it is as wide as its content, so
no event type or answer is folded over several lines."""

from __future__ import annotations

import io
import uuid

import pytest
from aiservice_functions.cloudevents_http import CloudEvent
from aiservice_operator.local.demo import print_table, reply_table
from rich.console import Console

ROUTED = "com.example.review.routed"
ANSWER = {"text": "The parcel arrived late.", "topic": "shipping", "label": "negative",
          "route": "logistics", "score": 0.93456}  # fmt: skip


def _event(event_type: str, data: object) -> CloudEvent:
    attributes = {"specversion": "1.0", "id": str(uuid.uuid4()), "source": "/demo",
                  "type": event_type, "datacontenttype": "application/json"}  # fmt: skip
    return CloudEvent(attributes, data)


SEEN = [("reply", None, _event(ROUTED, ANSWER)) for _ in range(4)]


def test_not_on_a_terminal_each_row_is_one_whole_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    out = io.StringIO()
    console = Console(file=out)
    assert not console.is_terminal and console.width == 80
    print_table(console, reply_table(SEEN, set(), 4))
    rows = [line for line in out.getvalue().splitlines() if line.startswith("│ reply")]
    assert len(rows) == 4, out.getvalue()
    for row in rows:
        assert ROUTED in row and "route=logistics" in row and "score=0.935" in row, row
    assert console.width == 80  # the console is left as it was


def test_on_a_terminal_it_fits_the_window() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=60, color_system=None)
    print_table(console, reply_table(SEEN, set(), 4))
    lines = out.getvalue().splitlines()
    assert lines and max(len(line) for line in lines) <= 60
