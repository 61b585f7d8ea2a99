#!/usr/bin/env python3
"""An upstream stand-in that speaks the inference wire formats, for tests, `make run` and benches.

It answers like a model whose words the caller chooses: the assistant text is the last user
message after an `echo:` prefix (so a test decides exactly what the "model" says), or a canned
answer otherwise; `echo-b64:` takes the text base64-encoded, so the prompt does not carry it in
the clear (the filter scans prompts too). Test-only request headers control the wire:

  x-standin-split: N       write the response body in N-byte pieces, flushed one by one
  x-standin-delay-ms: D    sleep D ms between pieces (paced like a real model)
  x-standin-chars: N       characters of text per stream event (default 3)
  x-standin-raw-body: 1    treat the request body's "echo:" text as the exact response body
  x-standin-content-type:  override the response content-type (with x-standin-raw-body)

Endpoints: POST /v1/chat/completions (JSON, or SSE with "stream": true), GET /health.
"""
import argparse
import base64
import json
import socketserver
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CANNED = "Sure. Write to jane.doe@acme-corp.com and she will send the report."
CREATED = 1700000000


def reply_text(req: dict) -> str:
    msgs = req.get("messages") or []
    text = ""
    for m in reversed(msgs):
        if m.get("role") == "user":
            c = m.get("content")
            if isinstance(c, list):
                c = "".join(p.get("text", "") for p in c if isinstance(p, dict))
            text = c or ""
            break
    if text.startswith("echo:"):
        return text[len("echo:"):]
    if text.startswith("echo-b64:"):
        # Lets a test make the "model" say something the filter must not see in the prompt.
        return base64.b64decode(text[len("echo-b64:"):]).decode()
    return CANNED


def pieces(text: str, n: int):
    return [text[i:i + n] for i in range(0, len(text), n)] or [""]


def chat_completion(req: dict, text: str) -> bytes:
    body = {
        "id": "chatcmpl-standin",
        "object": "chat.completion",
        "created": CREATED,
        "model": req.get("model", "standin"),
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": text, "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }],
        "usage": {"prompt_tokens": 5, "completion_tokens": len(text.split()), "total_tokens": 5 + len(text.split())},
    }
    return json.dumps(body).encode()


def chat_stream(req: dict, text: str, chars: int) -> bytes:
    model = req.get("model", "standin")

    def chunk(delta, finish=None, choices=True, usage=None):
        c = {"id": "chatcmpl-standin", "object": "chat.completion.chunk", "created": CREATED, "model": model,
             "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}] if choices else []}
        if usage is not None:
            c["usage"] = usage
        return b"data: " + json.dumps(c).encode() + b"\n\n"

    out = [chunk({"role": "assistant", "content": ""})]
    out += [chunk({"content": p}) for p in pieces(text, chars)]
    out.append(chunk({}, finish="stop"))
    if (req.get("stream_options") or {}).get("include_usage"):
        out.append(chunk(None, choices=False, usage={"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}))
    out.append(b"data: [DONE]\n\n")
    return b"".join(out)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "standin/1"

    def log_message(self, fmt, *args):  # keep test output quiet; errors still go to stderr
        if self.server.verbose:
            sys.stderr.write("standin: " + fmt % args + "\n")

    def do_GET(self):
        if self.path.split("?")[0] == "/health":
            return self.send(200, "application/json", b'{"status":"ok"}')
        self.send(404, "application/json", b'{"error":{"message":"not found","type":"invalid_request_error"}}')

    def do_POST(self):
        n = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(n)
        # What the filter forwarded, for tests that check request-side behaviour.
        self.server.last_request = {"path": self.path, "headers": dict(self.headers.items()), "body": raw}
        try:
            req = json.loads(raw or b"{}")
        except ValueError:
            return self.send(400, "application/json", b'{"error":{"message":"bad json","type":"invalid_request_error"}}')
        text = reply_text(req)
        if self.headers.get("x-standin-raw-body"):
            ctype = self.headers.get("x-standin-content-type", "application/json")
            return self.send(200, ctype, text.encode())
        path = self.path.split("?")[0].rstrip("/")
        if path.endswith("/chat/completions"):
            if req.get("stream"):
                chars = int(self.headers.get("x-standin-chars") or 3)
                return self.send(200, "text/event-stream", chat_stream(req, text, chars))
            return self.send(200, "application/json", chat_completion(req, text))
        self.send(404, "application/json", b'{"error":{"message":"unknown path","type":"invalid_request_error"}}')

    def send(self, status: int, ctype: str, body: bytes):
        split = int(self.headers.get("x-standin-split") or 0)
        delay = float(self.headers.get("x-standin-delay-ms") or 0) / 1000
        self.send_response(status)
        self.send_header("content-type", ctype)
        if split > 0 or ctype == "text/event-stream":
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            step = split if split > 0 else len(body) or 1
            for i in range(0, len(body), step):
                piece = body[i:i + step]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.flush()
                if delay:
                    time.sleep(delay)
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        self.wfile.flush()


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024


def main():
    p = argparse.ArgumentParser(description="inferguard upstream stand-in")
    p.add_argument("--listen", default="127.0.0.1:8000")
    p.add_argument("-v", "--verbose", action="store_true")
    a = p.parse_args()
    host, _, port = a.listen.rpartition(":")
    srv = Server((host or "127.0.0.1", int(port)), Handler)
    srv.verbose = a.verbose
    srv.last_request = None
    print(f"standin: listening on {a.listen}", flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
