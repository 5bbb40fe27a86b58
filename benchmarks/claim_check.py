"""Images per second: inline (base64 in JSON) vs by reference (dataref to S3).

Serves the digits function with the real runtime (one process, 1 worker) and a real S3
server (SeaweedFS, scripts/s3.sh) on 127.0.0.1, and sends noise PNGs of about 100 KB and
1 MB (incompressible, so the file is as large as stated) from 4 client threads:

- inline: binary-mode JSON ``{"image": "<base64>"}`` (``AISVC_MAX_BODY_BYTES`` raised to 2 MiB
  so a 1 MB image fits at all; the default 1 MiB refuses it with 413);
- reference: the image already in the bucket, the event carries ``dataref`` + ``datasha256``;
- upload + reference: the sender puts the image in the bucket first (as ``aisvc send
  --data-file`` does), then sends the reference.

    .venv/bin/python benchmarks/claim_check.py [--requests 200] [--threads 4]

Prints one line per size and mode with the 1-minute load average before the run.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import requests

ROOT = Path(__file__).resolve().parents[1]
S3 = ROOT / "scripts" / "s3.sh"
SIZES = {"100KB": 316, "1MB": 1000}
"""Noise image side in pixels: a w*w grey PNG of noise is about w*w bytes."""


def noise_png(side: int, seed: int) -> bytes:
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (side, side), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(out, format="PNG")
    return out.getvalue()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def headers(event_id: str, **extra: str) -> dict[str, str]:
    return {"ce-specversion": "1.0", "ce-id": event_id, "ce-source": "/bench",
            "ce-type": "com.example.digit", **extra}  # fmt: skip


def run(send: Any, count: int, threads: int) -> float:
    """Images per second over ``count`` calls of ``send(i)`` from ``threads`` threads."""
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        statuses = list(pool.map(send, range(count)))
    elapsed = time.perf_counter() - started
    bad = [s for s in statuses if s != 200]
    if bad:
        raise SystemExit(f"{len(bad)} requests failed, e.g. {bad[0]}")
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    import boto3

    state = Path(tempfile.mkdtemp(prefix="aisvc-bench-s3-"))
    s3_port = 21333
    endpoint = subprocess.run(
        ["bash", str(S3), "start", str(state), str(s3_port), "photos"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    env_lines = subprocess.run(
        ["bash", str(S3), "env", str(state)], capture_output=True, text=True, check=True
    ).stdout.split()
    s3_env = dict(line.split("=", 1) for line in env_lines)
    client = boto3.session.Session().client(
        "s3", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id=s3_env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=s3_env["AWS_SECRET_ACCESS_KEY"],
    )  # fmt: skip
    port = free_port()
    env = {**os.environ, **s3_env, "AISVC_WORKERS": "1", "AISVC_REPLY_TYPE": "com.example.read",
           "AISVC_MAX_BODY_BYTES": str(2 << 20), "AISVC_CLAIMCHECK_BUCKET": "photos",
           "AISVC_CLAIMCHECK_ENDPOINT": endpoint, "AISVC_LOG_LEVEL": "WARNING",
           "PYTHONPATH": f"{ROOT / 'functions'}:{os.environ.get('PYTHONPATH', '')}"}  # fmt: skip
    server = subprocess.Popen(
        [sys.executable, "-m", "aiservice_functions.runtime", "serve",
         "aiservice_functions.digits", "--port", str(port)], env=env,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if requests.get(f"{base}/health/readiness", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the runtime did not become ready")
            time.sleep(0.2)
        session = requests.Session()
        session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=args.threads))
        for label, side in SIZES.items():
            images = [noise_png(side, seed) for seed in range(8)]
            digests = [hashlib.sha256(i).hexdigest() for i in images]
            bodies = [json.dumps({"image": base64.b64encode(i).decode()}).encode() for i in images]
            for n, image in enumerate(images):
                client.put_object(Bucket="photos", Key=f"bench/{label}/{n}", Body=image,
                                  ContentType="image/png")  # fmt: skip

            def inline(i: int, bodies: list[bytes] = bodies) -> int:
                return session.post(f"{base}/", data=bodies[i % 8], timeout=60, headers=headers(
                    f"i{i}", **{"content-type": "application/json"})).status_code  # fmt: skip

            def by_ref(i: int, label: str = label, digests: list[str] = digests) -> int:
                return session.post(f"{base}/", timeout=60, headers=headers(
                    f"r{i}", **{"content-type": "image/png", "ce-dataref":
                                f"s3://photos/bench/{label}/{i % 8}",
                                "ce-datasha256": digests[i % 8]})).status_code  # fmt: skip

            def upload_ref(i: int, label: str = label, images: list[bytes] = images) -> int:
                key = f"bench/{label}/up-{i}"
                client.put_object(Bucket="photos", Key=key, Body=images[i % 8],
                                  ContentType="image/png")  # fmt: skip
                return session.post(f"{base}/", timeout=60, headers=headers(
                    f"u{i}", **{"content-type": "image/png",
                                "ce-dataref": f"s3://photos/{key}"})).status_code  # fmt: skip

            count = args.requests if side < 500 else max(20, args.requests // 4)
            for mode, send in (("inline base64", inline), ("by reference", by_ref),
                               ("upload + reference", upload_ref)):  # fmt: skip
                run(send, 8, args.threads)  # warm-up
                load = os.getloadavg()[0]
                rate = run(send, count, args.threads)
                print(f"{label:>5} ({len(images[0]) // 1000} KB PNG)  {mode:<19} "
                      f"{rate:7.1f} images/s  ({count} images, {args.threads} threads, "
                      f"load {load:.2f}{' noisy' if load > 2 else ''})", flush=True)  # fmt: skip
    finally:
        server.terminate()
        server.wait(30)
        subprocess.run(["bash", str(S3), "stop", str(state)], capture_output=True)
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
