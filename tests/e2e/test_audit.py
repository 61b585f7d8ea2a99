"""Every decision path writes an audit record: each local reply and an error mid-stream, with its
decision, reason and the status that went out (README, "The audit record"). Each access-log line
is one JSON object with the record nested as `inferguard`."""
import datetime
import json
import re
import uuid

import httpx
import pytest

from harness import CLIENT_IDS, b64, client, mint_token, raw_spec, wait_for

APP = "https://app.example.com"
CONFIG = {
    "request": {"max_body_bytes": 2048},
    "response": {"max_body_bytes": 1024},
    "detect": {"detectors": {"email": {"action": "block"}}},
    "cors": {"allowed_origins": [APP]},
}
SECRET = "write to jane.doe@acme-corp.com"


@pytest.fixture(scope="module")
def audit_envoy(make_envoy):
    return make_envoy(json.dumps(CONFIG))


def chat(content="echo:fine", **kw):
    return {"model": "m", "messages": [{"role": "user", "content": content}], **kw}


# case: (method, path, headers, body, expected status, decision, reason)
CASES = {
    "allowed": ("POST", "/v1/chat/completions", {}, chat(), 200, "allowed", None),
    "blocked_response": ("POST", "/v1/chat/completions", {}, chat(b64(SECRET)), 403, "blocked", "rule:email"),
    "blocked_prompt": ("POST", "/v1/chat/completions", {}, chat(SECRET), 403, "blocked", "rule:email"),
    "401_invalid_token": ("POST", "/v1/chat/completions", {"authorization": "BADTOKEN"}, chat(), 401, "denied",
                          "invalid_token"),
    "403_admin_endpoint": ("POST", "/api/pull", {}, {"model": "llama3"}, 403, "denied", "admin_endpoint"),
    "400_malformed_path": ("POST", "/api%5cpull", {}, {"model": "llama3"}, 400, "denied", "malformed_path"),
    "413_request_too_large": ("POST", "/v1/chat/completions", {}, chat("echo:" + "x" * 3000), 413, "blocked",
                              "request_too_large"),
    "415_unsupported_encoding": ("POST", "/v1/chat/completions", {"content-encoding": "br"}, chat(), 415,
                                 "blocked", "unsupported_encoding"),
    "502_response_too_large": ("POST", "/v1/chat/completions", {}, chat("echo:" + "y" * 1500), 502, "blocked",
                               "response_too_large"),
    "preflight_204": ("OPTIONS", "/v1/chat/completions", {"origin": APP, "access-control-request-method": "POST"},
                      None, 204, "allowed", None),
    "preflight_403": ("OPTIONS", "/v1/chat/completions", {"origin": "https://evil.example.net",
                                                          "access-control-request-method": "POST"},
                      None, 403, "denied", "cors_origin"),
}


def token_header(headers):
    if headers.get("authorization") == "BADTOKEN":
        return dict(headers, authorization="Bearer " + mint_token("mallory", key="jwt-other"))
    return headers


@pytest.mark.parametrize("case", list(CASES))
def test_every_decision_path_writes_a_record_with_the_status_sent(audit_envoy, standin, case):
    method, path, headers, body, status, decision, reason = CASES[case]
    marker = str(uuid.uuid4())  # the form Envoy generates: the only one the record keeps
    sep = "&" if "?" in path else "?"
    # The request id is the marker: a path that cannot be read is logged as "-", and Envoy keeps
    # an x-request-id that comes from an internal address (this test's 127.0.0.1).
    with client(headers=dict(token_header(headers), **{"x-request-id": marker})) as c:
        r = c.request(method, f"{audit_envoy.base}{path}{sep}t={marker}",
                      content=None if body is None else json.dumps(body).encode(),
                      headers=None if body is None else {"content-type": "application/json"})
    assert r.status_code == status, r.text
    found = []

    def logged():
        found[:] = [e for e in audit_envoy.log_entries() if (e["inferguard"] or {}).get("request_id") == marker]
        return bool(found)
    wait_for(logged, 5, f"the record of {marker}")
    [line] = found
    audit = line["inferguard"]
    assert audit["schema"] == 1
    assert (audit["decision"], audit.get("reason")) == (decision, reason), audit
    assert audit["response"]["status"] == status == line["response_code"]
    assert audit["client_address"].startswith("127.0.0.1:")
    assert isinstance(audit["request"]["bytes"], int) and isinstance(audit["response"]["bytes"], int)
    assert line["method"] == method
    assert marker in line["path"] if case != "400_malformed_path" else line["path"] == "-"


