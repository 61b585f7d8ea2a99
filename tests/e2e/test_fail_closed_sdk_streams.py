"""Every place an official SDK takes text from in a stream is a text stream to redact: what the SDK
shows at every step is a prefix of the redacted answer, and what it assembles is exactly the
redacted answer. Each stream splits the email across events, and runs again in one-byte network
writes (the stand-in's raw mode, `raw_spec(..., split=1)`)."""
import itertools
import json
import os
import ssl
import subprocess
import sys
import uuid

import anthropic
import httpx
import httpx2
import openai
import pytest

from harness import CA, ROOT, raw_spec

sys.path.insert(0, os.path.join(ROOT, "tests", "upstream"))
import standin as upstream  # noqa: E402  (its Responses object builder)

TEXT = "Sure. Write to jane.doe@acme-corp.com and she will send the report."
REDACTED = "Sure. Write to [REDACTED:EMAIL] and she will send the report."
PIECES = ["Sure. Write to jane.", "doe@acme", "-corp.com and she", " will send the report."]
SPLITS = pytest.mark.parametrize("split", [0, 1], ids=["events", "one-byte-writes"])


@pytest.fixture(scope="module")
def oai(envoy):
    return openai.OpenAI(base_url=f"{envoy.base}/v1", api_key="sk-test", max_retries=0,
                         http_client=httpx.Client(verify=ssl.create_default_context(cafile=CA), timeout=30))


@pytest.fixture(scope="module")
def claude(envoy):
    return anthropic.Anthropic(base_url=envoy.base, api_key="sk-ant-test", max_retries=0,
                               http_client=httpx2.Client(verify=ssl.create_default_context(cafile=CA), timeout=30))


def sse(obj, event=None):
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + (obj if isinstance(obj, bytes) else json.dumps(obj).encode()) + b"\n\n"


def spec(events, split, content_type="text/event-stream"):
    return raw_spec(b"".join(events), content_type, split=split) if split else raw_spec(events, content_type)


def assert_grows_into(shown, expected):
    """Each state the client showed is a prefix of `expected`, and the last one is all of it."""
    for s in shown:
        assert expected.startswith(s), (s, expected)
    assert shown and shown[-1] == expected, shown


def assert_redacted(envoy, marker, findings=None):
    audit = envoy.audit_for(marker)
    assert audit["decision"] == "redacted", audit
    assert audit["response"]["scanned"] is True
    assert audit["response"]["findings"] == (findings or {"email": 1}), audit


