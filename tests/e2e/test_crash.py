"""A crash inside the filter, in the real Envoy: what the client gets, what reaches the upstream,
what the access log says, and whether the next requests work.

The module under test is the `crash-test` build (`make` builds it as target/inferguard-crash-test.wasm;
never shipped): it panics on a body holding INFERGUARD-TEST-PANIC and traps on one holding
INFERGUARD-TEST-TRAP. Envoy runs one worker here, so the next request meets the VM that crashed.
With failure_policy FAIL_CLOSED that VM refuses every later request (503); with FAIL_RELOAD Envoy
starts a new one and the next request is served and redacted as usual. Either way no byte of a
body the filter had not judged goes out, and the access line says `wasm_fail_stream`."""
import json
import time
import uuid

import httpx
import pytest

from harness import CRASH_WASM, WASM, b64, client, raw_spec, wait_for

EMAIL = "jane.doe@corp.example"
TRIGGERS = ["INFERGUARD-TEST-PANIC", "INFERGUARD-TEST-TRAP"]


def completion(text: str) -> str:
    return json.dumps({"id": "c", "object": "chat.completion", "created": 1, "model": "m",
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                    "finish_reason": "stop"}]})


def sse(text: str) -> bytes:
    return b"data: " + json.dumps({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                                   "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}).encode() + b"\n\n"


def crash_envoy(make_envoy, failure_policy, hold=True):
    config = "{}" if hold else '{"hold_headers": false}'
    return make_envoy(config, wasm=CRASH_WASM, failure_policy=failure_policy, concurrency=1)


def post(e, marker, headers=None, content="hi", stream=False):
    """POSTs a chat request; returns (the status, or None if no head came; the bytes of the body
    the client received; whether the exchange broke before its end)."""
    body = {"model": "m", "messages": [{"role": "user", "content": content}], "stream": stream}
    status, got = None, b""
    with client(headers=headers or {}) as c:
        try:
            with c.stream("POST", f"{e.base}/v1/chat/completions?t={marker}", json=body) as r:
                status = r.status_code
                for piece in r.iter_raw():
                    got += piece
        except (httpx.RemoteProtocolError, httpx.ReadError):
            return status, got, True
    return status, got, False


def crash_line(e, marker):
    line = e.log_entry(marker)
    assert line["details"] == "wasm_fail_stream", line
    assert line["inferguard"] is None, line  # the record died with the VM
    assert line["bytes_sent"] == 0, line
    return line


def assert_next_request(e, standin, failure_policy):
    """What the requests after a crash get from the same worker (Envoy runs one here)."""
    if failure_policy == "FAIL_CLOSED":
        # The crashed VM refuses each, before anything reaches the upstream. The filter never
        # ran, so its access line has no path (`-`): it is the last line written.
        for _ in range(3):
            marker, lines = uuid.uuid4().hex, len(e.log_entries())
            status, got, broken = post(e, marker, content=b64(f"write to {EMAIL}"))
            assert (status, got, broken) == (503, b"", False), (status, got)
            assert standin.received(marker) == []
            wait_for(lambda: len(e.log_entries()) > lines, 5, "the refused request's access line")
            line = e.log_entries()[-1]
            assert (line["path"], line["details"], line["inferguard"], line["response_code"]) == (
                "-", "wasm_fail_stream", None, 503), line
        return
    # FAIL_RELOAD: refused until Envoy has started a new VM (a backoff of at most 1 s, render.py),
    # then served and redacted as usual.
    deadline = time.monotonic() + 5
    while True:
        marker = uuid.uuid4().hex
        status, got, broken = post(e, marker, content=b64(f"write to {EMAIL}"))
        assert not broken
        if status == 200 or time.monotonic() > deadline:
            break
        assert (status, got) == (503, b""), (status, got)
        assert standin.received(marker) == []
        time.sleep(0.1)
    assert status == 200, got
    answer = json.loads(got)["choices"][0]["message"]["content"]
    assert answer == "write to [REDACTED:EMAIL]", answer
    audit = e.audit_for(marker)
    assert (audit["decision"], audit["response"]["findings"]) == ("redacted", {"email": 1}), audit


@pytest.mark.parametrize("trigger", TRIGGERS)
def test_the_shipped_module_does_not_crash_on_a_trigger(envoy, trigger):
    marker = uuid.uuid4().hex
    status, got, broken = post(envoy, marker, raw_spec(completion(f"mail {EMAIL} {trigger}"), "application/json"))
    assert (status, broken) == (200, False)
    assert json.loads(got)["choices"][0]["message"]["content"] == f"mail [REDACTED:EMAIL] {trigger}"
    with open(WASM, "rb") as f:
        assert b"crash-test" not in f.read()
    with open(CRASH_WASM, "rb") as f:
        assert b"crash-test: INFERGUARD-TEST-PANIC in a body" in f.read()


@pytest.mark.parametrize("failure_policy", ["FAIL_CLOSED", "FAIL_RELOAD"])
@pytest.mark.parametrize("trigger", TRIGGERS)
def test_a_crash_on_a_held_answer_sends_503_and_no_byte_of_it(make_envoy, standin, failure_policy, trigger):
    e = crash_envoy(make_envoy, failure_policy)
    marker = uuid.uuid4().hex
    status, got, broken = post(e, marker, raw_spec(completion(f"mail {EMAIL} {trigger}"), "application/json"))
    # Headers were held: Envoy answers for the filter, with nothing of the upstream's answer.
    assert (status, got, broken) == (503, b"", False), (status, got)
    line = crash_line(e, marker)
    assert line["response_code"] == 503
    assert "Uncaught RuntimeError: unreachable" in e.output()
    assert_next_request(e, standin, failure_policy)


@pytest.mark.parametrize("failure_policy", ["FAIL_CLOSED", "FAIL_RELOAD"])
def test_a_crash_on_an_answer_whose_headers_went_out_resets_it_before_any_body(make_envoy, standin, failure_policy):
    # Under a WasmPlugin the head goes at once (hold_headers false): the crash can only cut the
    # stream, and it does so before any byte of the body, which the filter was still holding.
    e = crash_envoy(make_envoy, failure_policy, hold=False)
    marker = uuid.uuid4().hex
    status, got, broken = post(e, marker, raw_spec(completion(f"mail {EMAIL} INFERGUARD-TEST-PANIC"), "application/json"))
    assert (status, got, broken) == (200, b"", True), (status, got)
    line = crash_line(e, marker)
    assert line["response_code"] == 200
    assert_next_request(e, standin, failure_policy)


@pytest.mark.parametrize("failure_policy", ["FAIL_CLOSED", "FAIL_RELOAD"])
def test_a_crash_mid_stream_cuts_it_after_the_events_already_judged(make_envoy, standin, failure_policy):
    e = crash_envoy(make_envoy, failure_policy)
    marker = uuid.uuid4().hex
    chunks = [sse(f"first {EMAIL} "), sse(f"then {EMAIL} INFERGUARD-TEST-PANIC"), sse("never"), b"data: [DONE]\n\n"]
    status, got, broken = post(e, marker, raw_spec(chunks, "text/event-stream", delay_ms=200), stream=True)
    assert (status, broken) == (200, True)
    # The first event, redacted, reached the client; nothing after it did.
    text = got.decode()
    assert EMAIL not in text and "then" not in text and "never" not in text and "[DONE]" not in text, text
    events = [json.loads(ev[len("data: "):]) for ev in text.split("\n\n") if ev.startswith("data: ")]
    assert [ev["choices"][0]["delta"]["content"] for ev in events] == ["first [REDACTED:EMAIL] "], text
    line = e.log_entry(marker)
    assert (line["details"], line["inferguard"], line["response_code"]) == ("wasm_fail_stream", None, 200), line
    assert line["bytes_sent"] == len(got), line
    assert_next_request(e, standin, failure_policy)


@pytest.mark.parametrize("hold", [True, False])
def test_a_crash_on_a_prompt_never_reaches_the_upstream(make_envoy, standin, hold):
    e = crash_envoy(make_envoy, "FAIL_RELOAD", hold=hold)
    marker = uuid.uuid4().hex
    status, got, broken = post(e, marker, content=f"my mail is {EMAIL} INFERGUARD-TEST-PANIC")
    assert (status, got, broken) == (503, b"", False), (status, got)
    # No byte of the prompt reached the upstream.
    assert standin.received(marker) == []
    line = crash_line(e, marker)
    assert line["response_code"] == 503, line
    assert_next_request(e, standin, "FAIL_RELOAD")
