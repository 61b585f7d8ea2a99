"""Fail closed on answers: whatever the upstream's labels say, however its JSON is written, and
whatever breaks mid-stream, no planted value reaches the client, and the audit says what was
scanned. The stand-in's raw mode (`raw_spec`) sends each answer byte for byte as written here.

These tests specify the contract of the core rewrite: the audit's `decision` is `allowed`,
`unscanned`, `redacted` or `blocked`; `response.scanned` is true only when every byte that went
out was scanned; a response refused before any byte went out is a local reply in the API's error
shape (502, or 403 for a block rule); a stream refused later ends with one error event."""
import json
import random
import re
import ssl
import struct
import subprocess
import uuid
import zlib

import anthropic
import httpx
import httpx2
import openai
import pytest

from harness import scan_part, CA, raw_spec

EMAIL = "jane.doe@acme-corp.com"
TEXT = "Sure. Write to jane.doe@acme-corp.com and she will send the report."
REDACTED = "Sure. Write to [REDACTED:EMAIL] and she will send the report."
# Any of these in what a client receives is a leak: a part of the email (in UTF-8, JSON-escaped
# or not, and in UTF-16), and the values planted after a mid-stream break.
LEAKS = (b"jane", b"acme-corp", "jane".encode("utf-16-le"), b"ops+oncall", b"4111 1111 1111 1111",
         b"4111111111111111")
CHAT_REQUEST = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
# A non-streamed chat completion around one content string literal.
COMPLETION_HEAD = (b'{"id":"chatcmpl-raw","object":"chat.completion","created":1700000000,"model":"m",'
                   b'"choices":[{"index":0,"message":{"role":"assistant","content":')
COMPLETION_TAIL = (b'},"logprobs":null,"finish_reason":"stop"}],'
                   b'"usage":{"prompt_tokens":5,"completion_tokens":12,"total_tokens":17}}')


def curl(envoy, path, spec, body=CHAT_REQUEST):
    """Sends a request through Envoy over HTTP/1.1 (a GET when `body` is None) with `spec` as the
    stand-in's answer; returns (status, headers, raw body bytes, audit record)."""
    marker = uuid.uuid4().hex
    args = ["curl", "-sS", "-N", "--http1.1", "--cacert", CA, "-D", "-", f"{envoy.base}{path}?t={marker}"]
    if body is not None:
        args += ["-H", "content-type: application/json", "--data-binary", body]
    for k, v in spec.items():
        args += ["-H", f"{k}: {v}"]
    r = subprocess.run(args, capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    head, _, raw = r.stdout.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return int(lines[0].split()[1]), headers, raw, envoy.audit_for(marker)


def assert_length_matches(headers, body):
    """A content-length, when there is one, is the body's; without one the body is chunked."""
    if "content-length" in headers:
        assert int(headers["content-length"]) == len(body), headers
    else:
        assert headers.get("transfer-encoding") == "chunked", headers


def assert_no_leak(raw):
    for leak in LEAKS:
        assert leak not in raw, (leak, raw[:2000])


def assert_one_string_replaced(body, head, tail, text):
    """`body` is `head`, one JSON string literal whose value is `text`, and `tail`, byte for byte:
    only the redacted string changed, however the filter escapes it."""
    assert body.startswith(head) and body.endswith(tail), body
    assert json.loads(body[len(head):len(body) - len(tail)]) == text, body


def sse(obj, event=None):
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + (obj if isinstance(obj, bytes) else json.dumps(obj).encode()) + b"\n\n"


def chunk(delta, finish=None, **extra):
    return {"id": "chatcmpl-raw", "object": "chat.completion.chunk", "created": 1700000000, "model": "m",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish, **extra}]}


def chat_stream(pieces):
    """A chat completion stream whose content is `pieces`, one event each."""
    return ([sse(chunk({"role": "assistant", "content": ""}))] + [sse(chunk({"content": p})) for p in pieces]
            + [sse(chunk({}, "stop")), b"data: [DONE]\n\n"])