# --- Anthropic -------------------------------------------------------------------------------
def anthropic_events(first_block, deltas, delta_type, field, extra_deltas=()):
    msg = {"id": "msg_raw", "type": "message", "role": "assistant", "model": "claude-raw", "content": [],
           "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 5, "output_tokens": 1}}
    return ([sse({"type": "message_start", "message": msg}, "message_start"),
             sse({"type": "content_block_start", "index": 0, "content_block": first_block}, "content_block_start"),
             sse({"type": "ping"}, "ping")]
            + [sse({"type": "content_block_delta", "index": 0, "delta": {"type": delta_type, field: d}},
                   "content_block_delta") for d in deltas]
            + [sse({"type": "content_block_delta", "index": 0, "delta": d}, "content_block_delta")
               for d in extra_deltas]
            + [sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
               sse({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": 9}}, "message_delta"),
               sse({"type": "message_stop"}, "message_stop")])


def text_block(where):
    """An Anthropic text whose start is in `content_block_start.content_block.text` or, as the SDK
    also accepts, in `message_start.message.content[0].text`, and continues in `text_delta`s."""
    start, deltas = "Sure. Write to jane.do", ["e@acme-corp.com and she", " will send the report."]
    events = anthropic_events({"type": "text", "text": start}, deltas, "text_delta", "text")
    if where == "message_start":
        first = json.loads(events[0].split(b"data: ", 1)[1])
        first["message"]["content"] = [{"type": "text", "text": start}]
        events = [sse(first, "message_start")] + events[2:]  # no content_block_start
    return events


@SPLITS
@pytest.mark.parametrize("where", ["content_block_start", "message_start"])
def test_anthropic_text_that_begins_before_the_deltas(envoy, claude, where, split):
    events = text_block(where)
    marker = uuid.uuid4().hex
    shown = []
    with claude.messages.stream(model="claude-raw", max_tokens=100, messages=[{"role": "user", "content": "hi"}],
                                extra_headers=spec(events, split), extra_query={"t": marker}) as s:
        for ev in s:
            if ev.type == "message_start" and ev.message.content:
                shown.append(ev.message.content[0].text)
            elif ev.type == "content_block_start":
                shown.append(ev.content_block.text)
            elif ev.type == "text":
                shown.append(ev.snapshot)
        final = s.get_final_message()
    assert_grows_into(shown, REDACTED)
    assert final.content[0].text == REDACTED
    assert_redacted(envoy, marker)

    # What `text_stream` yields (the deltas alone) ends the redacted text and carries no part of it.
    with claude.messages.stream(model="claude-raw", max_tokens=100, messages=[{"role": "user", "content": "hi"}],
                                extra_headers=spec(events, split)) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert REDACTED.endswith(text) and "jane" not in text and "acme" not in text
    assert final.content[0].text == REDACTED


@SPLITS
def test_anthropic_thinking_that_begins_in_content_block_start(envoy, claude, split):
    events = anthropic_events({"type": "thinking", "thinking": "Let me mail jane.do", "signature": ""},
                              ["e@acme-corp.com", " first."], "thinking_delta", "thinking",
                              extra_deltas=[{"type": "signature_delta", "signature": "EqQBCkgIARABGAIiQ"}])
    marker = uuid.uuid4().hex
    shown = []
    with claude.messages.stream(model="claude-raw", max_tokens=100, messages=[{"role": "user", "content": "hi"}],
                                extra_headers=spec(events, split), extra_query={"t": marker}) as s:
        for ev in s:
            if ev.type == "content_block_start":
                shown.append(ev.content_block.thinking)
            elif ev.type == "thinking":
                shown.append(ev.snapshot)
        final = s.get_final_message()
    assert_grows_into(shown, "Let me mail [REDACTED:EMAIL] first.")
    assert final.content[0].thinking == "Let me mail [REDACTED:EMAIL] first."
    assert final.content[0].signature == "EqQBCkgIARABGAIiQ"  # opaque: passed as it came
    assert_redacted(envoy, marker)


# --- OpenAI chat: every delta field the SDK exposes -------------------------------------------
def chat_chunk(delta, finish=None):
    return {"id": "chatcmpl-raw", "object": "chat.completion.chunk", "created": 1700000000, "model": "m",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}


ARGS = '{"to": "jane.doe@acme-corp.com", "body": "hi"}'
ARGS_PIECES = ['{"to": "jane.', 'doe@acme', '-corp.com", "body": "hi"}']
DELTA_FIELDS = {
    # name: (first delta, the delta carrying a piece, pieces, expected text, its text in a delta dict)
    "audio.transcript": ({"role": "assistant"}, lambda p: {"audio": {"id": "audio_1", "transcript": p}},
                         PIECES, REDACTED, lambda d: (d.get("audio") or {}).get("transcript")),
    "function_call.arguments": ({"role": "assistant", "content": None,
                                 "function_call": {"name": "send_mail", "arguments": ""}},
                                lambda p: {"function_call": {"arguments": p}}, ARGS_PIECES,
                                '{"to": "[REDACTED:EMAIL]", "body": "hi"}',
                                lambda d: (d.get("function_call") or {}).get("arguments")),
    "reasoning": ({"role": "assistant"}, lambda p: {"reasoning": p}, PIECES, REDACTED, lambda d: d.get("reasoning")),
    "reasoning_content": ({"role": "assistant"}, lambda p: {"reasoning_content": p}, PIECES, REDACTED,
                          lambda d: d.get("reasoning_content")),
    "thinking": ({"role": "assistant"}, lambda p: {"thinking": p}, PIECES, REDACTED, lambda d: d.get("thinking")),
}


@SPLITS
@pytest.mark.parametrize("field", list(DELTA_FIELDS))
def test_openai_chat_delta_fields_beyond_content(envoy, oai, field, split):
    first, delta, pieces, expected, read = DELTA_FIELDS[field]
    events = ([sse(chat_chunk(first))] + [sse(chat_chunk(delta(p))) for p in pieces]
              + [sse(chat_chunk({}, "stop")), b"data: [DONE]\n\n"])
    marker = uuid.uuid4().hex
    text, shown = "", []
    for c in oai.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}], stream=True,
                                         extra_headers=spec(events, split), extra_query={"t": marker}):
        if c.choices:
            text += read(c.choices[0].delta.to_dict()) or ""
            shown.append(text)
    assert_grows_into(shown, expected)
    assert_redacted(envoy, marker)
    # The SDK's own accumulator (`chat.completions.stream()`) merges every delta key the same way.
    with oai.chat.completions.stream(model="m", messages=[{"role": "user", "content": "hi"}],
                                     extra_headers=spec(events, split)) as s:
        final = s.get_final_completion()
    assert read(final.choices[0].message.to_dict()) == expected


DUPLICATES = {
    # Python's json (the SDKs') keeps the last of duplicate keys: the value is in the last ones.
    "last-holds-the-value": ([b'{"content":"Hello","content":"Sure. Write to jane.doe@acme-corp.com and she"}'],
                             " will send the report."),
    # Read together, every duplicate makes "Hello Sure. Write to jane. - doe@acme-corp.com ...":
    # only the last ones make the email.
    "split-over-last-duplicates": ([b'{"content":"Hello ","content":"Sure. Write to jane."}',
                                    b'{"content":" - ","content":"doe@acme-corp.com and she"}'],
                                   " will send the report."),
}


