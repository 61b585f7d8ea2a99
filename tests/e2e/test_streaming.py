"""Every inference wire format through the real Envoy, redacted in both directions, with the
official SDKs assembling the text. The stand-in splits its output into 1-byte network writes
where noted, so every value crosses chunk and event boundaries."""
import gzip
import json
import ssl
import subprocess
import uuid

import anthropic
import httpx
import httpx2
import openai
import pytest

from harness import scan_part, CA, b64

SECRET_TEXT = "Reach jane.doe@acme-corp.com or ops+oncall@mail.example.org today."
REDACTED = "Reach [REDACTED:EMAIL] or [REDACTED:EMAIL] today."
ONE_BYTE = {"x-standin-split": "1", "x-standin-chars": "3"}


def tls(lib=httpx):
    """An HTTP client that trusts the local CA (anthropic 2.x is built on httpx2)."""
    return lib.Client(verify=ssl.create_default_context(cafile=CA), timeout=30)


@pytest.fixture(scope="module")
def oai(envoy):
    return openai.OpenAI(base_url=f"{envoy.base}/v1", api_key="sk-test", http_client=tls(), max_retries=0)


@pytest.fixture(scope="module")
def claude(envoy):
    return anthropic.Anthropic(base_url=envoy.base, api_key="sk-ant-test", http_client=tls(httpx2), max_retries=0)


def post(url, body, *headers):
    args = ["curl", "-sS", "-N", "--cacert", CA, url, "-H", "content-type: application/json", "-d", json.dumps(body)]
    for h in headers:
        args += ["-H", h]
    r = subprocess.run(args, capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout.decode()


@pytest.mark.parametrize("headers", [{}, ONE_BYTE], ids=["events", "one-byte-writes"])
def test_openai_chat_stream_with_the_sdk(envoy, oai, headers):
    marker = uuid.uuid4().hex
    stream = oai.chat.completions.create(
        model="standin-1", messages=[{"role": "user", "content": b64(SECRET_TEXT)}], stream=True, n=2,
        stream_options={"include_usage": True}, extra_headers=headers, extra_query={"t": marker})
    text = {0: "", 1: ""}
    finish = {}
    usage = None
    for chunk in stream:
        for c in chunk.choices:
            text[c.index] += c.delta.content or ""
            if c.finish_reason:
                finish[c.index] = c.finish_reason
        usage = chunk.usage or usage
    assert text == {0: REDACTED, 1: REDACTED}
    assert finish == {0: "stop", 1: "stop"}
    assert usage.total_tokens == 5 + len(SECRET_TEXT.split())
    audit = envoy.audit_for(marker)
    assert audit["decision"] == "redacted" and audit["stream"] is True
    assert audit["response"]["findings"] == {"email": 4}


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "buffered"])
def test_logprobs_never_spell_out_a_value(envoy, oai, stream):
    """Asked for logprobs, the upstream sends every token's text and UTF-8 bytes; a value split
    over tokens would pass a scan of each token, so inferguard removes them (null) and says so."""
    marker = uuid.uuid4().hex
    kw = dict(model="standin-1", messages=[{"role": "user", "content": b64(SECRET_TEXT)}], logprobs=True,
              top_logprobs=2, extra_headers={"x-standin-chars": "3"}, extra_query={"t": marker})
    if stream:
        chunks = list(oai.chat.completions.create(stream=True, **kw))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert all(c.choices[0].logprobs is None for c in chunks if c.choices)
        raw = "".join(c.model_dump_json() for c in chunks)
    else:
        r = oai.chat.completions.create(**kw)
        text, raw = r.choices[0].message.content, r.model_dump_json()
        assert r.choices[0].logprobs is None
    assert text == REDACTED
    for piece in ("jane", "doe", "acme", "oncall", "106, 97, 110"):  # "106, 97, 110" = bytes of "jan"
        assert piece not in raw
    audit = envoy.audit_for(marker)
    assert audit["decision"] == "redacted"
    removed = audit["response"]["removed"]["token_details"]
    assert removed == (len(SECRET_TEXT) + 2) // 3 if stream else removed == 1


def test_openai_legacy_completions_stream(oai):
    stream = oai.completions.create(model="standin-1", prompt=b64(SECRET_TEXT), stream=True, extra_headers=ONE_BYTE)
    assert "".join(c.choices[0].text for c in stream) == REDACTED


