"""Fail closed on prompts and on what surrounds them: every way a request can carry a value (a
body on GET or DELETE, HTTP/2 with trailers, a BOM, multipart, the query string, the path, the
model name) is redacted before the upstream sees it, proved by the stand-in's own record of what
it received (`standin.received(marker)`, fetched directly, not through Envoy); the policy modes
(report, block) in both directions; and Envoy's log never holds a value."""
import json
import os
import random
import socket
import ssl
import struct
import subprocess
import sys
import urllib.parse
import uuid

import h2.connection
import h2.events
import httpx
import openai
import pytest

from harness import scan_part, CA, ROOT, b64

sys.path.insert(0, os.path.join(ROOT, "tests", "upstream"))
import standin as upstream  # noqa: E402  (its multipart reader and canned answers)

EMAIL = "jane.doe@acme-corp.com"
TEXT = "Sure. Write to jane.doe@acme-corp.com and she will send the report."
REDACTED = "Sure. Write to [REDACTED:EMAIL] and she will send the report."


def tls():
    return httpx.Client(verify=ssl.create_default_context(cafile=CA), timeout=30)


@pytest.fixture(scope="module")
def oai(envoy):
    return openai.OpenAI(base_url=f"{envoy.base}/v1", api_key="sk-test", http_client=tls(), max_retries=0)


def curl(url, *args, data=None):
    """(status, headers, body bytes) of a curl request over HTTP/1.1; `data` (bytes) is the body."""
    if data is not None:
        args += ("--data-binary", "@-")
    r = subprocess.run(["curl", "-sS", "--http1.1", "--cacert", CA, "-D", "-", url, *args], input=data,
                       capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    head, _, body = r.stdout.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return int(lines[0].split()[1]), headers, body


def one_received(standin_, marker):
    """The single request the upstream received carrying `marker`."""
    got = standin_.received(marker)
    assert len(got) == 1, got
    return got[0]


def header(record, name):
    return next((v for k, v in record["headers"] if k.lower() == name), None)


def assert_length_matches(record):
    """What reached the upstream is framed right: its content-length, if any, is its body's."""
    n = header(record, "content-length")
    assert n is None or int(n) == len(record["body"]), (n, len(record["body"]))


def chat(content, model="m", **extra):
    return {"model": model, "messages": [{"role": "user", "content": content}], **extra}


PROMPT_AUDIT = {"scanned": True, "findings": {"email": 1}, "actions": {"mask": 1}}


# --- 4. Modes --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def report_envoy(make_envoy):
    return make_envoy(json.dumps({"request": {"mode": "report"}, "response": {"mode": "report"}}))


@pytest.fixture(scope="module")
def block_envoy(make_envoy):
    return make_envoy(json.dumps({"request": {"mode": "block"}, "response": {"mode": "block"}}))


@pytest.mark.parametrize("stream", [False, True], ids=["buffered", "stream"])
def test_report_mode_changes_no_answer_and_counts_what_it_saw(report_envoy, standin, stream):
    """A dry run: the client gets exactly the upstream's bytes (fetched again straight from the
    stand-in to compare), and the audit counts what the policy would have done."""
    marker = uuid.uuid4().hex
    body = chat(b64(TEXT), stream=stream)
    with tls() as c:
        via = c.post(f"{report_envoy.base}/v1/chat/completions?t={marker}", json=body)
    with standin.client(timeout=30) as c:
        direct = c.post(f"{standin.base}/v1/chat/completions", json=body)
    assert via.status_code == direct.status_code == 200
    assert via.content == direct.content
    if not stream:
        # A stream spells the address across events.
        assert EMAIL.encode() in via.content
    if not stream:
        assert via.headers["content-length"] == str(len(via.content))
    audit = report_envoy.audit_for(marker)
    assert audit["decision"] == "allowed"
    assert scan_part(audit["request"]) == {"scanned": True}
    assert scan_part(audit["response"]) == {"scanned": True, "findings": {"email": 1}, "actions": {"report": 1}}


def test_report_mode_forwards_a_prompt_unchanged(report_envoy, standin):
    marker = uuid.uuid4().hex
    sent = json.dumps(chat(f"echo:Ask {EMAIL} about it {marker}")).encode()
    status, _, body = curl(f"{report_envoy.base}/v1/chat/completions?t={marker}",
                           "-H", "content-type: application/json", data=sent)
    assert status == 200
    assert one_received(standin, marker)["body"] == sent
    audit = report_envoy.audit_for(marker)
    assert audit["decision"] == "allowed"
    assert scan_part(audit["request"]) == {"scanned": True, "findings": {"email": 1}, "actions": {"report": 1}}


def test_block_mode_ends_a_stream_with_an_error_and_refuses_a_buffered_answer(block_envoy):
    client = openai.OpenAI(base_url=f"{block_envoy.base}/v1", api_key="sk", http_client=tls(), max_retries=0)
    marker = uuid.uuid4().hex
    got = ""
    with pytest.raises(openai.APIError) as err:
        for c in client.chat.completions.create(model="m", stream=True, extra_query={"t": marker},
                                                messages=[{"role": "user", "content": b64(TEXT)}]):
            got += (c.choices[0].delta.content or "") if c.choices else ""
    assert err.value.body["code"] == "content_blocked"
    assert "Sure. Write to ".startswith(got)
    audit = block_envoy.audit_for(marker)
    assert audit["decision"] == "blocked" and audit["reason"] == "rule:email"

    marker = uuid.uuid4().hex
    with pytest.raises(openai.PermissionDeniedError) as err:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": b64(TEXT)}],
                                       extra_query={"t": marker})
    assert err.value.status_code == 403
    assert err.value.body["code"] == "content_blocked"
    assert EMAIL not in json.dumps(err.value.body)
    audit = block_envoy.audit_for(marker)
    assert audit["decision"] == "blocked" and audit["reason"] == "rule:email"