def test_the_filtered_plaintext_listener_426_has_a_record(audit_envoy):
    marker = uuid.uuid4().hex
    r = httpx.post(f"{audit_envoy.plain_filtered_base}/v1/chat/completions?t={marker}", json=chat())
    assert r.status_code == 426
    audit = audit_envoy.audit_for(marker)
    assert (audit["decision"], audit["reason"], audit["response"]["status"]) == ("denied", "tls_required", 426)


def test_the_plaintext_listener_426_has_a_record(audit_envoy):
    r = httpx.post(f"http://127.0.0.1:{audit_envoy.plain_port}/v1/chat/completions", json=chat())
    assert r.status_code == 426

    def refused():
        return [e for e in audit_envoy.log_entries()
                if e["inferguard"] and e["inferguard"].get("listener") == "plaintext_refused"]
    wait_for(refused, 5, "the plaintext listener's line")
    audit = refused()[-1]["inferguard"]
    assert (audit["decision"], audit["reason"], audit["response"]["status"]) == ("denied", "tls_required", 426)


def test_an_error_mid_stream_has_a_record(audit_envoy):
    """A block after the stream's head went out: the status sent was 200, the record says blocked."""
    marker = uuid.uuid4().hex
    body = chat(b64("Reach " + "a" * 200 + " " + SECRET), stream=True)  # under 1024 bytes
    with client() as c:
        with c.stream("POST", f"{audit_envoy.base}/v1/chat/completions?t={marker}", json=body) as r:
            status = r.status_code
            try:
                text = "".join(r.iter_text())
            except httpx.HTTPError:
                text = ""
    audit = audit_envoy.audit_for(marker)
    assert (audit["decision"], audit["reason"]) == ("blocked", "rule:email")
    # Usually the head had gone out: 200 was sent, then one error event. When the value arrives
    # in the stream's first bytes the refusal is a local reply (403) instead. Either way the
    # record has the status that went out.
    assert status in (200, 403), text
    assert audit["response"]["status"] == status
    assert audit["stream"] is True


def test_each_line_is_json_with_the_record_nested(audit_envoy):
    marker = uuid.uuid4().hex
    with client() as c:
        assert c.post(f"{audit_envoy.base}/v1/chat/completions?t={marker}", json=chat()).status_code == 200
    audit_envoy.log_entry(marker)
    [raw] = [l for l in audit_envoy.output().splitlines() if marker in l]
    line = json.loads(raw)
    assert set(line) == {"start_time", "method", "path", "protocol", "response_code", "response_flags", "details",
                         "bytes_received", "bytes_sent", "duration_ms", "upstream_host", "route", "peer", "inferguard"}
    assert isinstance(line["inferguard"], dict) and line["inferguard"]["decision"] == "allowed"
    assert line["start_time"].endswith("Z") and isinstance(line["duration_ms"], int)
    # Envoy generated the request id (a UUID) for a request that brought none.
    assert len(line["inferguard"]["request_id"]) == 36


def test_the_keyed_prompt_digest_correlates_prompts_without_storing_them(make_envoy):
    import hashlib
    import hmac
    key = "a deployment secret!"
    e = make_envoy(json.dumps({"audit": {"prompt_digest": {"key": key}}}))
    body = json.dumps(chat("echo:same prompt")).encode()
    digests = []
    for _ in range(2):
        marker = uuid.uuid4().hex
        with client() as c:
            r = c.post(f"{e.base}/v1/chat/completions?t={marker}", content=body,
                       headers={"content-type": "application/json"})
        assert r.status_code == 200, r.text
        digests.append(e.audit_for(marker)["request"]["digest"])
    want = "hmac-sha256:" + hmac.new(key.encode(), body, hashlib.sha256).hexdigest()
    assert digests == [want, want]
    assert "same prompt" not in e.output()