@pytest.mark.parametrize("headers", [{}, ONE_BYTE], ids=["events", "one-byte-writes"])
def test_openai_responses_stream_with_the_sdk(oai, headers):
    deltas, done_texts, final = [], [], None
    with oai.responses.stream(model="standin-1", input=b64(SECRET_TEXT), extra_headers=headers) as stream:
        for event in stream:
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
            elif event.type == "response.output_text.done":
                done_texts.append(event.text)
        final = stream.get_final_response()
    assert "".join(deltas) == REDACTED
    # The whole text, repeated by the server, carries the same redactions.
    assert done_texts == [REDACTED]
    assert final.output_text == REDACTED


def test_openai_responses_non_streaming(oai):
    r = oai.responses.create(model="standin-1", input=b64(SECRET_TEXT))
    assert r.output_text == REDACTED


@pytest.mark.parametrize("headers", [{}, ONE_BYTE], ids=["events", "one-byte-writes"])
def test_anthropic_messages_stream_with_the_sdk(claude, headers):
    with claude.messages.stream(model="claude-standin", max_tokens=100, extra_headers=headers,
                                messages=[{"role": "user", "content": b64(SECRET_TEXT)}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == REDACTED
    assert final.content[0].text == REDACTED
    assert final.stop_reason == "end_turn"


def test_anthropic_messages_non_streaming(claude):
    m = claude.messages.create(model="claude-standin", max_tokens=100,
                               messages=[{"role": "user", "content": b64(SECRET_TEXT)}])
    assert m.content[0].text == REDACTED


@pytest.mark.parametrize("path, field", [("/api/chat", "message"), ("/api/generate", "response")])
def test_ollama_ndjson_streams(envoy, path, field):
    body = {"model": "llama3", "messages": [{"role": "user", "content": b64(SECRET_TEXT)}]} if field == "message" \
        else {"model": "llama3", "prompt": b64(SECRET_TEXT)}
    out = post(envoy.base + path, body, "x-standin-split: 1")
    lines = [json.loads(l) for l in out.splitlines()]
    text = "".join(l["message"]["content"] if field == "message" else l["response"] for l in lines)
    assert text == REDACTED
    assert lines[-1]["done"] is True and lines[-1]["done_reason"] == "stop"
    assert all(l["done"] is False for l in lines[:-1])


def test_tgi_generate_stream(envoy):
    out = post(envoy.base + "/generate_stream", {"inputs": b64(SECRET_TEXT)}, "x-standin-split: 1")
    events = [json.loads(e[len("data:"):]) for e in out.split("\n\n") if e.startswith("data:")]
    assert "".join(e["token"]["text"] for e in events) == REDACTED
    assert events[-1]["generated_text"] == REDACTED


def test_a_gzip_response_is_inflated_scanned_and_sent_plain(envoy):
    out = subprocess.run(["curl", "-sS", "-D", "-", "--cacert", CA, envoy.base + "/v1/chat/completions",
                          "-H", "content-type: application/json", "-H", "x-standin-encoding: gzip",
                          "-d", json.dumps({"model": "m", "messages": [{"role": "user", "content": b64(SECRET_TEXT)}]})],
                         capture_output=True, timeout=30).stdout.decode()
    head, _, body = out.partition("\r\n\r\n")
    assert "content-encoding" not in head.lower()
    assert f"content-length: {len(body.encode())}" in head.lower()
    assert json.loads(body)["choices"][0]["message"]["content"] == REDACTED


def test_an_oversized_gzip_answer_passed_unscanned_keeps_its_encoding(make_envoy):
    """With `on_oversize: pass_unscanned`, a compressed answer too large to scan passes exactly
    as it came: still compressed, and still labelled so (the label goes only with inflation)."""
    e = make_envoy(json.dumps({"response": {"max_body_bytes": 64, "on_oversize": "pass_unscanned"}}))
    marker = uuid.uuid4().hex
    r = subprocess.run(["curl", "-sS", "-D", "-", "--cacert", CA, f"{e.base}/v1/chat/completions?t={marker}",
                        "-H", "content-type: application/json", "-H", "x-standin-encoding: gzip",
                        "-d", json.dumps({"model": "m", "messages": [{"role": "user", "content": b64(SECRET_TEXT)}]})],
                       capture_output=True, timeout=30).stdout
    head, _, body = r.partition(b"\r\n\r\n")
    assert b"content-encoding: gzip" in head.lower()
    assert f"content-length: {len(body)}".encode() in head.lower()
    assert json.loads(gzip.decompress(body))["choices"][0]["message"]["content"] == SECRET_TEXT
    assert scan_part(e.audit_for(marker)["response"]) == {"scanned": False, "unscanned_reason": "oversize"}


def test_a_deflate_stream_is_inflated_and_redacted(envoy):
    out = subprocess.run(["curl", "-sS", "-w", "\n%{http_code}", "--cacert", CA, envoy.base + "/v1/chat/completions",
                          "-H", "content-type: application/json", "-H", "x-standin-encoding: deflate",
                          "-H", "x-standin-split: 7",
                          "-d", json.dumps({"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]})],
                         capture_output=True, timeout=30).stdout.decode()
    # deflate is readable: the stream is inflated and redacted.
    assert "[REDACTED:EMAIL]" in out and "jane" not in out


def test_an_unreadable_encoding_is_refused_with_502(envoy):
    marker = uuid.uuid4().hex
    out = subprocess.run(["curl", "-sS", "-w", "\n%{http_code}", "--cacert", CA, f"{envoy.base}/v1/messages?t={marker}",
                          "-H", "content-type: application/json", "-H", "x-standin-encoding: br",
                          "-d", json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]})],
                         capture_output=True, timeout=30).stdout.decode()
    body, _, status = out.rpartition("\n")
    assert status == "502"
    assert json.loads(body) == {"type": "error", "error": {"type": "api_error", "message":
                                "the upstream answered with a content-encoding inferguard cannot scan"}}
    assert envoy.audit_for(marker)["reason"] == "unsupported_encoding"


def test_prompts_are_redacted_in_every_request_shape(envoy):
    """The stand-in repeats the exact request body it received."""
    cases = [
        ("/v1/chat/completions", {"model": "m", "messages": [
            {"role": "system", "content": "ops is a@corp.io"},
            {"role": "user", "content": [{"type": "text", "text": "mail b@corp.io"}]}]}),
        ("/v1/responses", {"model": "m", "input": [{"role": "user", "content": [{"type": "input_text", "text": "c@corp.io"}]}]}),
        ("/v1/messages", {"model": "m", "max_tokens": 5, "system": [{"type": "text", "text": "d@corp.io"}],
                          "messages": [{"role": "user", "content": "e@corp.io"}]}),
        ("/api/generate", {"model": "m", "prompt": "f@corp.io", "stream": False}),
    ]
    for path, body in cases:
        out = post(envoy.base + path, body, "x-standin-echo-request: 1", "x-standin-raw-body: 1",
                   "x-standin-content-type: text/plain")
        received = json.loads(out)
        assert "@corp.io" not in out, (path, out)
        assert out.count("[REDACTED:EMAIL]") == json.dumps(body).count("@corp.io"), (path, out)
        # The forwarded JSON is valid and otherwise identical.
        assert received["model"] == "m"


def test_block_rule_mid_stream_raises_in_the_sdks(make_envoy):
    e = make_envoy(json.dumps({"detect": {"detectors": {"email": {"action": "block"}}}}))
    client = openai.OpenAI(base_url=f"{e.base}/v1", api_key="sk", http_client=tls(), max_retries=0)
    marker = uuid.uuid4().hex
    got = ""
    with pytest.raises(openai.APIError) as err:
        for chunk in client.chat.completions.create(model="m", stream=True, extra_query={"t": marker},
                                                    messages=[{"role": "user", "content": b64(SECRET_TEXT)}]):
            got += chunk.choices[0].delta.content or "" if chunk.choices else ""
    assert "blocked by inferguard policy (rule email)" in str(err.value)
    # "Reach " went out unless the value arrived in the stream's first bytes: then the refusal
    # is a local reply (403) instead of an error event, and the SDK raises all the same.
    assert got in ("Reach ", "")
    audit = e.audit_for(marker)
    assert audit["decision"] == "blocked" and audit["reason"] == "rule:email"

    claude = anthropic.Anthropic(base_url=e.base, api_key="k", http_client=tls(httpx2), max_retries=0)
    with pytest.raises(anthropic.APIError) as err:
        with claude.messages.stream(model="m", max_tokens=9, messages=[{"role": "user", "content": b64(SECRET_TEXT)}]) as s:
            "".join(s.text_stream)
    assert "rule email" in str(err.value)

    # Non-streaming: the whole response is replaced by an error in the API's shape.
    with pytest.raises(openai.PermissionDeniedError) as err:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": b64(SECRET_TEXT)}])
    assert err.value.body["code"] == "content_blocked"
