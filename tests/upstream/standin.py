#!/usr/bin/env python3
"""An upstream stand-in that speaks the inference wire formats, for tests, `make run` and benches.

It answers like a model whose words the caller chooses: the assistant text is the last user
message after an `echo:` prefix (so a test decides exactly what the "model" says), or a canned
answer otherwise; `echo-b64:` takes the text base64-encoded, so the prompt does not carry it in
the clear (the filter scans prompts too). Test-only request headers control the wire:

  x-standin-split: N         write the response body in N-byte pieces, flushed one by one
  x-standin-delay-ms: D      sleep D ms between pieces (paced like a real model)
  x-standin-chars: N         characters of text per stream event (default 3)
  x-standin-encoding: gzip   compress the response body (gzip or deflate) despite accept-encoding
  x-standin-raw-body: 1      the reply text is the exact response body
  x-standin-echo-request: 1  the reply text is the request body as received
  x-standin-content-type: T  the response content-type (with x-standin-raw-body)
  x-standin-raw: SPEC        answer exactly as SPEC says, whatever the path and method (below)

Raw mode: SPEC is the base64url encoding (padding optional) of a JSON object

  {"status": 200, "headers": [["content-type", "text/plain"], ...], "chunks": ["<base64>", ...],
   "delay_ms": 0}

Each chunk (standard base64) is written and flushed on its own, `delay_ms` apart. The body goes
out with HTTP/1.1 chunked transfer, one transfer chunk per spec chunk, unless `headers` has a
content-length: then the chunks are written as they are after the headers (a wrong length is
sent as given). Only the status line, `server`, `date` and the given headers go out.

Every request (any method, bodies with a content-length or chunked, trailers included) is
recorded in memory, the last 1000 of them; `GET /_received?marker=M` lists, as JSON, the
records whose path or body contains M: {"method", "path", "headers": [[k, v], ...],
"body": "<base64>", "trailers": [[k, v], ...], "tls": bool, "tls_version": "TLSv1.3" or null,
"sni": the server name the client asked for or null}. Tests fetch it from the stand-in directly,
not through Envoy, to see exactly what reached the upstream (and how).

With --tls-cert FILE --tls-key FILE it serves HTTPS only (HTTP/1.1, TLS 1.2+), /health and
/_received included: Envoy's upstream leg is then encrypted, as in production.

APIs, streamed (`"stream": true`) or not, in the shapes real servers send:
  POST /v1/chat/completions   OpenAI chat (n > 1, stream_options.include_usage)
  POST /v1/completions        OpenAI legacy completions
  POST /v1/responses          OpenAI Responses (named SSE events, full text repeated in .done)
  POST /v1/messages           Anthropic Messages (named SSE events, ping)
  POST /api/chat, /api/generate   Ollama NDJSON (streams unless "stream": false)
  POST /generate, /generate_stream  TGI
  POST /v1/audio/transcriptions   OpenAI transcription (multipart): {"text": the reply to the
                                  `prompt` part, canned unless it starts with echo: or echo-b64:}
  GET  /v1/models, /health, /_received
Other methods (GET, DELETE, PUT, PATCH with a body) on the API paths answer like POST.
"""
import argparse
import base64
import collections
import gzip
import json
import ssl
import sys
import threading
import time
import urllib.parse
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CANNED = "Sure. Write to jane.doe@acme-corp.com and she will send the report."
CREATED = 1700000000


def _text_of(content) -> str:
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content or ""


def prompt_text(req: dict) -> str:
    """The last user text of any API's request."""
    for m in reversed(req.get("messages") or []):
        if isinstance(m, dict) and m.get("role") == "user":
            return _text_of(m.get("content"))
    inp = req.get("input")
    if isinstance(inp, str):
        return inp
    if isinstance(inp, list):
        for m in reversed(inp):
            if isinstance(m, dict) and m.get("role") == "user":
                return _text_of(m.get("content"))
    for k in ("prompt", "inputs"):
        if isinstance(req.get(k), str):
            return req[k]
    return ""


def reply_text(req: dict) -> str:
    text = prompt_text(req)
    if text.startswith("echo:"):
        return text[len("echo:"):]
    if text.startswith("echo-b64:"):
        return base64.b64decode(text[len("echo-b64:"):]).decode()
    return CANNED


