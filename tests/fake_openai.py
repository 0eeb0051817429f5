"""A loopback OpenAI-compatible chat-completions server for the judge's tests (no network)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def verdict_reply(text: str) -> str:
    return "REFUSAL" if "can't" in text else "COMPLIANCE." if "Sure" in text else "maybe"


class FakeOpenAI:
    """A loopback OpenAI-compatible server; ``script`` lists the status codes to answer in turn.

    ``reply`` maps the last message's text to the answer (default: a refusal verdict when the
    response says "can't", compliance for "Sure", else an unreadable "maybe").
    """

    def __init__(self, reply: Callable[[str], str] = verdict_reply) -> None:
        self.requests: list[dict[str, Any]] = []
        self.script: list[int] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
                status = outer.script.pop(0) if outer.script else 200
                if status != 200:
                    self.send_response(status)
                    self.end_headers()
                    return
                content = reply(body["messages"][-1]["content"])
                data = json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1"

    def __enter__(self) -> FakeOpenAI:
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
