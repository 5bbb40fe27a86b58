#!/usr/bin/env python
"""Half precision against fp32: do the shipped heads give the same answers?

Every shipped head (sentiment v1/v2, topic v1/v2) scores its held-out set and its
hand-written set with the MiniLM encoder placed as ``AISVC_DEVICE``/``AISVC_PRECISION``
would place it (``MiniLMEncoder(placement=...)``, the head on the same device in fp32),
in batches of 32, for each precision asked for. The reference is fp32 on the CPU, the
runtime's CPU answer. Reported per head and set: label flips against the reference,
the largest difference of the chosen label's probability, the lowest cosine between the
embeddings, and the accuracy of both.

``.venv/bin/python benchmarks/precision.py [--device cpu|cuda] [--precisions bf16,fp16]``

Raw figures go to ``benchmarks/results/precision-<device>-<time>.raw.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from aiservice_functions.models.accelerator import cuda_facts
from aiservice_functions.models.device import (
    CPU_FP32,
    Device,
    Placement,
    parse_device,
    parse_precision,
    resolve_device,
)
from aiservice_functions.models.linear_head import LinearHead
from aiservice_functions.models.minilm import MiniLMEncoder
from aiservice_functions.sentiment import data as sentiment_data
from aiservice_functions.sentiment.head import SentimentHead
from aiservice_functions.sentiment.model import MODELS_DIR as SENTIMENT_MODELS
from aiservice_functions.topic import data as topic_data
from aiservice_functions.topic.head import TopicHead
from aiservice_functions.topic.model import MODELS_DIR as TOPIC_MODELS

RESULTS_DIR = Path(__file__).resolve().parent / "results"
BATCH = 32


def _sets() -> dict[str, list[tuple[str, str]]]:
    return {
        "sentiment held-out": [(e.text, e.label) for e in sentiment_data.held_out_set(400)],
        "sentiment hand-written": [(e.text, e.label) for e in sentiment_data.hand_written_set()],
        "topic held-out": [(e.text, e.topic) for e in topic_data.held_out_set(500)],
        "topic hand-written": [(e.text, e.topic) for e in topic_data.hand_written_set()],
    }


def _heads() -> list[tuple[str, LinearHead]]:
    return [
        (f"sentiment {v}", SentimentHead.load(SENTIMENT_MODELS / f"head-{v}.pt"))
        for v in ("v1", "v2")
    ] + [(f"topic {v}", TopicHead.load(TOPIC_MODELS / f"topic-{v}.pt")) for v in ("v1", "v2")]


def _embed(encoder: MiniLMEncoder, texts: Sequence[str]) -> torch.Tensor:
    with torch.inference_mode():
        return torch.cat(
            [encoder.encode(texts[i : i + BATCH]).cpu() for i in range(0, len(texts), BATCH)]
        )


def _probabilities(head: LinearHead, embeddings: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return head(embeddings)


def compare(placements: list[Placement]) -> list[dict[str, Any]]:
    """One row per head, set and placement: its answers against fp32 on CPU."""
    encoders = {p: MiniLMEncoder(placement=p) for p in [CPU_FP32, *placements]}
    heads, rows = _heads(), []
    for set_name, examples in _sets().items():
        texts = [t for t, _ in examples]
        embedded = {p: _embed(enc, texts) for p, enc in encoders.items()}
        for head_name, head in heads:
            if not set_name.startswith(head_name.split()[0]):
                continue
            truth = torch.tensor([head.CLASSES.index(c) for _, c in examples])
            ref = _probabilities(head, embedded[CPU_FP32])
            ref_label = ref.argmax(dim=1)
            for placement in placements:
                probs = _probabilities(head, embedded[placement])
                label = probs.argmax(dim=1)
                flips = (label != ref_label).nonzero().flatten().tolist()
                chosen = ref.gather(1, ref_label[:, None]) - probs.gather(1, ref_label[:, None])
                cosine = torch.nn.functional.cosine_similarity(
                    embedded[CPU_FP32], embedded[placement]
                )
                rows.append(
                    {
                        "head": head_name,
                        "set": set_name,
                        "placement": str(placement),
                        "n": len(examples),
                        "flips": len(flips),
                        "flipped": [
                            {
                                "text": texts[i],
                                "fp32": head.CLASSES[int(ref_label[i])],
                                "this": head.CLASSES[int(label[i])],
                                "fp32_score": round(float(ref[i].max()), 4),
                            }
                            for i in flips
                        ],
                        "max_score_diff": round(float(chosen.abs().max()), 5),
                        "cosine_min": round(float(cosine.min()), 5),
                        "accuracy_fp32": float((ref_label == truth).float().mean()),
                        "accuracy": float((label == truth).float().mean()),
                    }
                )
    return rows


def report(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| head | set | placement | n | label flips vs CPU fp32 | max score diff "
        "| min cosine | accuracy fp32 → this |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['head']} | {r['set']} | {r['placement']} | {r['n']} | {r['flips']} | "
            f"{r['max_score_diff']:.5f} | {r['cosine_min']:.5f} | "
            f"{r['accuracy_fp32']:.3f} → {r['accuracy']:.3f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--precisions", default="bf16,fp16", help="compared with CPU fp32")
    parser.add_argument("--out", type=Path, default=None, help="raw JSON results file")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    device: Device = resolve_device(parse_device(args.device, "--device"), cuda_facts())
    placements = [
        Placement(device, parse_precision(p, "--precisions") or "fp32")
        for p in args.precisions.split(",")
        if p
    ]
    if device.is_cuda:
        placements.insert(0, Placement(device, "fp32"))  # the GPU's own fp32 answers too
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    name = torch.cuda.get_device_name(device.index or 0) if device.is_cuda else "cpu"
    print(f"precision check {started} on {name}, torch {torch.__version__}", flush=True)
    rows = compare(placements)
    print(report(rows))
    for row in rows:
        for flip in row["flipped"]:
            print(f"  flip [{row['head']}, {row['placement']}]: {flip}")
    out = args.out or RESULTS_DIR / f"precision-{device}-{started.replace(':', '')}.raw.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"started": started, "device": name, "torch": torch.__version__, "batch": BATCH}
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    print(f"raw: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
