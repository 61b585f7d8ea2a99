"""Disguised spellings inside a value (issue 10, class 9): every one reaches the official SDK
redacted, in a buffered answer and split across the events of a stream. The stand-in's raw mode
sends each answer byte for byte as written here."""
import json
import ssl
import uuid

import httpx
import openai
import pytest

from harness import CA, raw_spec

# (name, text a model might write, the detector that must find it)
SPELLINGS = [
    ("arabic-indic digits", "card ٤١١١ ١١١١ ١١١١ ١١١١ ok", "CREDIT_CARD"),
    ("devanagari digits", "card ४१११ ११११ ११११ ११११ ok", "CREDIT_CARD"),
    ("mathematical bold digits", "card 𝟒𝟏𝟏𝟏 𝟏𝟏𝟏𝟏 𝟏𝟏𝟏𝟏 𝟏𝟏𝟏𝟏 ok", "CREDIT_CARD"),
    ("dotted card groups", "card 4111.1111.1111.1111 ok", "CREDIT_CARD"),
    ("bidi marks", "mail jane\u200e.doe@\u2066acme-corp\u2069.com ok", "EMAIL"),
    ("variation selector and tag", "mail jane\ufe0f.doe@acme\U000e0041-corp.com ok", "EMAIL"),
    ("small commercial at", "mail jane.doe\ufe6bacme-corp.com ok", "EMAIL"),
    ("fullwidth at and ideographic stop", "mail jane.doe＠acme-corp。com ok", "EMAIL"),
    ("percent-encoded at", "mail jane.doe%40acme-corp.com ok", "EMAIL"),
    ("html entity", "mail jane.doe&#64;acme-corp.com ok", "EMAIL"),
    ("named html entity", "mail jane.doe&commat;acme-corp&period;com ok", "EMAIL"),
]
# What must not survive, whatever the spelling: the local part and the card's middle groups.
LEAKS = ("jane", "1111", "१११", "١١١", "𝟏𝟏𝟏")


@pytest.fixture(scope="module")
def oai(envoy):
    return openai.OpenAI(base_url=f"{envoy.base}/v1", api_key="sk-test", max_retries=0,
                         http_client=httpx.Client(verify=ssl.create_default_context(cafile=CA), timeout=30))


def completion(text):
    return json.dumps({"id": "c", "object": "chat.completion", "created": 1, "model": "m",
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                    "finish_reason": "stop"}]}).encode()


def chunks(text):
    """The text one character per event (so every disguise is cut), as a chat stream."""
    def ev(delta, finish=None):
        return ("data: " + json.dumps({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                                       "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
                + "\n\n").encode()
    return [ev({"role": "assistant", "content": ""})] + [ev({"content": c}) for c in text] + \
        [ev({}, "stop"), b"data: [DONE]\n\n"]


@pytest.mark.parametrize("name, text, kind", SPELLINGS, ids=[s[0] for s in SPELLINGS])
def test_a_disguised_value_is_redacted_buffered_and_streamed(envoy, oai, name, text, kind):
    marker = uuid.uuid4().hex
    r = oai.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}],
                                    extra_headers=raw_spec(completion(text), "application/json"),
                                    extra_query={"t": marker})
    got = r.choices[0].message.content
    assert f"[REDACTED:{kind}]" in got and got.endswith(" ok"), got
    assert not any(leak in got for leak in LEAKS), got
    assert envoy.audit_for(marker)["decision"] == "redacted"

    marker = uuid.uuid4().hex
    stream = oai.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}], stream=True,
                                         extra_headers=raw_spec(chunks(text), "text/event-stream"),
                                         extra_query={"t": marker})
    got = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert f"[REDACTED:{kind}]" in got and got.endswith(" ok"), got
    assert not any(leak in got for leak in LEAKS), got
    assert envoy.audit_for(marker)["decision"] == "redacted"