def sse_events(raw: bytes):
    """(event name, data) of each event (WHATWG framing; comments and other fields dropped)."""
    out = []
    for block in re.split(r"\r\n\r\n|\n\n|\r\r", raw.decode()):
        name, data = None, []
        for line in re.split(r"\r\n|\n|\r", block):
            if not line or line.startswith(":"):
                continue
            k, _, v = line.partition(":")
            v = v[1:] if v.startswith(" ") else v
            if k == "data":
                data.append(v)
            elif k == "event":
                name = v
        if data or name:
            out.append((name, "\n".join(data)))
    return out


def chat_text(events):
    """The content an OpenAI chat stream's client assembles, and whether it ended with [DONE]."""
    text = "".join(json.loads(d)["choices"][0]["delta"].get("content") or ""
                   for _, d in events if d != "[DONE]" and json.loads(d).get("choices"))
    return text, events[-1][1] == "[DONE]"


def png(size=1500, seed=7) -> bytes:
    """A real PNG: signature, IHDR, one IDAT of random (seeded) bytes, IEND, with correct CRCs."""
    def chunk_(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", 32, 32, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk_(b"IHDR", ihdr) + chunk_(b"IDAT", random.Random(seed).randbytes(size))
            + chunk_(b"IEND", b""))


REDACTED_AUDIT = {"scanned": True, "findings": {"email": 1}, "actions": {"mask": 1}}


# --- 1. Labels -------------------------------------------------------------------------------
@pytest.mark.parametrize("content_type", ["text/event-stream", "text/plain", "text/html", "application/octet-stream",
                                          "image/png", None])
def test_a_json_completion_under_any_label_is_scanned(envoy, content_type):
    """The label is the upstream's word, not a fact: JSON is found and redacted under any of them."""
    body = COMPLETION_HEAD + json.dumps(TEXT).encode() + COMPLETION_TAIL
    status, headers, raw, audit = curl(envoy, "/v1/chat/completions",
                                       raw_spec(body, content_type, content_length=True))
    assert status == 200
    assert_one_string_replaced(raw, COMPLETION_HEAD, COMPLETION_TAIL, REDACTED)
    assert_length_matches(headers, raw)
    assert_no_leak(raw)
    assert audit["decision"] == "redacted"
    assert scan_part(audit["request"]) == {"scanned": True}
    assert scan_part(audit["response"]) == REDACTED_AUDIT


@pytest.mark.parametrize("content_type", ["text/plain", None])
def test_a_chat_stream_labelled_as_plain_text_or_unlabelled_is_redacted_for_the_sdk(envoy, content_type):
    pieces = ["Sure. Write to jane.", "doe@acme", "-corp.com and she", " will send the report."]
    marker = uuid.uuid4().hex
    client = openai.OpenAI(base_url=f"{envoy.base}/v1", api_key="sk", max_retries=0,
                           http_client=httpx.Client(verify=ssl.create_default_context(cafile=CA), timeout=30))
    stream = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}], stream=True,
                                            extra_headers=raw_spec(chat_stream(pieces), content_type),
                                            extra_query={"t": marker})
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == REDACTED
    audit = envoy.audit_for(marker)
    assert audit["decision"] == "redacted"
    assert scan_part(audit["response"]) == REDACTED_AUDIT


def test_ollama_ndjson_labelled_as_an_event_stream_is_redacted(envoy):
    pieces = ["Sure. Write to jane.", "doe@acme", "-corp.com and she", " will send the report."]
    lines = [json.dumps({"model": "llama3", "created_at": "2024-01-01T00:00:00Z",
                         "message": {"role": "assistant", "content": p}, "done": False}).encode() + b"\n"
             for p in pieces]
    lines.append(json.dumps({"model": "llama3", "created_at": "2024-01-01T00:00:00Z",
                             "message": {"role": "assistant", "content": ""}, "done": True,
                             "done_reason": "stop"}).encode() + b"\n")
    status, headers, raw, audit = curl(envoy, "/api/chat", raw_spec(lines, "text/event-stream"))
    assert status == 200
    assert_no_leak(raw)
    got = [json.loads(line) for line in raw.splitlines()]
    assert "".join(g["message"]["content"] for g in got) == REDACTED
    assert got[-1]["done"] is True and got[-1]["done_reason"] == "stop"
    assert all(g["done"] is False for g in got[:-1])
    assert audit["decision"] == "redacted"
    assert scan_part(audit["response"]) == REDACTED_AUDIT