def test_block_mode_refuses_a_prompt_before_the_upstream_sees_it(block_envoy, standin):
    marker = uuid.uuid4().hex
    status, headers, body = curl(f"{block_envoy.base}/v1/chat/completions?t={marker}",
                                 "-H", "content-type: application/json",
                                 "--data-binary", json.dumps(chat(f"echo:Ask {EMAIL} {marker}")))
    assert status == 403
    assert json.loads(body)["error"]["code"] == "content_blocked"
    assert headers["content-length"] == str(len(body))
    assert standin.received(marker) == []
    audit = block_envoy.audit_for(marker)
    assert audit["decision"] == "blocked" and audit["reason"] == "rule:email"
    assert audit["request"]["findings"] == {"email": 1}


# --- 5. Request paths ------------------------------------------------------------------------
def h2_post(envoy, path, body_parts, trailers):
    """POST over HTTP/2 (TLS, ALPN h2): HEADERS without a content-length, one DATA frame per part,
    then trailing HEADERS that end the stream. Returns (status, body)."""
    ctx = ssl.create_default_context(cafile=CA)
    ctx.set_alpn_protocols(["h2"])
    with socket.create_connection(("127.0.0.1", envoy.https_port), timeout=30) as raw_sock, \
            ctx.wrap_socket(raw_sock, server_hostname="localhost") as sock:
        assert sock.selected_alpn_protocol() == "h2"
        conn = h2.connection.H2Connection()
        conn.initiate_connection()
        sid = conn.get_next_available_stream_id()
        conn.send_headers(sid, [(":method", "POST"), (":path", path), (":scheme", "https"),
                                (":authority", f"localhost:{envoy.https_port}"), ("content-type", "application/json")])
        for part in body_parts:
            conn.send_data(sid, part)
        conn.send_headers(sid, trailers, end_stream=True)
        sock.sendall(conn.data_to_send())
        status, body, done = None, b"", False
        while not done:
            data = sock.recv(65536)
            assert data, "connection closed before the response ended"
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.ResponseReceived):
                    status = int(dict(ev.headers)[b":status"])
                elif isinstance(ev, h2.events.DataReceived):
                    body += ev.data
                    conn.acknowledge_received_data(ev.flow_controlled_length, sid)
                elif isinstance(ev, h2.events.StreamReset):
                    raise AssertionError(f"stream reset: {ev.error_code}")
                elif isinstance(ev, h2.events.StreamEnded):
                    done = True
            sock.sendall(conn.data_to_send())
        return status, body


