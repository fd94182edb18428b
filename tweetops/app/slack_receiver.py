"""A local stand-in for Slack's incoming webhooks: it accepts what Slack would and appends it to a file.

The embedded stack points the Airflow Slack connection here by default, so alerts are visible
(`tweetops stack status`, stack/slack/messages.jsonl) without a Slack workspace. Tests use it as a
real HTTP receiver on 127.0.0.1.
"""
from __future__ import annotations

import argparse
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class SlackReceiver:
    """An HTTP server on 127.0.0.1 recording every webhook POST (path and JSON body)."""

    def __init__(self, port: int = 0, out: Path | None = None):
        self.messages: list[dict] = []
        self.out = out
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    payload = json.loads(body or b"{}")
                except ValueError:
                    self.send_response(400)
                    self.end_headers()
                    self.wfile.write(b"invalid_payload")
                    return
                receiver.record({"path": self.path, "payload": payload})
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok")  # Slack answers a plain "ok"

            def do_GET(self):  # noqa: N802
                self.send_response(200)
                self.end_headers()
                self.wfile.write(json.dumps(receiver.messages).encode())

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/services/tweetops/local"

    def record(self, message: dict) -> None:
        with self.lock:
            self.messages.append(message)
            if self.out:
                with self.out.open("a") as f:
                    f.write(json.dumps(message) + "\n")
            text = message["payload"].get("text") or json.dumps(message["payload"])[:500]
            print(f"[slack] {text}", flush=True)

    def start(self) -> "SlackReceiver":
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def main() -> None:
    parser = argparse.ArgumentParser(description="Local Slack webhook receiver")
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument("--out", type=Path, required=True, help="JSON-lines file of received messages")
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    receiver = SlackReceiver(args.port, args.out)
    print(f"listening on {receiver.url}", flush=True)
    receiver.server.serve_forever()


if __name__ == "__main__":
    main()