# A file's content is what an upstream answers with a binary body; the files API is not an inference
# API, so these run on an Envoy whose policy admits `/v1/files/` (conftest's files_envoy).
def test_a_real_png_passes_byte_identical_and_the_audit_says_unscanned(files_envoy):
    image = png()
    status, headers, raw, audit = curl(files_envoy, "/v1/files/file-1/content",
                                       raw_spec(image, "image/png", content_length=True), body=None)
    assert status == 200
    assert raw == image
    assert headers["content-type"] == "image/png"
    assert headers["content-length"] == str(len(image))
    assert audit["decision"] == "unscanned"
    assert scan_part(audit["request"]) == {"scanned": True}
    assert scan_part(audit["response"]) == {"scanned": False, "unscanned_reason": "binary"}


def test_a_value_after_a_media_signature_never_reaches_the_client(files_envoy):
    """Binary passes unread, but not the text in it: an upstream that puts a PNG signature first and
    a value later (cut across writes) gets the answer stopped there, and the audit says why."""
    image = png()
    chunks = [image[:700], image[700:] + b" mail jane.doe@acme", b"-corp.com now ", image]
    status, headers, raw, audit = curl(files_envoy, "/v1/files/file-1/content", raw_spec(chunks, "image/png"), body=None)
    assert_no_leak(raw)
    assert b"jane.doe" not in raw
    if status == 200:
        assert raw == image  # cut short where the text run began
    else:
        assert status == 403
    assert audit["decision"] == "blocked" and audit["reason"] == "rule:email"
    assert audit["response"]["findings"] == {"email": 1}


def test_text_labelled_as_a_png_is_scanned(files_envoy):
    status, headers, raw, audit = curl(files_envoy, "/v1/files/file-1/content",
                                       raw_spec(TEXT, "image/png", content_length=True), body=None)
    assert status == 200
    assert raw == REDACTED.encode()
    assert_length_matches(headers, raw)
    assert audit["decision"] == "redacted"
    assert scan_part(audit["response"]) == REDACTED_AUDIT


@pytest.mark.parametrize("bom, content_type", [
    (True, "application/json"),
    (False, "application/json"),
    (False, "application/json; charset=utf-16"),
], ids=["bom", "no-bom", "charset-label"])
def test_utf16_json_is_refused_or_decoded_never_passed(envoy, bom, content_type):
    body = (b"\xff\xfe" if bom else b"") + (COMPLETION_HEAD + json.dumps(TEXT).encode()
                                            + COMPLETION_TAIL).decode().encode("utf-16-le")
    status, headers, raw, audit = curl(envoy, "/v1/chat/completions",
                                       raw_spec(body, content_type, content_length=True))
    assert_no_leak(raw)
    assert_length_matches(headers, raw)
    if status == 502:
        err = json.loads(raw)["error"]
        assert (err["type"], err["code"]) == ("server_error", "unsupported_charset")
        assert audit["decision"] == "blocked" and audit["reason"] == "unsupported_charset"
    else:
        assert status == 200
        text = raw.decode("utf-16") if raw.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in raw else raw.decode()
        assert json.loads(text)["choices"][0]["message"]["content"] == REDACTED
        assert audit["decision"] == "redacted"


# --- 2. Parsers ------------------------------------------------------------------------------
ESCAPED = b'"Sure. Write to jane.doe\\u0040acme-corp.com and she will send the report."'
ODDITIES = [b"NaN", b"Infinity", b"1e400", b'"\\ud800"']


