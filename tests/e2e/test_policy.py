"""The detection policy in the filter: custom rules, dictionaries, actions, allowlist and JSON
field rules, applied to responses passing through the real Envoy."""
import json
import subprocess
import uuid

from harness import CA, b64

POLICY = {"detect": {
    "dictionaries": [{"name": "codename", "terms": ["Project Falcon"], "action": "mask"}],
    "rules": [{"name": "ticket", "pattern": "INC-[0-9]{6}", "action": "hash"}],
    "detectors": {"phone": {"action": "partial", "keep_last": 4}, "ipv4": {"action": "report"}},
    "allowlist": {"domains": ["example.org"]},
    "field_rules": {"keys": ["password"], "action": "mask"},
    "hash_key": "0123456789abcdef0123",
}}


def fetch(envoy, answer, *headers):
    marker = uuid.uuid4().hex
    args = ["curl", "-sS", "--cacert", CA, f"{envoy.base}/v1/chat/completions?t={marker}",
            "-H", "content-type: application/json",
            "-d", json.dumps({"model": "m", "messages": [{"role": "user", "content": b64(answer)}]})]
    for h in headers:
        args += ["-H", h]
    out = subprocess.run(args, capture_output=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout.decode(), envoy.audit_for(marker)


def test_custom_rules_dictionaries_actions_and_allowlist(make_envoy):
    e = make_envoy(json.dumps(POLICY))
    answer = ("project falcon ships; see INC-123456 and INC-123456, call +1 415 555 0134, "
              "mail a@example.org or b@corp.io from 10.1.2.3")
    body, audit = fetch(e, answer)
    assert json.loads(body)["choices"][0]["message"]["content"] == (
        "[REDACTED:CODENAME] ships; see [TICKET:ad749727] and [TICKET:ad749727], call +* *** *** 0134, "
        "mail a@example.org or [REDACTED:EMAIL] from 10.1.2.3")
    assert audit["response"]["findings"] == {"codename": 1, "ticket": 2, "phone": 1, "email": 1, "ipv4": 1}
    assert audit["response"]["actions"] == {"mask": 2, "hash": 2, "partial": 1, "report": 1}
    assert audit["decision"] == "redacted"


def test_json_field_rules_mask_whole_values(make_envoy):
    e = make_envoy(json.dumps(POLICY))
    raw = json.dumps({"user": {"name": "Ann", "password": "correct horse battery"}, "note": "fine"})
    body, audit = fetch(e, raw, "x-standin-raw-body: 1", "x-standin-content-type: application/json")
    assert json.loads(body) == {"user": {"name": "Ann", "password": "[REDACTED:FIELD:PASSWORD]"}, "note": "fine"}
    assert "horse" not in body
    assert audit["response"]["actions"] == {"mask": 1}, audit
    assert audit["response"]["findings"] == {"field:password": 1}, audit
