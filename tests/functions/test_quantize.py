"""``AISVC_QUANTIZE=int8``: the real MiniLM encoder with int8 linear layers, and refusals.

The int8 encoder is loaded the way the runtime loads a revision (``function.load`` of the
shipped head, ``shared_encoder`` reading the environment); the fp32 one is the process's
usual shared encoder, so only the int8 copy is extra.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from aiservice_functions.models import uri
from aiservice_functions.models.minilm import shared_encoder
from aiservice_functions.models.quantize import (
    QuantizeError,
    parse_quantize,
    quantize_from_env,
    quantized_linear_layers,
)
from aiservice_functions.runtime.config import ConfigError, RuntimeConfig
from aiservice_functions.runtime.function import BatchDefaults
from aiservice_functions.sentiment import data
from aiservice_functions.sentiment.hooks import DEFAULT_MODEL_URI, function
from aiservice_functions.sentiment.model import SentimentModel

OBVIOUS = [
    ("I absolutely love this, best thing I ever bought!", "positive"),
    ("Great value for the price, my kids adore it.", "positive"),
    ("Terrible quality, it broke after two days and support ignored me.", "negative"),
    ("The hotel was dirty and the staff were rude.", "negative"),
]


def _load(monkeypatch: pytest.MonkeyPatch, setting: str | None) -> SentimentModel:
    if setting is None:
        monkeypatch.delenv("AISVC_QUANTIZE", raising=False)
    else:
        monkeypatch.setenv("AISVC_QUANTIZE", setting)
    model: SentimentModel = function.load(uri.resolve(DEFAULT_MODEL_URI).path, "v2")
    return model


@pytest.fixture(scope="module")
def both() -> dict[str, SentimentModel]:
    with pytest.MonkeyPatch.context() as monkeypatch:
        return {"fp32": _load(monkeypatch, None), "int8": _load(monkeypatch, "int8")}


def test_int8_quantizes_every_linear_layer_of_the_encoder(both: dict[str, SentimentModel]) -> None:
    fp32, int8 = both["fp32"].encoder, both["int8"].encoder
    assert (fp32.quantize, int8.quantize) == ("none", "int8")
    assert int8 is not fp32
    linear = sum(type(m) is torch.nn.Linear for m in fp32.model.modules())
    assert linear >= 36  # 6 layers x (q, k, v, out, 2 feed-forward) + the pooler
    assert quantized_linear_layers(fp32.model) == 0
    assert quantized_linear_layers(int8.model) == linear
    assert not any(type(m) is torch.nn.Linear for m in int8.model.modules())
    # Each encoder loads its own model: the process's fp32 encoder stays fp32.
    assert shared_encoder() is fp32


def test_int8_still_answers_and_mostly_as_fp32(both: dict[str, SentimentModel]) -> None:
    replies = function.infer(both["int8"], [text for text, _ in OBVIOUS])
    assert [r["label"] for r in replies] == [label for _, label in OBVIOUS]
    assert all(0.5 <= r["score"] <= 1.0 for r in replies)
    texts = [e.text for e in data.held_out_set(400)[:96]]
    labels = {
        name: [p["label"] for i in range(0, len(texts), 32) for p in m.predict(texts[i : i + 32])]
        for name, m in both.items()
    }
    assert set(labels["int8"]) <= set(data.LABELS)
    agree = sum(a == b for a, b in zip(labels["fp32"], labels["int8"], strict=True))
    # Measured on the whole held-out set: 97 % agreement (benchmarks/README.md, int8).
    assert agree >= 0.9 * len(texts), agree


@pytest.mark.parametrize(("raw", "mode"), [(None, "none"), ("", "none"), (" INT8 ", "int8")])
def test_the_setting_is_off_unless_it_says_int8(raw: str | None, mode: str) -> None:
    env = {} if raw is None else {"AISVC_QUANTIZE": raw}
    assert quantize_from_env(env) == mode
    assert RuntimeConfig.from_env(BatchDefaults(), env=env).quantize == mode


@pytest.mark.parametrize("value", ["int4", "fp16", "true", "int8,none"])
def test_an_unknown_value_is_refused_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    message = f"AISVC_QUANTIZE must be one of none, int8; got {value!r}"
    with pytest.raises(ConfigError) as refused:
        RuntimeConfig.from_env(BatchDefaults(), env={"AISVC_QUANTIZE": value})
    assert str(refused.value) == message
    with pytest.raises(QuantizeError, match="AISVC_QUANTIZE"):
        parse_quantize(value)
    monkeypatch.setenv("AISVC_QUANTIZE", value)
    with pytest.raises(QuantizeError, match="AISVC_QUANTIZE"):
        shared_encoder()


def test_the_server_refuses_to_start_with_an_unknown_value() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "aiservice_functions.runtime",
            "serve",
            "aiservice_functions.sentiment",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "AISVC_QUANTIZE": "int4", "PORT": "0"},
    )
    assert result.returncode == 2, result.stderr
    assert "error: AISVC_QUANTIZE must be one of none, int8; got 'int4'" in result.stderr