@pytest.mark.parametrize("odd", ODDITIES, ids=["nan", "infinity", "1e400", "lone-surrogate"])
def test_an_escaped_email_in_json_with_python_only_values_is_redacted(envoy, odd):
    """Python's json (what the SDKs parse with) accepts NaN, Infinity, 1e400 and lone surrogates:
    a body holding one is still JSON to a client, so it is redacted, not refused or passed."""
    tail = COMPLETION_TAIL.replace(b'"finish_reason":"stop"', b'"finish_reason":"stop","x_score":' + odd)
    status, headers, raw, audit = curl(envoy, "/v1/chat/completions",
                                       raw_spec(COMPLETION_HEAD + ESCAPED + tail, "application/json",
                                                content_length=True))
    assert status == 200
    assert_one_string_replaced(raw, COMPLETION_HEAD, tail, REDACTED)
    assert_length_matches(headers, raw)
    assert_no_leak(raw)
    assert audit["decision"] == "redacted"
    assert scan_part(audit["response"]) == REDACTED_AUDIT


@pytest.mark.parametrize("odd", ODDITIES, ids=["nan", "infinity", "1e400", "lone-surrogate"])
def test_an_escaped_email_in_a_stream_event_with_python_only_values_is_redacted(envoy, odd):
    event = (b'{"id":"chatcmpl-raw","object":"chat.completion.chunk","created":1700000000,"model":"m","choices":'
             b'[{"index":0,"delta":{"content":' + ESCAPED + b'},"x_score":' + odd + b',"finish_reason":null}]}')
    events = [sse(chunk({"role": "assistant", "content": ""})), sse(event), sse(chunk({}, "stop")),
              b"data: [DONE]\n\n"]
    status, headers, raw, audit = curl(envoy, "/v1/chat/completions", raw_spec(events, "text/event-stream"))
    assert status == 200
    assert_no_leak(raw)
    text, done = chat_text(sse_events(raw))
    assert text == REDACTED and done
    assert b'"x_score":' + odd in raw  # the rest of the event is left as it was
    assert audit["decision"] == "redacted"
    assert scan_part(audit["response"]) == REDACTED_AUDIT


ERROR_SHAPES = {
    # path: the error a client of that API parses, as a function of the body
    "/v1/chat/completions": lambda b: (b["error"]["code"], b["error"]["type"])
    == ("malformed_response", "server_error"),
    "/v1/messages": lambda b: b["type"] == "error" and b["error"]["type"] == "api_error",
    "/api/chat": lambda b: isinstance(b["error"], str),
}


@pytest.mark.parametrize("path", list(ERROR_SHAPES))
def test_json_nested_200_deep_is_refused_not_passed(envoy, path):
    deep = b'{"a":' * 200 + json.dumps(EMAIL).encode() + b"}" * 200
    tail = COMPLETION_TAIL.replace(b'"finish_reason":"stop"', b'"finish_reason":"stop","x_deep":' + deep)
    body = COMPLETION_HEAD + json.dumps(TEXT).encode() + tail
    json.loads(body)  # a client would read it
    status, headers, raw, audit = curl(envoy, path, raw_spec(body, "application/json", content_length=True))
    assert status == 502
    assert_no_leak(raw)
    assert ERROR_SHAPES[path](json.loads(raw)), raw
    assert headers["content-type"] == "application/json"
    assert headers["content-length"] == str(len(raw))
    assert audit["decision"] == "blocked" and audit["reason"] == "malformed_response"


# --- 3. Errors mid-stream --------------------------------------------------------------------
FIRST = ["Sure. Write to jane.", "doe@acme-corp.com and", " she will"]
FIRST_REDACTED = "Sure. Write to [REDACTED:EMAIL] and she will"
# What follows the break: plaintext events carrying other values, which must never go out.
AFTER = [sse(chunk({"content": " send ops+oncall@mail.example.org the card 4111 1111 1111 1111."})),
         sse(chunk({}, "stop")), b"data: [DONE]\n\n"]