def pieces(text: str, n: int):
    return [text[i:i + n] for i in range(0, len(text), n)] or [""]


def sse(data, event=None) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    body = data if isinstance(data, str) else json.dumps(data)
    return head + b"data: " + body.encode() + b"\n\n"


def usage(text):
    n = len(text.split())
    return {"prompt_tokens": 5, "completion_tokens": n, "total_tokens": 5 + n}


# --- OpenAI chat -----------------------------------------------------------------------------
def chat_logprobs(req, tokens):
    """`logprobs` of a choice when the request asks for them: each token's text and UTF-8 bytes,
    which spell the answer one token at a time, as OpenAI and vLLM send them."""
    if not req.get("logprobs"):
        return None

    def entry(t):
        return {"token": t, "logprob": -0.25, "bytes": list(t.encode())}
    k = int(req.get("top_logprobs") or 0)
    return {"content": [dict(entry(t), top_logprobs=[entry(t)] * k) for t in tokens], "refusal": None}


def chat_json(req, text):
    n = int(req.get("n") or 1)
    return json.dumps({
        "id": "chatcmpl-standin", "object": "chat.completion", "created": CREATED, "model": req.get("model", "standin"),
        "choices": [{"index": i, "message": {"role": "assistant", "content": text, "refusal": None},
                     "logprobs": chat_logprobs(req, pieces(text, 3)), "finish_reason": "stop"} for i in range(n)],
        "usage": usage(text),
    }).encode()


