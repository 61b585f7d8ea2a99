"""The filter in a real Envoy: TLS on the inference port, 426 on plaintext, the first redaction
slice (emails in a chat completion), the audit record in the access log, config errors."""
import json
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import openai
import pytest

from harness import scan_part, CA, ROOT, Envoy, b64, envoy_validate, free_port, wait_for

ANSWER = "Sure: write to jane.doe@acme-corp.com, or to ops+oncall@mail.example.org."
REDACTED = "Sure: write to [REDACTED:EMAIL], or to [REDACTED:EMAIL]."


def curl(*args):
    r = subprocess.run(["curl", "-sS", "--cacert", CA, "-D", "-", *args], capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    head, _, body = r.stdout.decode().partition("\r\n\r\n")
    while head.startswith("HTTP/1.1 100"):
        head, _, body = body.partition("\r\n\r\n")
    lines = head.split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers, body


def chat(text, model="standin-1", **extra):
    return json.dumps({"model": model, "messages": [{"role": "user", "content": text}], **extra})


def expected_completion(content, model="standin-1"):
    """The stand-in's exact bytes for a non-streaming completion (json.dumps default spacing)."""
    n = len(content.split())
    return json.dumps({
        "id": "chatcmpl-standin", "object": "chat.completion", "created": 1700000000, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content, "refusal": None},
                     "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": n, "total_tokens": 5 + n},
    })


@pytest.mark.parametrize("http", ["--http1.1", "--http2"])
def test_emails_in_a_chat_completion_are_redacted_with_a_correct_content_length(envoy, http):
    marker = uuid.uuid4().hex
    status, headers, body = curl(http, f"{envoy.base}/v1/chat/completions?t={marker}",
                                 "-H", "content-type: application/json", "-d", chat(b64(ANSWER)))
    assert status == 200
    # The upstream's words count is of the original text; only the content changes.
    expected = expected_completion(ANSWER).replace(json.dumps(ANSWER), json.dumps(REDACTED))
    assert body == expected
    assert headers["content-length"] == str(len(body.encode()))
    assert headers["content-type"] == "application/json"
    assert "jane.doe" not in body and "oncall" not in body

    audit = envoy.audit_for(marker)
    assert audit["decision"] == "redacted"
    assert audit["api"] == "openai.chat_completions"
    assert audit["model"] == "standin-1"
    assert audit["stream"] is False
    assert scan_part(audit["response"]) == {"scanned": True, "findings": {"email": 2}, "actions": {"mask": 2}}
    # What Envoy sent: the status, and the body bytes after redaction.
    assert (audit["response"]["status"], audit["response"]["bytes"]) == (200, len(body.encode()))
    assert scan_part(audit["request"]) == {"scanned": True}
    assert "jane" not in json.dumps(audit)


def test_clean_completion_passes_byte_for_byte_and_is_audited_as_allowed(envoy):
    marker = uuid.uuid4().hex
    status, headers, body = curl(f"{envoy.base}/v1/chat/completions?t={marker}",
                                 "-H", "content-type: application/json", "-d", chat("echo:Nothing to see here."))
    assert status == 200
    assert body == expected_completion("Nothing to see here.")
    assert headers["content-length"] == str(len(body))
    assert envoy.audit_for(marker)["decision"] == "allowed"


def test_emails_in_the_prompt_are_redacted_before_the_upstream_sees_them(envoy):
    marker = uuid.uuid4().hex
    status, _, body = curl(f"{envoy.base}/v1/chat/completions?t={marker}", "-H", "content-type: application/json",
                           "-d", chat("echo:my address is bob@corp.example"))
    assert status == 200
    # The stand-in echoes what it received: the prompt already carried the mask.
    assert json.loads(body)["choices"][0]["message"]["content"] == "my address is [REDACTED:EMAIL]"
    audit = envoy.audit_for(marker)
    assert audit["request"]["findings"] == {"email": 1}


def test_openai_sdk_gets_the_redacted_completion_over_tls(envoy):
    client = openai.OpenAI(base_url=f"{envoy.base}/v1", api_key="sk-test",
                           http_client=httpx.Client(verify=ssl.create_default_context(cafile=CA)))
    r = client.chat.completions.create(model="standin-1", messages=[{"role": "user", "content": b64(ANSWER)}])
    assert r.choices[0].message.content == REDACTED
    assert r.choices[0].finish_reason == "stop"
    assert r.model == "standin-1"


def test_tls_only_offers_http2_and_http1_via_alpn(envoy):
    for proto, want in (("--http2", "HTTP/2"), ("--http1.1", "HTTP/1.1")):
        r = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_version}", proto, "--cacert", CA,
                            f"{envoy.base}/health"], capture_output=True, text=True, timeout=20)
        assert r.stdout == {"HTTP/2": "2", "HTTP/1.1": "1.1"}[want]
    # Without the CA, the certificate is not trusted: it is our own local CA's.
    r = subprocess.run(["curl", "-sS", f"{envoy.base}/health"], capture_output=True, text=True, timeout=20)
    assert r.returncode == 60, r.stderr


def test_plaintext_port_answers_426_with_a_json_error(envoy):
    r = subprocess.run(["curl", "-sS", "-D", "-", f"http://127.0.0.1:{envoy.plain_port}/v1/chat/completions",
                        "-d", "{}"], capture_output=True, timeout=20)
    head, _, body = r.stdout.decode().partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 426 Upgrade Required")
    assert "content-type: application/json" in head.lower()
    err = json.loads(body)["error"]
    assert err["code"] == "tls_required"
    assert err["message"] == f"TLS is required: connect with https:// on port {envoy.https_port}"