def test_findings_are_counted_per_detector_and_action(envoy):
    """One detector, two actions: an address in a thinking block's signature (which must pass
    intact, so a finding there blocks) and one in the text (masked). `findings` and `actions` alone
    cannot tell which address took which action; `detector_actions` says it."""
    marker = uuid.uuid4().hex
    message = {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
               "content": [{"type": "text", "text": "Mail ops@acme-corp.com today."},
                           {"type": "thinking", "thinking": "fine", "signature": "EqQB jane.doe@acme-corp.com w1"}],
               "stop_reason": "end_turn", "stop_sequence": None, "usage": {"input_tokens": 5, "output_tokens": 9}}
    with client(headers=raw_spec(json.dumps(message), "application/json", content_length=True)) as c:
        r = c.post(f"{envoy.base}/v1/messages?t={marker}",
                   json={"model": "claude-x", "max_tokens": 9, "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 403, r.text
    audit = envoy.audit_for(marker)
    assert (audit["decision"], audit["reason"]) == ("blocked", "rule:email")
    assert audit["response"]["findings"] == {"email": 2}
    assert audit["response"]["actions"] == {"block": 1, "mask": 1}
    assert audit["response"]["detector_actions"] == {"email": {"block": 1, "mask": 1}}
    assert "detector_actions" not in audit["request"]


def test_the_record_has_its_start_time_and_duration(envoy):
    """`start_time` (RFC 3339, UTC, milliseconds) and `duration_ms` in the record itself, from the
    host clock: a stream whose two chunks come 400 ms apart lasts at least that long."""
    marker = uuid.uuid4().hex
    chunks = ["data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"one \"}}]}\n\n",
              "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"two\"}}]}\n\ndata: [DONE]\n\n"]
    with client(headers=raw_spec(chunks, "text/event-stream", delay_ms=400)) as c:
        r = c.post(f"{envoy.base}/v1/chat/completions?t={marker}", json=chat(stream=True))
    assert r.status_code == 200 and "two" in r.text
    line = envoy.log_entry(marker)
    audit = line["inferguard"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", audit["start_time"]), audit["start_time"]
    started = datetime.datetime.fromisoformat(audit["start_time"].replace("Z", "+00:00"))
    line_started = datetime.datetime.fromisoformat(line["start_time"].replace("Z", "+00:00"))
    # The filter saw the head after Envoy read the request's first byte, within the same request.
    assert datetime.timedelta(0) <= started - line_started <= datetime.timedelta(milliseconds=line["duration_ms"])
    assert abs(datetime.datetime.now(datetime.timezone.utc) - started) < datetime.timedelta(seconds=30)
    assert 400 <= audit["duration_ms"] <= line["duration_ms"] + 1000, (audit, line["duration_ms"])
    assert list(audit)[:4] == ["schema", "request_id", "start_time", "duration_ms"]


# Capture (`audit.capture`): the top level keeps 256 bytes per direction in the record; named
# policies inherit that, replace it (the capture log, 64 bytes), or give their own `response`.
CAPTURE_CONFIG = {
    "admission": {"endpoints": ["/v1/files/"]},
    "audit": {"capture": {"max_bytes": 256}},
    "policies": [
        {"name": "to-file", "match": {"paths": ["/v1/completions"]},
         "audit": {"capture": {"max_bytes": 64, "to": "capture_log"}}},
        {"name": "reported", "match": {"paths": ["/v1/responses"]}, "response": {"mode": "report"}},
        {"name": "strict", "match": {"paths": ["/v1/messages"]}, "request": {"mode": "block"},
         "response": {"mode": "block"}},
    ],
}
PROMPT = {"model": "m", "messages": [{"role": "user", "content": "I am jane.doe@acme-corp.com, café"}]}
ANSWER = json.dumps({"id": "c1", "object": "chat.completion", "model": "m",
                     "choices": [{"index": 0, "message": {"role": "assistant", "content": "Mail ops@acme-corp.com"},
                                  "finish_reason": "stop"}]})


@pytest.fixture(scope="module")
def capture_envoy(make_envoy):
    return make_envoy(json.dumps(CAPTURE_CONFIG))


def compact(obj) -> bytes:
    """A request body as this file sends it (and as the capture then holds it when nothing in it
    is redacted)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def forwarded(standin, marker):
    """The one request body that reached the upstream with `marker` in its path."""
    [rec] = standin.received(marker)
    return rec["body"]


def test_capture_keeps_the_prompt_and_answer_as_forwarded_after_redaction(capture_envoy, standin):
    marker = uuid.uuid4().hex
    with client(headers=raw_spec(ANSWER, "application/json", content_length=True)) as c:
        r = c.post(f"{capture_envoy.base}/v1/chat/completions?t={marker}", content=compact(PROMPT))
    assert r.status_code == 200, r.text
    audit = capture_envoy.audit_for(marker)
    sent = forwarded(standin, marker)
    assert audit["capture"] == {"request": sent.decode(), "response": r.content.decode()}
    assert audit["capture"]["request"] == (
        '{"model":"m","messages":[{"role":"user","content":"I am [REDACTED:EMAIL], café"}]}')
    assert json.loads(audit["capture"]["response"])["choices"][0]["message"]["content"] == "Mail [REDACTED:EMAIL]"
    line = [l for l in capture_envoy.output().splitlines() if marker in l]
    assert len(line) == 1 and "jane" not in line[0] and "ops@" not in line[0]


def test_a_captured_stream_is_its_forwarded_bytes_cut_at_max_bytes_on_a_character(capture_envoy):
    marker = uuid.uuid4().hex
    pieces = ["Write to ops@acme", "-corp.com and ", "x" + "ça va " * 40]
    events = [f'data: {{"choices":[{{"index":0,"delta":{{"content":{json.dumps(p, ensure_ascii=False)}}}}}]}}\n\n'
              for p in pieces] + ["data: [DONE]\n\n"]
    with client(headers=raw_spec(events, "text/event-stream")) as c:
        r = c.post(f"{capture_envoy.base}/v1/chat/completions?t={marker}", content=compact(chat(stream=True)))
    assert r.status_code == 200 and "[REDACTED:EMAIL]" in r.text and "ops@" not in r.text
    got = r.content
    assert len(got) > 256 and got[256] & 0xC0 == 0x80, got[250:260]  # byte 256 is inside a `ç`
    capture = capture_envoy.audit_for(marker)["capture"]
    assert capture["response"] == got[:255].decode()
    assert capture["truncated"] == ["response"]
    assert capture["request"] == compact(chat(stream=True)).decode()


def test_capture_to_the_capture_log_writes_a_line_only_for_requests_that_have_one(capture_envoy, standin):
    none, marker = str(uuid.uuid4()), str(uuid.uuid4())  # the id form the record keeps
    # Refused before anything was forwarded either way (the filter's own 426): nothing to capture.
    r = httpx.post(f"{capture_envoy.plain_filtered_base}/v1/completions?t={none}", headers={"x-request-id": none},
                   content=compact({"model": "m", "prompt": "echo:hi"}))
    assert r.status_code == 426
    with client(headers={"x-request-id": marker}) as c:
        r = c.post(f"{capture_envoy.base}/v1/completions?t={marker}",
                   content=compact({"model": "m", "prompt": "echo:Mail ops@acme-corp.com about the report, please."}))
    assert r.status_code == 200, r.text
    audit = capture_envoy.audit_for(marker)
    assert audit["policy"] == "to-file" and "capture" not in audit
    line = capture_envoy.capture_for(marker)
    assert list(line) == ["schema", "request_id", "start_time", "policy", "capture"]
    assert (line["schema"], line["request_id"], line["start_time"], line["policy"]) == (
        1, marker, audit["start_time"], "to-file")
    sent = forwarded(standin, marker)
    assert line["capture"] == {"request": sent[:64].decode(), "response": r.content[:64].decode(),
                               "truncated": ["request", "response"]}
    assert "[REDACTED:EMAIL]" in r.text
    capture_envoy.audit_for(none)
    assert [e["request_id"] for e in capture_envoy.capture_entries()].count(none) == 0
    raw = capture_envoy.capture_output()
    assert raw.endswith("\n") and "acme-corp" not in raw


PNG = b"\x89PNG\r\n\x1a\n" + bytes(i * 97 % 251 for i in range(2000))
# case: (path, the stand-in's answer, status, capture without its `request`)
WITHHELD = {
    "a reported answer": ("/v1/responses", raw_spec(ANSWER, "application/json", content_length=True), 200,
                          {"withheld": {"response": "report"}}),
    "a blocked answer": ("/v1/messages", raw_spec(ANSWER, "application/json", content_length=True), 403,
                         {"withheld": {"response": "stopped"}}),
    "a binary answer": ("/v1/files/f1/content", raw_spec(PNG, "image/png", content_length=True), 200,
                        {"withheld": {"response": "unscanned"}}),
}


@pytest.mark.parametrize("case", list(WITHHELD))
def test_a_direction_that_was_blocked_unscanned_or_reported_captures_nothing(capture_envoy, case):
    path, spec, status, want = WITHHELD[case]
    marker = uuid.uuid4().hex
    with client(headers=spec) as c:
        r = c.post(f"{capture_envoy.base}{path}?t={marker}", content=compact(chat()))
    assert r.status_code == status, r.text
    capture = capture_envoy.audit_for(marker)["capture"]
    assert capture == dict(want, request=compact(chat()).decode())


def test_a_blocked_prompt_captures_nothing(capture_envoy, standin):
    marker = uuid.uuid4().hex
    with client() as c:
        r = c.post(f"{capture_envoy.base}/v1/messages?t={marker}", content=compact(PROMPT))
    assert r.status_code == 403, r.text
    audit = capture_envoy.audit_for(marker)
    assert audit["capture"] == {"withheld": {"request": "stopped"}}
    assert standin.received(marker) == []


def test_an_unknown_capture_destination_is_refused_by_envoy(workdir, standin):
    from harness import envoy_validate
    code, out = envoy_validate(workdir, standin.address, json.dumps({"audit": {"capture": {"to": "syslog"}}}))
    assert code != 0
    assert ("audit.capture.to: unknown variant `syslog`, expected one of `access_log`, `capture_log`") in out


def test_each_connection_keeps_its_own_peer_facts_over_many_requests(envoy):
    """The filter reads a connection's TLS facts and peer once and keeps them for its requests:
    interleaved keep-alive connections (two client certificates, one without) each keep theirs."""
    conns = {name: client(cert=name if name != "none" else None, http2=(name == "batch"))
             for name in ("chat", "batch", "none")}
    seen = {name: set() for name in conns}
    try:
        for _ in range(3):
            for name, c in conns.items():
                marker = uuid.uuid4().hex
                r = c.post(f"{envoy.base}/v1/chat/completions?t={marker}",
                           json={"model": "m", "messages": [{"role": "user", "content": "hi"}]})
                assert r.status_code == 200, r.text
                a = envoy.audit_for(marker)
                seen[name].add((a["identity"]["source"], a["identity"].get("subject"), a["client_address"]))
    finally:
        for c in conns.values():
            c.close()
    # One connection each (one peer port), and each its own identity on every request.
    assert {n: len(s) for n, s in seen.items()} == {"chat": 1, "batch": 1, "none": 1}, seen
    assert [(src, sub) for src, sub, _ in seen["chat"]] == [("mtls", CLIENT_IDS["chat"])]
    assert [(src, sub) for src, sub, _ in seen["batch"]] == [("mtls", CLIENT_IDS["batch"])]
    assert [(src, sub) for src, sub, _ in seen["none"]] == [("anonymous", None)]
    assert len({peer for s in seen.values() for _, _, peer in s}) == 3