def test_an_http2_prompt_with_trailers_is_redacted(envoy, standin):
    marker = uuid.uuid4().hex
    sent = json.dumps(chat(f"echo:my address is {EMAIL}")).encode()
    cut = sent.index(b"@")  # the email is split over two DATA frames
    status, body = h2_post(envoy, f"/v1/chat/completions?t={marker}", [sent[:cut], sent[cut:]],
                           [("x-checksum", "sha256=abc")])
    assert status == 200
    assert json.loads(body)["choices"][0]["message"]["content"] == "my address is [REDACTED:EMAIL]"
    rec = one_received(standin, marker)
    assert json.loads(rec["body"]) == chat("echo:my address is [REDACTED:EMAIL]")
    assert_length_matches(rec)
    audit = envoy.audit_for(marker)
    assert audit["decision"] == "redacted"
    assert scan_part(audit["request"]) == PROMPT_AUDIT


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_a_json_body_on_get_or_delete_is_redacted(envoy, standin, method):
    marker = uuid.uuid4().hex
    sent = json.dumps(chat(f"echo:my address is {EMAIL}"))
    status, _, body = curl(f"{envoy.base}/v1/chat/completions?t={marker}", "-X", method,
                           "-H", "content-type: application/json", "--data-binary", sent)
    assert status == 200
    assert json.loads(body)["choices"][0]["message"]["content"] == "my address is [REDACTED:EMAIL]"
    rec = one_received(standin, marker)
    assert rec["method"] == method
    assert json.loads(rec["body"]) == chat("echo:my address is [REDACTED:EMAIL]")
    assert_length_matches(rec)
    audit = envoy.audit_for(marker)
    assert audit["decision"] == "redacted"
    assert scan_part(audit["request"]) == PROMPT_AUDIT


@pytest.mark.parametrize("lead", [b"\xef\xbb\xbf", b" \r\n\t\n  "], ids=["utf8-bom", "whitespace"])
def test_a_json_prompt_after_a_bom_or_whitespace_is_read_as_json(envoy, standin, lead):
    """The email is written `jane.doe\\u0040acme-corp.com`: only a JSON reading finds it, so a
    prompt that does not start with `{` must still be read as JSON, not scanned as raw text."""
    marker = uuid.uuid4().hex
    sent = lead + (b'{"model":"m","messages":[{"role":"user",'
                   b'"content":"echo:my address is jane.doe\\u0040acme-corp.com"}]}')
    status, _, body = curl(f"{envoy.base}/v1/chat/completions?t={marker}",
                           "-H", "content-type: application/json", data=sent)
    assert status == 200
    assert json.loads(body)["choices"][0]["message"]["content"] == "my address is [REDACTED:EMAIL]"
    rec = one_received(standin, marker)
    assert b"jane.doe" not in rec["body"]
    assert json.loads(rec["body"]) == chat("echo:my address is [REDACTED:EMAIL]")
    assert_length_matches(rec)
    audit = envoy.audit_for(marker)
    assert audit["decision"] == "redacted"
    assert scan_part(audit["request"]) == PROMPT_AUDIT


def wav(n=4000, seed=11) -> bytes:
    """A real WAV file: RIFF header, 16-bit mono PCM of random (seeded) samples."""
    pcm = random.Random(seed).randbytes(n)
    fmt = struct.pack("<HHIIHH", 1, 1, 16000, 32000, 2, 16)
    return (b"RIFF" + struct.pack("<I", 36 + len(pcm)) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt
            + b"data" + struct.pack("<I", len(pcm)) + pcm)


def test_multipart_text_parts_are_redacted_and_file_parts_pass_byte_identical(envoy, standin):
    marker = uuid.uuid4().hex
    audio = wav()
    boundary = "----inferguard" + marker
    parts = [(f'Content-Disposition: form-data; name="model"\r\n\r\n', b"whisper-1"),
             (f'Content-Disposition: form-data; name="prompt"\r\n\r\n', f"Names: {EMAIL}".encode()),
             (f'Content-Disposition: form-data; name="file"; filename="a.wav"\r\nContent-Type: audio/wav\r\n\r\n',
              audio)]
    sent = b"".join(f"--{boundary}\r\n".encode() + h.encode() + v + b"\r\n" for h, v in parts)
    sent += f"--{boundary}--\r\n".encode()
    status, headers, body = curl(f"{envoy.base}/v1/audio/transcriptions?t={marker}",
                                 "-H", f"content-type: multipart/form-data; boundary={boundary}", data=sent)
    assert status == 200
    assert json.loads(body) == {"text": REDACTED}
    assert headers["content-length"] == str(len(body))
    rec = one_received(standin, marker)
    fields = upstream.multipart_fields(header(rec, "content-type"), rec["body"])
    assert fields == {"model": b"whisper-1", "prompt": b"Names: [REDACTED:EMAIL]", "file": audio}
    assert_length_matches(rec)
    audit = envoy.audit_for(marker)
    assert audit["decision"] == "redacted"
    # The audio went out unscanned: the request was not scanned whole.
    assert scan_part(audit["request"]) == {"scanned": False, "unscanned_reason": "binary", "findings": {"email": 1},
                                "actions": {"mask": 1}, "passed": {"binary_parts": 1}}
    assert scan_part(audit["response"]) == PROMPT_AUDIT


