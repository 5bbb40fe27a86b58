"""A subscriber for the cluster tier's Eventing tests: an HTTP server that records every
CloudEvent delivered to it (binary or structured mode) as one JSON line, and answers with
the status the test chose. It runs inside a network namespace on the tier's bridge, so
Knative's dispatcher reaches it the way it reaches a pod.

    python event_sink.py OUT.jsonl [--port 8080] [--status 202] [--body TEXT]
                         [--reply-type TYPE]

With --reply-type it answers each event with a CloudEvent of that type (a reply the Broker
routes onward), echoing the data.
"""

from __future__ import annotations

import argparse
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

_lock = threading.Lock()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--status", type=int, default=202)
    ap.add_argument("--body", default="", help="the answer's body (with --status)")
    ap.add_argument("--reply-type", default="")
    args = ap.parse_args()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            record = {
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body.decode("utf-8", "replace"),
            }
            with _lock, args.out.open("a") as f:
                f.write(json.dumps(record) + "\n")
            if args.reply_type and args.status < 300:
                self.send_response(200)
                ce_id = self.headers.get("ce-id", "")
                self.send_header("ce-specversion", "1.0")
                self.send_header("ce-id", f"reply-{ce_id}")
                self.send_header("ce-source", "/event-sink")
                self.send_header("ce-type", args.reply_type)
                self.send_header("content-type", self.headers.get("content-type", ""))
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            answer = args.body.encode()
            self.send_response(args.status)
            self.send_header("content-length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *a: object) -> None:
            pass

    ThreadingHTTPServer(("0.0.0.0", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