def test_oversized_bodies_are_refused_in_the_api_error_shape(make_envoy):
    e = make_envoy(json.dumps({"request": {"max_body_bytes": 2048}, "response": {"max_body_bytes": 600}}))
    status, headers, body = curl(f"{e.base}/v1/chat/completions", "-H", "content-type: application/json",
                                 "-d", chat("echo:" + "x" * 3000))
    assert status == 413
    assert json.loads(body)["error"]["code"] == "request_too_large"
    # A prompt that fits, whose answer does not.
    marker = uuid.uuid4().hex
    status, headers, body = curl(f"{e.base}/v1/chat/completions?t={marker}", "-H", "content-type: application/json",
                                 "-d", chat("echo:" + "y" * 1000))
    assert status == 502
    assert headers["content-type"] == "application/json"
    err = json.loads(body)["error"]
    assert err == {"message": "body larger than the 600 bytes inferguard is configured to scan",
                   "type": "server_error", "param": None, "code": "response_too_large"}
    audit = e.audit_for(marker)
    assert audit["decision"] == "blocked" and audit["reason"] == "response_too_large"


def test_pass_unscanned_lets_oversized_bodies_through_and_the_audit_says_so(make_envoy):
    """`on_oversize: pass_unscanned` is the operator's explicit fail-open choice."""
    e = make_envoy(json.dumps({"request": {"max_body_bytes": 2048, "on_oversize": "pass_unscanned"},
                               "response": {"max_body_bytes": 600, "on_oversize": "pass_unscanned"}}))
    marker = uuid.uuid4().hex
    answer = "mail jane@corp.example " + "y" * 1000
    status, headers, body = curl(f"{e.base}/v1/chat/completions?t={marker}", "-H", "content-type: application/json",
                                 "-d", chat(b64(answer)))
    assert status == 200
    assert body == expected_completion(answer)
    assert headers["content-length"] == str(len(body))
    audit = e.audit_for(marker)
    # Something went out unscanned: the decision says so, and the direction says why.
    assert audit["decision"] == "unscanned"
    assert scan_part(audit["request"]) == {"scanned": True}
    assert scan_part(audit["response"]) == {"scanned": False, "unscanned_reason": "oversize"}
    # A prompt over the limit is forwarded as sent: the stand-in echoes it back.
    marker = uuid.uuid4().hex
    prompt = "echo:" + "ops@corp.example " + "z" * 2100
    status, _, body = curl(f"{e.base}/v1/chat/completions?t={marker}", "-H", "content-type: application/json",
                           "-d", chat(prompt))
    assert status == 200 and "ops@corp.example" in body
    assert scan_part(e.audit_for(marker)["request"]) == {"scanned": False, "unscanned_reason": "oversize"}


@pytest.mark.parametrize("config, message", [
    ('{"response": {"max_body_bytes": "big"}}',
     'response.max_body_bytes: invalid type: string "big", expected a positive integer'),
    ('{"response": {"max_body_bytes": 0}}', "response.max_body_bytes: expected a positive integer, got 0"),
    ('{"respones": {}}', "respones: unknown field `respones`, expected one of `detect`, `request`, `response`"),
    ('{"response": {"max_body_bytes": 10', "configuration: invalid JSON: EOF while parsing an object at line 1 column 34"),
    ('{"limits": {"max_callers": 0}}', "limits.max_callers: expected an integer from 1 to 262144"),
])
def test_envoy_refuses_a_bad_configuration_and_says_which_field(workdir, standin, config, message):
    e = Envoy(workdir, standin.address, config, wait=False)
    try:
        e.proc.wait(timeout=60)
        out = e.output()
        assert e.proc.returncode != 0
        assert f"inferguard: invalid configuration: {message}" in out, out
        assert "Unable to create Wasm" in out or "wasm" in out.lower()
    finally:
        e.stop()
    code, out = envoy_validate(workdir, standin.address, config)
    assert code != 0
    assert f"inferguard: invalid configuration: {message}" in out, out


def test_make_run_brings_up_8443_in_front_of_a_given_upstream(tmp_path):
    """`make run UPSTREAM=host:port` proxies to a server already listening there (no stand-in)."""
    hits = []

    class Upstream(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def do_POST(self):
            self.rfile.read(int(self.headers.get("content-length") or 0))
            hits.append(self.path)
            body = json.dumps({"id": "x", "object": "chat.completion", "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "real upstream: a@b.io"},
                 "finish_reason": "stop"}]}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    ports = {"HTTPS_PORT": free_port(), "PLAIN_PORT": free_port(), "ADMIN_PORT": free_port()}
    env = dict(os.environ, **{k: str(v) for k, v in ports.items()})
    log = open(tmp_path / "make-run.log", "wb")
    proc = subprocess.Popen(["make", "--no-print-directory", "run", f"UPSTREAM=127.0.0.1:{srv.server_port}"],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        def up():
            with urllib.request.urlopen(f"http://127.0.0.1:{ports['ADMIN_PORT']}/ready", timeout=1) as r:
                return r.read().strip() == b"LIVE"
        wait_for(up, 120, "make run", proc, tmp_path / "make-run.log")
        status, _, body = curl(f"https://localhost:{ports['HTTPS_PORT']}/v1/chat/completions",
                               "-H", "content-type: application/json", "-d", chat("hi"))
        assert status == 200
        assert json.loads(body)["choices"][0]["message"]["content"] == "real upstream: [REDACTED:EMAIL]"
        assert hits == ["/v1/chat/completions"]
        out = (tmp_path / "make-run.log").read_text()
        assert f"upstream: 127.0.0.1:{srv.server_port} (no stand-in started)" in out
        assert "standin: listening" not in out
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        srv.shutdown()
    # Ctrl-C stopped everything make run started: nothing answers on its ports any more.
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{ports['ADMIN_PORT']}/ready", timeout=1)