def assert_stopped_after_first_events(raw, audit):
    """The client got the first events (redacted, possibly with a held tail not yet released),
    then exactly one error event, and nothing after it."""
    assert_no_leak(raw)
    events = sse_events(raw)
    *before, last = events
    assert json.loads(last[1])["error"]["code"] == "malformed_response", last
    assert raw.rstrip(b"\r\n").endswith(last[1].encode()), raw[-300:]  # nothing after it
    assert not any("error" in json.loads(d) for _, d in before if d != "[DONE]")
    assert all(d != "[DONE]" for _, d in before)
    text = "".join(json.loads(d)["choices"][0]["delta"].get("content") or "" for _, d in before)
    assert FIRST_REDACTED.startswith(text) and text.startswith("Sure. Write to [REDACTED:EMAIL]"), text
    assert audit["decision"] == "blocked" and audit["reason"] == "malformed_response"
    assert audit["response"]["findings"] == {"email": 1}


def test_gzip_that_breaks_mid_stream_stops_the_stream_with_one_error_event(envoy):
    events = chat_stream(FIRST)[:-2]  # no finish, no [DONE]
    z = zlib.compressobj(wbits=31)  # gzip
    good = z.compress(b"".join(events)) + z.flush(zlib.Z_SYNC_FLUSH)
    corrupt = b"\x06\xff\xff\xff\x00garbage"  # a deflate block of the reserved type 3: invalid
    status, headers, raw, audit = curl(envoy, "/v1/chat/completions", raw_spec(
        [good, corrupt] + AFTER, "text/event-stream", headers=[("content-encoding", "gzip")], delay_ms=150))
    assert status == 200
    assert "content-encoding" not in headers
    assert_stopped_after_first_events(raw, audit)


@pytest.mark.parametrize("bad", [
    b'{"id":"chatcmpl-raw","object":"chat.completion.chunk","created":1700000000,"model":"m",'
    b'"choices":[{"index":0,"delta":{"content":" \xff\xfe\xc3("},"finish_reason":null}]}',
    b"\xff\xfe not json \xc3(",
], ids=["in-a-json-string", "a-bare-data-line"])
def test_invalid_utf8_mid_stream_stops_the_stream_with_one_error_event(envoy, bad):
    events = chat_stream(FIRST)[:-2]
    status, headers, raw, audit = curl(envoy, "/v1/chat/completions",
                                       raw_spec(events + [sse(bad)] + AFTER, "text/event-stream", delay_ms=100))
    assert status == 200
    assert_stopped_after_first_events(raw, audit)


def test_invalid_utf8_mid_ndjson_stream_stops_it_with_one_error_line(envoy):
    def line(content, done=False):
        return json.dumps({"model": "llama3", "created_at": "2024-01-01T00:00:00Z",
                           "message": {"role": "assistant", "content": content}, "done": done}).encode() + b"\n"
    bad = (b'{"model":"llama3","created_at":"2024-01-01T00:00:00Z","message":{"role":"assistant",'
           b'"content":"\xff\xfe"},"done":false}\n')
    after = [line(" send ops+oncall@mail.example.org the card 4111 1111 1111 1111."), line("", True)]
    status, headers, raw, audit = curl(envoy, "/api/chat", raw_spec([line(p) for p in FIRST] + [bad] + after,
                                                                    "application/x-ndjson", delay_ms=100))
    assert status == 200
    assert_no_leak(raw)
    *before, last = [json.loads(x) for x in raw.splitlines()]
    assert set(last) == {"error"} and isinstance(last["error"], str)
    assert raw.endswith(b"\n") and raw.count(b'"error"') == 1
    text = "".join(b["message"]["content"] for b in before)
    assert FIRST_REDACTED.startswith(text) and text.startswith("Sure. Write to [REDACTED:EMAIL]"), text
    assert audit["decision"] == "blocked" and audit["reason"] == "malformed_response"


# --- 7. Everything else a client can see ------------------------------------------------------
@pytest.mark.parametrize("extra", [b": jane.doe@acme-corp.com\n", b"id: jane.doe@acme-corp.com\n",
                                   b"event: jane.doe@acme-corp.com\n"], ids=["comment", "id", "event"])