def test_openai_sdk_transcription_comes_back_redacted(envoy, oai):
    marker = uuid.uuid4().hex
    r = oai.audio.transcriptions.create(model="whisper-1", file=("a.wav", wav(), "audio/wav"), prompt=b64(TEXT),
                                        extra_query={"t": marker})
    assert r.text == REDACTED
    audit = envoy.audit_for(marker)
    assert audit["decision"] == "redacted"
    assert scan_part(audit["request"]) == {"scanned": False, "unscanned_reason": "binary", "passed": {"binary_parts": 1}}
    assert scan_part(audit["response"]) == PROMPT_AUDIT


# --- 8. The request line, the model name, and Envoy's log -------------------------------------
def assert_log_is_clean(envoy):
    out = envoy.output()
    assert "jane.doe" not in out, [line for line in out.splitlines() if "jane.doe" in line]


def test_an_email_in_the_query_string_is_redacted_before_the_upstream_and_the_log(envoy, standin):
    marker = uuid.uuid4().hex
    status, _, body = curl(f"{envoy.base}/v1/models?email=jane.doe%40acme-corp.com&t={marker}")
    assert status == 200
    assert json.loads(body) == json.loads(upstream.MODELS)
    rec = one_received(standin, marker)
    path, _, query = rec["path"].partition("?")
    assert path == "/v1/models"
    assert urllib.parse.parse_qs(query) == {"email": ["[REDACTED:EMAIL]"], "t": [marker]}
    assert "jane" not in urllib.parse.unquote(rec["path"])
    audit = envoy.audit_for(marker)
    assert audit["decision"] == "redacted"
    assert scan_part(audit["request"]) == PROMPT_AUDIT
    assert_log_is_clean(envoy)


def test_an_email_in_a_path_segment_is_redacted_before_the_upstream_and_the_log(files_envoy, standin):
    """The files API is not an inference API: an Envoy whose policy admits `/v1/files/`."""
    envoy = files_envoy
    marker = uuid.uuid4().hex
    status, _, body = curl(f"{envoy.base}/v1/files/{EMAIL}/content?t={marker}")
    assert status == 404  # the stand-in's own answer for a path it does not serve
    rec = one_received(standin, marker)
    assert urllib.parse.unquote(rec["path"]) == f"/v1/files/[REDACTED:EMAIL]/content?t={marker}"
    audit = envoy.audit_for(marker)
    assert audit["decision"] == "redacted"
    assert scan_part(audit["request"]) == PROMPT_AUDIT
    assert_log_is_clean(envoy)


def test_a_model_name_holding_a_value_is_redacted_in_the_prompt_and_the_audit(envoy, standin):
    marker = uuid.uuid4().hex
    status, _, body = curl(f"{envoy.base}/v1/chat/completions?t={marker}", "-H", "content-type: application/json",
                           "--data-binary", json.dumps(chat("echo:hello", model=EMAIL)))
    assert status == 200
    assert json.loads(body)["model"] == "[REDACTED:EMAIL]"
    rec = one_received(standin, marker)
    assert json.loads(rec["body"]) == chat("echo:hello", model="[REDACTED:EMAIL]")
    audit = envoy.audit_for(marker)
    assert audit["model"] == "[REDACTED:EMAIL]"
    assert audit["decision"] == "redacted"
    assert scan_part(audit["request"]) == PROMPT_AUDIT
    assert_log_is_clean(envoy)