def chat_sse(req, text, chars):
    model = req.get("model", "standin")
    n = int(req.get("n") or 1)

    def chunk(choices, **extra):
        return sse({"id": "chatcmpl-standin", "object": "chat.completion.chunk", "created": CREATED, "model": model,
                    "system_fingerprint": None, "choices": choices, **extra})

    out = [chunk([{"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}])
           for i in range(n)]
    for p in pieces(text, chars):
        for i in range(n):  # choices interleave, as servers do with n > 1
            out.append(chunk([{"index": i, "delta": {"content": p}, "logprobs": chat_logprobs(req, [p]),
                                "finish_reason": None}]))
    out += [chunk([{"index": i, "delta": {}, "logprobs": None, "finish_reason": "stop"}]) for i in range(n)]
    if (req.get("stream_options") or {}).get("include_usage"):
        out.append(chunk([], usage=usage(text)))
    out.append(sse("[DONE]"))
    return out


# --- OpenAI legacy completions ---------------------------------------------------------------
def completion_json(req, text):
    return json.dumps({"id": "cmpl-standin", "object": "text_completion", "created": CREATED,
                       "model": req.get("model", "standin"),
                       "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": "stop"}],
                       "usage": usage(text)}).encode()


def completion_sse(req, text, chars):
    def chunk(t, finish=None):
        return sse({"id": "cmpl-standin", "object": "text_completion", "created": CREATED,
                    "model": req.get("model", "standin"),
                    "choices": [{"index": 0, "text": t, "logprobs": None, "finish_reason": finish}]})
    return [chunk(p) for p in pieces(text, chars)] + [chunk("", "stop"), sse("[DONE]")]


# --- OpenAI Responses ------------------------------------------------------------------------
def response_obj(req, text, status):
    item = {"id": "msg_standin", "type": "message", "status": "completed", "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]}
    return {"id": "resp_standin", "object": "response", "created_at": CREATED, "status": status,
            "model": req.get("model", "standin"), "output": [item] if status == "completed" else [],
            "parallel_tool_calls": True, "tool_choice": "auto", "tools": [],
            "usage": {"input_tokens": 5, "output_tokens": 1, "total_tokens": 6,
                      "input_tokens_details": {"cached_tokens": 0},
                      "output_tokens_details": {"reasoning_tokens": 0}} if status == "completed" else None}


def responses_json(req, text):
    return json.dumps(response_obj(req, text, "completed")).encode()


def responses_sse(req, text, chars):
    seq = iter(range(10 ** 6))

    def ev(name, **fields):
        return sse({"type": name, "sequence_number": next(seq), **fields}, event=name)

    part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
    item = {"id": "msg_standin", "type": "message", "status": "in_progress", "role": "assistant", "content": []}
    out = [ev("response.created", response=response_obj(req, "", "in_progress")),
           ev("response.in_progress", response=response_obj(req, "", "in_progress")),
           ev("response.output_item.added", output_index=0, item=item),
           ev("response.content_part.added", item_id="msg_standin", output_index=0, content_index=0, part=part)]
    for p in pieces(text, chars):
        out.append(ev("response.output_text.delta", item_id="msg_standin", output_index=0, content_index=0,
                      delta=p, logprobs=[]))
    done = dict(part, text=text)
    out += [ev("response.output_text.done", item_id="msg_standin", output_index=0, content_index=0, text=text,
               logprobs=[]),
            ev("response.content_part.done", item_id="msg_standin", output_index=0, content_index=0, part=done),
            ev("response.output_item.done", output_index=0,
               item=dict(item, status="completed", content=[done])),
            ev("response.completed", response=response_obj(req, text, "completed"))]
    return out


# --- Anthropic Messages ----------------------------------------------------------------------
def messages_json(req, text):
    return json.dumps({"id": "msg_standin", "type": "message", "role": "assistant", "model": req.get("model", "standin"),
                       "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "stop_sequence": None,
                       "usage": {"input_tokens": 5, "output_tokens": 1}}).encode()


def messages_sse(req, text, chars):
    msg = {"id": "msg_standin", "type": "message", "role": "assistant", "model": req.get("model", "standin"),
           "content": [], "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 5, "output_tokens": 1}}
    out = [sse({"type": "message_start", "message": msg}, "message_start"),
           sse({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
               "content_block_start"),
           sse({"type": "ping"}, "ping")]
    for i, p in enumerate(pieces(text, chars)):
        out.append(sse({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}},
                       "content_block_delta"))
        if i % 5 == 4:
            out.append(sse({"type": "ping"}, "ping"))
    out += [sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
            sse({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                 "usage": {"output_tokens": 9}}, "message_delta"),
            sse({"type": "message_stop"}, "message_stop")]
    return out


# --- Ollama ----------------------------------------------------------------------------------
def ollama_line(req, chat, t, done):
    d = {"model": req.get("model", "standin"), "created_at": "2024-01-01T00:00:00Z"}
    if chat:
        d["message"] = {"role": "assistant", "content": t}
    else:
        d["response"] = t
    d["done"] = done
    if done:
        d.update(done_reason="stop", total_duration=1000, eval_count=3)
    return (json.dumps(d) + "\n").encode()


def ollama(req, text, chars, chat):
    if req.get("stream") is False:
        return [ollama_line(req, chat, text, True)]
    return [ollama_line(req, chat, p, False) for p in pieces(text, chars)] + [ollama_line(req, chat, "", True)]


# --- TGI -------------------------------------------------------------------------------------
def tgi_sse(req, text, chars):
    ps = pieces(text, chars)
    out = []
    for i, p in enumerate(ps):
        last = i == len(ps) - 1
        ev = {"index": i, "token": {"id": i, "text": p, "logprob": -0.1, "special": False},
              "generated_text": text if last else None,
              "details": {"finish_reason": "eos_token", "generated_tokens": len(ps)} if last else None}
        out.append(b"data:" + json.dumps(ev).encode() + b"\n\n")
    return out


# --- OpenAI audio transcriptions (multipart/form-data) -----------------------------------------
def multipart_fields(ctype: str, raw: bytes) -> dict:
    """The parts of a multipart/form-data body by name, as bytes (the last part of a name wins)."""
    boundary = None
    for param in ctype.split(";")[1:]:
        k, _, v = param.strip().partition("=")
        if k.lower() == "boundary":
            boundary = v.strip('"').encode()
    if not boundary:
        return {}
    fields = {}
    for part in raw.split(b"--" + boundary)[1:]:
        if part.startswith(b"--"):
            break
        head, _, body = part.partition(b"\r\n\r\n")
        if body.endswith(b"\r\n"):
            body = body[:-2]
        for line in head.decode("latin-1").split("\r\n"):
            k, _, v = line.partition(":")
            if k.strip().lower() == "content-disposition":
                for param in v.split(";")[1:]:
                    pk, _, pv = param.strip().partition("=")
                    if pk == "name":
                        fields[pv.strip('"')] = body
    return fields


MODELS = json.dumps({"object": "list", "data": [
    {"id": "standin-1", "object": "model", "created": CREATED, "owned_by": "standin"}]}).encode()


def decode_spec(value: str) -> dict:
    """A raw-mode spec from its header value (base64url, padding optional)."""
    return json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "standin/1"

    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("standin: " + fmt % args + "\n")

    def read_body(self):
        """The request body (content-length or chunked) and any trailers."""
        trailers = []
        if "chunked" in (self.headers.get("transfer-encoding") or "").lower():
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    break
                out += self.rfile.read(size)
                self.rfile.readline()
            while True:
                line = self.rfile.readline()
                if line in (b"\r\n", b"\n", b""):
                    break
                k, _, v = line.decode("latin-1").partition(":")
                trailers.append([k.strip(), v.strip()])
            return bytes(out), trailers
        return self.rfile.read(int(self.headers.get("content-length") or 0)), trailers

    def record(self, raw, trailers):
        tls = isinstance(self.connection, ssl.SSLSocket)
        entry = {"method": self.command, "path": self.path, "headers": [[k, v] for k, v in self.headers.items()],
                 "body": base64.b64encode(raw).decode(), "trailers": trailers, "tls": tls,
                 "tls_version": self.connection.version() if tls else None,
                 "sni": getattr(self.connection, "sni", None) if tls else None}
        with self.server.lock:
            self.server.received.append((entry, raw))
        self.server.last_request = {"path": self.path, "headers": dict(self.headers.items()), "body": raw}

    def received(self):
        marker = (urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query).get("marker") or [""])[0]
        with self.server.lock:
            found = [e for e, raw in self.server.received if marker in e["path"] or marker.encode() in raw]
        return self.send(200, "application/json", [json.dumps(found).encode()])

    def do_GET(self):
        path = self.path.split("?")[0]
        if path == "/health":
            return self.send(200, "application/json", [b'{"status":"ok"}'])
        if path == "/_received":
            return self.received()
        self.handle_api()

    def do_POST(self):
        self.handle_api()

    do_PUT = do_PATCH = do_DELETE = do_POST

    def handle_api(self):
        raw, trailers = self.read_body()
        self.record(raw, trailers)
        if self.headers.get("x-standin-raw"):
            return self.send_raw(decode_spec(self.headers["x-standin-raw"]))
        path = self.path.split("?")[0].rstrip("/")
        if path == "/v1/models" and self.command == "GET":
            return self.send(200, "application/json", [MODELS])
        ctype = self.headers.get("content-type") or ""
        if path.endswith("/audio/transcriptions") and ctype.lower().startswith("multipart/form-data"):
            prompt = multipart_fields(ctype, raw).get("prompt", b"").decode("utf-8", "replace")
            text = reply_text({"prompt": prompt})
            return self.send(200, "application/json", [json.dumps({"text": text}).encode()])
        try:
            req = json.loads(raw or b"{}")
        except ValueError:
            return self.send(400, "application/json", [b'{"error":{"message":"bad json","type":"invalid_request_error"}}'])
        if not isinstance(req, dict):
            req = {}
        text = reply_text(req)
        if self.headers.get("x-standin-echo-request"):
            # The "model" repeats the request body it received: tests see what the filter forwarded.
            text = raw.decode()
        if self.headers.get("x-standin-raw-body"):
            return self.send(200, self.headers.get("x-standin-content-type", "application/json"), [text.encode()])
        chars = int(self.headers.get("x-standin-chars") or 3)
        stream = bool(req.get("stream"))
        if path.endswith("/chat/completions"):
            return self.send_api(stream, chat_sse(req, text, chars) if stream else chat_json(req, text))
        if path.endswith("/v1/completions"):
            return self.send_api(stream, completion_sse(req, text, chars) if stream else completion_json(req, text))
        if path.endswith("/v1/responses"):
            return self.send_api(stream, responses_sse(req, text, chars) if stream else responses_json(req, text))
        if path.endswith("/v1/messages"):
            return self.send_api(stream, messages_sse(req, text, chars) if stream else messages_json(req, text))
        if path in ("/api/chat", "/api/generate"):
            lines = ollama(req, text, chars, path == "/api/chat")
            if req.get("stream") is False:
                return self.send(200, "application/json", lines)
            return self.send(200, "application/x-ndjson", lines)
        if path == "/generate_stream":
            return self.send(200, "text/event-stream", tgi_sse(req, text, chars))
        if path == "/generate":
            return self.send(200, "application/json", [json.dumps([{"generated_text": text}]).encode()])
        self.send(404, "application/json", [b'{"error":{"message":"unknown path","type":"invalid_request_error"}}'])

    def send_raw(self, spec):
        """Answers exactly as a raw-mode spec says (see the module docstring)."""
        headers = [(str(k), str(v)) for k, v in spec.get("headers", [])]
        chunks = [base64.b64decode(c) for c in spec.get("chunks", [])]
        delay = float(spec.get("delay_ms") or 0) / 1000
        fixed = any(k.lower() == "content-length" for k, _ in headers)
        self.send_response(int(spec.get("status", 200)))
        for k, v in headers:
            self.send_header(k, v)
        if not fixed:
            self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        for i, c in enumerate(chunks):
            if delay and i:
                time.sleep(delay)
            if fixed:
                self.wfile.write(c)
            elif c:  # an empty transfer chunk would end the body
                self.wfile.write(b"%x\r\n%s\r\n" % (len(c), c))
            self.wfile.flush()
        if not fixed:
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

    def send_api(self, stream, body):
        if stream:
            return self.send(200, "text/event-stream", body)
        return self.send(200, "application/json", [body])

    def send(self, status, ctype, parts):
        """Sends `parts` (a list of byte strings: events, lines, or one body)."""
        split = int(self.headers.get("x-standin-split") or 0)
        delay = float(self.headers.get("x-standin-delay-ms") or 0) / 1000
        enc = self.headers.get("x-standin-encoding")
        body = b"".join(parts)
        if enc == "gzip":
            body, parts = gzip.compress(body), None
        elif enc == "deflate":
            body, parts = zlib.compress(body), None
        elif enc:
            parts = None  # an encoding the filter cannot read: only the header says so
        streamed = len(parts or []) > 1 or split > 0
        self.send_response(status)
        self.send_header("content-type", ctype)
        if enc:
            self.send_header("content-encoding", enc)
        if not streamed:
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
            return
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        if split > 0:
            parts = [body[i:i + split] for i in range(0, len(body), split)]
        for p in parts or [body]:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(p), p))
            self.wfile.flush()
            if delay:
                time.sleep(delay)
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024
    tls = None  # an ssl.SSLContext in TLS mode

    def finish_request(self, request, client_address):
        """In TLS mode the handshake runs here, in the connection's own thread, so a slow or
        failing client never holds up the accept loop."""
        if self.tls is None:
            return super().finish_request(request, client_address)
        try:
            conn = self.tls.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as e:
            if self.verbose:
                sys.stderr.write(f"standin: TLS handshake with {client_address[0]} failed: {e}\n")
            return
        try:
            super().finish_request(conn, client_address)
        finally:
            conn.close()


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["http/1.1"])

    def remember_sni(sock, name, _ctx):
        sock.sni = name  # recorded with each request: what Envoy's `sni` setting sent
    ctx.sni_callback = remember_sni
    return ctx


def main():
    p = argparse.ArgumentParser(description="inferguard upstream stand-in")
    p.add_argument("--listen", default="127.0.0.1:8000")
    p.add_argument("--tls-cert", metavar="FILE", help="serve HTTPS with this certificate (PEM chain)")
    p.add_argument("--tls-key", metavar="FILE", help="the certificate's private key (PEM)")
    p.add_argument("-v", "--verbose", action="store_true")
    a = p.parse_args()
    if bool(a.tls_cert) != bool(a.tls_key):
        p.error("--tls-cert and --tls-key go together")
    host, _, port = a.listen.rpartition(":")
    srv = Server((host or "127.0.0.1", int(port)), Handler)
    srv.verbose = a.verbose
    if a.tls_cert:
        srv.tls = tls_context(a.tls_cert, a.tls_key)
    srv.last_request = None
    srv.lock = threading.Lock()
    srv.received = collections.deque(maxlen=1000)
    print(f"standin: listening on {a.listen} ({'https' if srv.tls else 'http'})", flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