def test_sse_comments_ids_and_event_names_never_carry_a_value(envoy, extra):
    events = chat_stream(["All ", "clear."])
    events[1] = extra + events[1]
    status, headers, raw, audit = curl(envoy, "/v1/chat/completions", raw_spec(events, "text/event-stream"))
    assert status == 200
    assert_no_leak(raw)
    text, done = chat_text(sse_events(raw))
    assert text == "All clear." and done
    if extra.startswith(b":"):
        # A comment carries nothing a client reads: it may be dropped whole instead of redacted.
        assert audit["decision"] in ("allowed", "redacted")
        assert audit["response"]["scanned"] is True
    else:
        assert audit["decision"] == "redacted"
        assert scan_part(audit["response"]) == REDACTED_AUDIT


def test_a_json_key_holding_a_value_is_redacted(envoy):
    tail = COMPLETION_TAIL.replace(b'"finish_reason":"stop"',
                                   b'"finish_reason":"stop","metadata":{"jane.doe@acme-corp.com":"owner"}')
    status, headers, raw, audit = curl(envoy, "/v1/chat/completions", raw_spec(
        COMPLETION_HEAD + b'"All clear."' + tail, "application/json", content_length=True))
    assert status == 200
    assert_no_leak(raw)
    assert_length_matches(headers, raw)
    got = json.loads(raw)
    assert got["choices"][0]["metadata"] == {"[REDACTED:EMAIL]": "owner"}
    assert got["choices"][0]["message"]["content"] == "All clear."
    assert audit["decision"] == "redacted"
    assert scan_part(audit["response"]) == REDACTED_AUDIT


def test_a_json_key_holding_a_value_in_a_stream_event_is_redacted(envoy):
    events = chat_stream(["All ", "clear."])
    events[1] = sse(dict(chunk({"content": "All "}), x_meta={EMAIL: 1}))
    status, headers, raw, audit = curl(envoy, "/v1/chat/completions", raw_spec(events, "text/event-stream"))
    assert status == 200
    assert_no_leak(raw)
    text, done = chat_text(sse_events(raw))
    assert text == "All clear." and done
    assert audit["decision"] == "redacted"
    assert scan_part(audit["response"]) == REDACTED_AUDIT


def test_a_card_number_written_as_a_json_number_is_redacted(envoy):
    tail = COMPLETION_TAIL.replace(b'"finish_reason":"stop"', b'"finish_reason":"stop","x_account":4111111111111111')
    status, headers, raw, audit = curl(envoy, "/v1/chat/completions", raw_spec(
        COMPLETION_HEAD + b'"All clear."' + tail, "application/json", content_length=True))
    assert status == 200
    assert_no_leak(raw)
    assert_length_matches(headers, raw)
    got = json.loads(raw)
    assert got["choices"][0]["x_account"] in ("[REDACTED:CREDIT_CARD]", None)
    assert got["choices"][0]["message"]["content"] == "All clear."
    assert audit["decision"] == "redacted"
    assert audit["response"]["findings"] == {"credit_card": 1}


def test_vllm_prompt_logprobs_are_removed_and_counted(envoy):
    """vLLM's `prompt_logprobs` spell the prompt one token at a time: removed (null), not scanned."""
    tokens = ["jane", ".", "doe", "@", "acme", "-corp", ".com"]
    prompt_logprobs = [None] + [{str(100 + i): {"logprob": -0.5, "rank": 1, "decoded_token": t}}
                                for i, t in enumerate(tokens)]
    answer = {"id": "chatcmpl-raw", "object": "chat.completion", "created": 1700000000, "model": "m",
              "choices": [{"index": 0, "message": {"role": "assistant", "content": TEXT}, "logprobs": None,
                           "finish_reason": "stop"}],
              "usage": {"prompt_tokens": 7, "completion_tokens": 12, "total_tokens": 19},
              "prompt_logprobs": prompt_logprobs}
    status, headers, raw, audit = curl(envoy, "/v1/chat/completions",
                                       raw_spec(json.dumps(answer), "application/json", content_length=True))
    assert status == 200
    assert_no_leak(raw)
    assert_length_matches(headers, raw)
    expected = dict(answer, prompt_logprobs=None)
    expected["choices"] = [dict(answer["choices"][0], message={"role": "assistant", "content": REDACTED})]
    assert json.loads(raw) == expected
    assert b"decoded_token" not in raw
    assert audit["decision"] == "redacted"
    assert scan_part(audit["response"]) == dict(REDACTED_AUDIT, removed={"token_details": 1})


