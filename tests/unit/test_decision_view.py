"""Decision-log answers arranged for people: a chain as one tree, a reprocessing run as a
comparison (old vs new label, changed answers, score shift)."""

from __future__ import annotations

import pytest
from aiservice_operator.core.decision_view import chain_tree, compare


def test_a_chain_becomes_one_tree_with_shared_events_merged() -> None:
    def rec(
        name: str, role: str, key: str, cause: str | None, **extra: object
    ) -> dict[str, object]:
        source, _, event_id = key.partition("#")
        return {"namespace": "shop", "name": name, "role": role, "key": key, "source": source,
                "id": event_id, "type": "t", "causationId": cause, "correlationId": "/w#1",
                **extra}  # fmt: skip

    records = [
        rec("a", "input", "/w#1", None),
        rec("a", "reply", "/a#2", "/w#1", modelVersion="v1", latencyMs=4.0),
        rec("b", "input", "/a#2", "/w#1"),
        rec("b", "reply", "/b#3", "/a#2"),
    ]
    (root,) = chain_tree(records, [{"key": "/a#2", "name": "b", "errorCode": 500}])
    (middle,) = root.children
    assert middle.seen_by == [("shop/a", "reply"), ("shop/b", "input")]
    assert middle.model_version == "v1" and middle.dead_letters[0]["errorCode"] == 500
    assert [c.key for c in middle.children] == ["/b#3"]
    pairs = [
        {"old": {"data": {"label": "a", "score": 0.2}}, "new": {"data": {"label": "b",
         "score": 0.5}, "causationId": "k1"}},
        {"old": {"data": {"label": "a"}}, "new": {"data": {"label": "a"}, "causationId": "k2"}},
        {"old": {"data": [1]}, "new": {"data": [2], "causationId": "k3"}},
        {"old": None, "new": {"data": 1}},
    ]  # fmt: skip
    result = compare(pairs)
    assert (result.compared, result.changed, result.changed_keys) == (3, 2, ("k1", "k3"))
    assert result.confusion == {("a", "b"): 1, ("a", "a"): 1}
    assert result.mean_score_shift == pytest.approx(0.3)
