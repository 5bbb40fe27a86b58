#!/usr/bin/env python
"""int8 dynamic quantization of the MiniLM encoder: accuracy change and speed-up.

In one process, on one torch thread (the runtime's default), with an fp32 and an int8
encoder (``MiniLMEncoder(quantize="int8")``, what ``AISVC_QUANTIZE=int8`` serves):

1. accuracy of every shipped head (sentiment v1/v2, topic v1/v2) on its held-out set
   and its hand-written set, with both encoders, the texts embedded one at a time and
   in batches of 32, how many answers agree between the encoders, and how many stay
   the same between batch sizes (int8 scales activations per batch, fp32 does not);
2. ``encode`` (tokenizer + forward + pooling) on batches of 1, 8 and 32 reviews, both
   encoders side by side in each round, the order swapped every round: wall and CPU
   milliseconds per batch (medians over the round's repeats), items/s, and the ratio
   fp32/int8 per round (above 1: int8 is faster);
3. the size of each encoder's weights as saved by ``torch.save``.

The 1-minute load average is recorded before and after every round; a round that
starts above 3/4 of the CPUs' worth of load is flagged noisy. CPU time per batch moves
less with other work on the machine than wall time does. Raw figures go to
``benchmarks/results/quantize-<time>.raw.json``.

``.venv/bin/python benchmarks/quantize.py [--rounds 3] [--seconds 2] [--batches 1,8,32]``
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from aiservice_functions.models.linear_head import LinearHead
from aiservice_functions.models.minilm import MiniLMEncoder
from aiservice_functions.models.quantize import quantized_linear_layers
from aiservice_functions.models.torch_setup import configure_torch
from aiservice_functions.sentiment import data as sentiment_data
from aiservice_functions.sentiment.head import SentimentHead
from aiservice_functions.sentiment.model import MODELS_DIR as SENTIMENT_MODELS
from aiservice_functions.topic import data as topic_data
from aiservice_functions.topic.head import TopicHead
from aiservice_functions.topic.model import MODELS_DIR as TOPIC_MODELS

RESULTS_DIR = Path(__file__).resolve().parent / "results"
NOISY_LOAD = 0.75 * (os.cpu_count() or 1)


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _embed(encoder: MiniLMEncoder, texts: Sequence[str], batch: int) -> torch.Tensor:
    with torch.inference_mode():
        return torch.cat(
            [encoder.encode(texts[i : i + batch]) for i in range(0, len(texts), batch)]
        )


def _predict(head: LinearHead, embeddings: torch.Tensor) -> list[int]:
    with torch.inference_mode():
        return [int(i) for i in head(embeddings).argmax(dim=1)]


def accuracy(
    encoders: dict[str, MiniLMEncoder], batch_sizes: Sequence[int]
) -> list[dict[str, Any]]:
    """Every shipped head on each evaluation set, both encoders, embedded in batches of
    each size: int8 quantizes activations per batch, so its answers depend on the batch."""
    heads: list[tuple[str, LinearHead]] = [
        (f"sentiment {v}", SentimentHead.load(SENTIMENT_MODELS / f"head-{v}.pt"))
        for v in ("v1", "v2")
    ] + [(f"topic {v}", TopicHead.load(TOPIC_MODELS / f"topic-{v}.pt")) for v in ("v1", "v2")]
    sets: dict[str, list[tuple[str, str]]] = {
        "sentiment held-out": [(e.text, e.label) for e in sentiment_data.held_out_set(400)],
        "sentiment hand-written": [(e.text, e.label) for e in sentiment_data.hand_written_set()],
        "topic held-out": [(e.text, e.topic) for e in topic_data.held_out_set(500)],
        "topic hand-written": [(e.text, e.topic) for e in topic_data.hand_written_set()],
    }
    rows: list[dict[str, Any]] = []
    for set_name, examples in sets.items():
        texts = [t for t, _ in examples]
        embedded = {
            (name, b): _embed(enc, texts, b) for name, enc in encoders.items() for b in batch_sizes
        }
        for head_name, head in heads:
            if not set_name.startswith(head_name.split()[0]):
                continue
            truth = [head.CLASSES.index(c) for _, c in examples]
            predicted = {key: _predict(head, e) for key, e in embedded.items()}
            for b in batch_sizes:
                fp32, int8 = predicted["fp32", b], predicted["int8", b]
                correct = [
                    sum(p == t for p, t in zip(ps, truth, strict=True)) for ps in (fp32, int8)
                ]
                cosine = torch.nn.functional.cosine_similarity(
                    embedded["fp32", b], embedded["int8", b]
                )
                rows.append(
                    {
                        "head": head_name,
                        "set": set_name,
                        "batch": b,
                        "n": len(examples),
                        "correct_fp32": correct[0],
                        "correct_int8": correct[1],
                        "accuracy_fp32": correct[0] / len(examples),
                        "accuracy_int8": correct[1] / len(examples),
                        "change_points": 100 * (correct[1] - correct[0]) / len(examples),
                        "agree": sum(a == c for a, c in zip(fp32, int8, strict=True)),
                        "int8_agree_with_first_batch_size": sum(
                            a == c
                            for a, c in zip(int8, predicted["int8", batch_sizes[0]], strict=True)
                        ),
                        "fp32_agree_with_first_batch_size": sum(
                            a == c
                            for a, c in zip(fp32, predicted["fp32", batch_sizes[0]], strict=True)
                        ),
                        "cosine_min": round(float(cosine.min()), 4),
                        "cosine_mean": round(float(cosine.mean()), 4),
                    }
                )
    return rows


def _time_cell(
    encode: Callable[[Sequence[str]], torch.Tensor], batches: list[list[str]], seconds: float
) -> dict[str, float]:
    encode(batches[0])  # warm-up
    walls: list[float] = []
    cpus: list[float] = []
    started = time.perf_counter()
    i = 0
    while time.perf_counter() - started < seconds or len(walls) < 3:
        batch = batches[i % len(batches)]
        w0, c0 = time.perf_counter(), time.process_time()
        encode(batch)
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
        i += 1
    size = len(batches[0])
    wall_ms = 1000 * statistics.median(walls)
    return {
        "repeats": len(walls),
        "wall_ms_per_batch": round(wall_ms, 3),
        "cpu_ms_per_batch": round(1000 * statistics.median(cpus), 3),
        "items_per_s": round(size / (wall_ms / 1000), 2),
    }


def speed(
    encoders: dict[str, MiniLMEncoder], sizes: Sequence[int], rounds: int, seconds: float
) -> list[dict[str, Any]]:
    texts = [e.text for e in sentiment_data.held_out_set(400)]
    out: list[dict[str, Any]] = []
    for r in range(rounds):
        order = ["fp32", "int8"] if r % 2 == 0 else ["int8", "fp32"]
        load_before = _load()
        cells: dict[str, dict[str, Any]] = {}
        for size in sizes:
            batches = [texts[i : i + size] for i in range(0, len(texts) - size + 1, size)]
            timed = {name: _time_cell(encoders[name].encode, batches, seconds) for name in order}
            cells[str(size)] = {
                **timed,
                "speedup_wall": round(
                    timed["fp32"]["wall_ms_per_batch"] / timed["int8"]["wall_ms_per_batch"], 3
                ),
                "speedup_cpu": round(
                    timed["fp32"]["cpu_ms_per_batch"] / timed["int8"]["cpu_ms_per_batch"], 3
                ),
            }
        out.append(
            {
                "round": r,
                "order": order,
                "load_before": load_before,
                "load_after": _load(),
                "noisy": load_before[0] > NOISY_LOAD,
                "batches": cells,
            }
        )
        print(json.dumps(out[-1]), file=sys.stderr)
    return out


def weights_mb(encoder: MiniLMEncoder) -> float:
    buffer = io.BytesIO()
    torch.save(encoder.model.state_dict(), buffer)
    return round(buffer.tell() / 1e6, 1)


def report(result: dict[str, Any]) -> str:
    lines = [
        f"load average at start {result['load_start']}, end {result['load_end']}",
        "",
        "| head | set | batch | n | fp32 | int8 | change (points) | answers agreeing "
        "| int8 (fp32) answers as at the first batch size | cosine min / mean |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["accuracy"]:
        lines.append(
            f"| {row['head']} | {row['set']} | {row['batch']} | {row['n']} | {row['correct_fp32']} "
            f"({row['accuracy_fp32']:.4f}) | {row['correct_int8']} ({row['accuracy_int8']:.4f}) "
            f"| {row['change_points']:+.2f} | {row['agree']}/{row['n']} "
            f"| {row['int8_agree_with_first_batch_size']} "
            f"({row['fp32_agree_with_first_batch_size']}) "
            f"| {row['cosine_min']} / {row['cosine_mean']} |"
        )
    lines += [
        "",
        "| round | load before → after | batch | fp32 ms (cpu ms) | int8 ms (cpu ms) "
        "| fp32 → int8 items/s | speed-up wall / cpu |",
        "|---|---|---|---|---|---|---|",
    ]
    for rnd in result["speed"]:
        for size, cell in rnd["batches"].items():
            f, q = cell["fp32"], cell["int8"]
            noisy = " noisy" if rnd["noisy"] else ""
            lines.append(
                f"| {rnd['round']}{noisy} | {rnd['load_before'][0]} → {rnd['load_after'][0]} "
                f"| {size} | {f['wall_ms_per_batch']:.1f} ({f['cpu_ms_per_batch']:.1f}) "
                f"| {q['wall_ms_per_batch']:.1f} ({q['cpu_ms_per_batch']:.1f}) "
                f"| {f['items_per_s']:.0f} → {q['items_per_s']:.0f} "
                f"| {cell['speedup_wall']:.2f}x / {cell['speedup_cpu']:.2f}x |"
            )
    lines += ["", f"weights saved: fp32 {result['weights_mb']['fp32']} MB, "
              f"int8 {result['weights_mb']['int8']} MB; int8 linear layers: "
              f"{result['quantized_linear_layers']}"]  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0, help="timing per cell and round")
    parser.add_argument("--batches", default="1,8,32", help="batch sizes")
    parser.add_argument(
        "--accuracy-batches", default="1,32", help="batch sizes to embed the evaluation sets in"
    )
    parser.add_argument("--skip-accuracy", action="store_true")
    args = parser.parse_args(argv)
    configure_torch(1)
    load_start = _load()
    encoders = {"fp32": MiniLMEncoder(), "int8": MiniLMEncoder(quantize="int8")}
    result: dict[str, Any] = {
        "torch": torch.__version__,
        "quantized_engine": torch.backends.quantized.engine,
        "cpus": os.cpu_count(),
        "load_start": load_start,
        "quantized_linear_layers": quantized_linear_layers(encoders["int8"].model),
        "weights_mb": {name: weights_mb(enc) for name, enc in encoders.items()},
        "accuracy": []
        if args.skip_accuracy
        else accuracy(encoders, [int(b) for b in args.accuracy_batches.split(",")]),
        "speed": speed(
            encoders, [int(b) for b in args.batches.split(",")], args.rounds, args.seconds
        ),
    }
    result["load_end"] = _load()
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"quantize-{time.strftime('%Y%m%dT%H%M%S')}.raw.json"
    path.write_text(json.dumps(result, indent=2))
    print(report(result))
    print(f"\nraw: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