def anthropic_stream(thinking_signature):
    msg = {"id": "msg_raw", "type": "message", "role": "assistant", "model": "claude-raw", "content": [],
           "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 5, "output_tokens": 1}}
    return [
        sse({"type": "message_start", "message": msg}, "message_start"),
        sse({"type": "content_block_start", "index": 0,
             "content_block": {"type": "thinking", "thinking": "", "signature": ""}}, "content_block_start"),
        sse({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Fine."}},
            "content_block_delta"),
        sse({"type": "content_block_delta", "index": 0,
             "delta": {"type": "signature_delta", "signature": thinking_signature}}, "content_block_delta"),
        sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
        sse({"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
            "content_block_start"),
        sse({"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Answer follows."}},
            "content_block_delta"),
        sse({"type": "content_block_stop", "index": 1}, "content_block_stop"),
        sse({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
             "usage": {"output_tokens": 9}}, "message_delta"),
        sse({"type": "message_stop"}, "message_stop"),
    ]


def test_an_anthropic_signature_carrying_a_value_blocks_the_stream(envoy):
    """A thinking signature must go back to Anthropic unchanged, so it cannot be redacted: one
    that carries a value stops the stream."""
    events = anthropic_stream("EqQBCkgIARABGAIiQ jane.doe@acme-corp.com w1Zx")
    status, headers, raw, audit = curl(envoy, "/v1/messages", raw_spec(events, "text/event-stream"))
    assert_no_leak(raw)
    if status == 403:
        # The signature arrived before any byte went out: the refusal is the whole answer.
        assert json.loads(raw)["error"]["type"] == "permission_error"
    else:
        assert status == 200
        got = sse_events(raw)
        assert got[-1][0] == "error" and json.loads(got[-1][1])["type"] == "error"
        assert [name for name, _ in got].count("error") == 1
        assert "message_stop" not in [name for name, _ in got]
    assert b"Answer follows." not in raw
    assert audit["decision"] == "blocked" and audit["reason"] == "rule:email"

    marker = uuid.uuid4().hex
    claude = anthropic.Anthropic(base_url=envoy.base, api_key="k", max_retries=0,
                                 http_client=httpx2.Client(verify=ssl.create_default_context(cafile=CA), timeout=30))
    with pytest.raises(anthropic.APIError):
        with claude.messages.stream(model="m", max_tokens=9, messages=[{"role": "user", "content": "hi"}],
                                    extra_headers=raw_spec(events, "text/event-stream"),
                                    extra_query={"t": marker}) as s:
            s.get_final_message()
    assert envoy.audit_for(marker)["decision"] == "blocked"


def test_a_signature_field_in_an_openai_chunk_is_redacted_like_any_string(envoy):
    events = chat_stream(["All ", "clear."])
    events[2] = sse(chunk({"content": "clear.", "signature": "sig jane.doe@acme-corp.com"}))
    status, headers, raw, audit = curl(envoy, "/v1/chat/completions", raw_spec(events, "text/event-stream"))
    assert status == 200
    assert_no_leak(raw)
    got = sse_events(raw)
    text, done = chat_text(got)
    assert text == "All clear." and done
    signatures = [json.loads(d)["choices"][0]["delta"]["signature"] for _, d in got
                  if d != "[DONE]" and "signature" in json.loads(d)["choices"][0]["delta"]]
    # The SDK joins every string of a delta, this one too: it is one running text.
    assert "".join(signatures) == "sig [REDACTED:EMAIL]"
    assert audit["decision"] == "redacted"
    assert scan_part(audit["response"]) == REDACTED_AUDIT