@SPLITS
@pytest.mark.parametrize("case", list(DUPLICATES))
def test_duplicate_keys_are_read_as_the_sdk_reads_them(envoy, oai, case, split):
    deltas, last = DUPLICATES[case]
    head = (b'{"id":"chatcmpl-raw","object":"chat.completion.chunk","created":1700000000,"model":"m",'
            b'"choices":[{"index":0,"delta":')
    events = ([sse(chat_chunk({"role": "assistant", "content": ""}))]
              + [sse(head + d + b',"logprobs":null,"finish_reason":null}]}') for d in deltas]
              + [sse(chat_chunk({"content": last})), sse(chat_chunk({}, "stop")), b"data: [DONE]\n\n"])
    assert "".join(json.loads(e[len(b"data: "):])["choices"][0]["delta"].get("content", "")
                   for e in events[:-1]) == TEXT  # what the SDK would show unfiltered
    marker = uuid.uuid4().hex
    text, shown = "", []
    for c in oai.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}], stream=True,
                                         extra_headers=spec(events, split), extra_query={"t": marker}):
        if c.choices:
            text += c.choices[0].delta.content or ""
            shown.append(text)
    assert_grows_into(shown, REDACTED)
    assert_redacted(envoy, marker)
    # A reader that keeps the first of duplicate keys sees no part of the value either.
    with httpx.Client(verify=ssl.create_default_context(cafile=CA), timeout=30) as c:
        raw = c.post(f"{envoy.base}/v1/chat/completions", headers=spec(events, split),
                     json={"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}).content
    assert b"jane" not in raw and b"acme" not in raw, raw


# --- OpenAI Responses ------------------------------------------------------------------------
def responses_events(start, deltas, full, where="content_part.added"):
    seq = itertools.count()

    def ev(name, **fields):
        return sse({"type": name, "sequence_number": next(seq), **fields}, name)

    req = {"model": "m"}
    item = {"id": "msg_standin", "type": "message", "status": "in_progress", "role": "assistant", "content": []}
    part = {"type": "output_text", "text": start, "annotations": [], "logprobs": []}
    done = dict(part, text=full)
    at = {"item_id": "msg_standin", "output_index": 0, "content_index": 0}
    first = [ev("response.created", response=upstream.response_obj(req, "", "in_progress"))]
    if where == "content_part.added":
        first += [ev("response.output_item.added", output_index=0, item=item),
                  ev("response.content_part.added", part=part, **at)]
    else:  # the SDK also takes the start of the text from the item's own content
        first += [ev("response.output_item.added", output_index=0, item=dict(item, content=[part]))]
    return (first + [ev("response.output_text.delta", delta=d, logprobs=[], **at) for d in deltas]
            + [ev("response.output_text.done", text=full, logprobs=[], **at),
               ev("response.content_part.done", part=done, **at),
               ev("response.output_item.done", output_index=0, item=dict(item, status="completed", content=[done])),
               ev("response.completed", response=upstream.response_obj(req, full, "completed"))])


@SPLITS
@pytest.mark.parametrize("where", ["content_part.added", "output_item.added"])
def test_openai_responses_text_that_begins_before_the_deltas(envoy, oai, where, split):
    events = responses_events("Sure. Write to jane.do", ["e@acme-corp.com and she", " will send the report."], TEXT,
                              where)
    marker = uuid.uuid4().hex
    shown, done = [], []
    with oai.responses.stream(model="m", input="hi", extra_headers=spec(events, split),
                              extra_query={"t": marker}) as stream:
        for ev in stream:
            if ev.type == "response.content_part.added":
                shown.append(ev.part.text)
            elif ev.type == "response.output_item.added" and ev.item.content:
                shown.append(ev.item.content[0].text)
            elif ev.type == "response.output_text.delta":
                shown.append(ev.snapshot)
            elif ev.type == "response.output_text.done":
                done.append(ev.text)
        final = stream.get_final_response()
    assert_grows_into(shown, REDACTED)
    assert done == [REDACTED]
    assert final.output_text == REDACTED
    assert envoy.audit_for(marker)["decision"] == "redacted"


# --- Ollama ----------------------------------------------------------------------------------
@SPLITS
def test_ollama_lines_without_done(envoy, split):
    """A stream that ends without a `"done": true` line still releases all its text, redacted."""
    lines = [json.dumps({"model": "llama3", "created_at": "2024-01-01T00:00:00Z",
                         "message": {"role": "assistant", "content": p}}).encode() + b"\n" for p in PIECES]
    marker = uuid.uuid4().hex
    args = ["curl", "-sS", "-N", "--cacert", CA, f"{envoy.base}/api/chat?t={marker}",
            "-H", "content-type: application/json",
            "-d", json.dumps({"model": "llama3", "messages": [{"role": "user", "content": "hi"}]})]
    for k, v in spec(lines, split, "application/x-ndjson").items():
        args += ["-H", f"{k}: {v}"]
    r = subprocess.run(args, capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert b"jane" not in r.stdout and b"acme" not in r.stdout
    got = [json.loads(line) for line in r.stdout.splitlines()]
    assert all("done" not in g or g["done"] is False for g in got[:-1])
    shown = list(itertools.accumulate(g["message"]["content"] for g in got))
    assert_grows_into(shown, REDACTED)
    assert_redacted(envoy, marker)
