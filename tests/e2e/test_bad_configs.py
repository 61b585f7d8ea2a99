"""Bad configurations: each one refused, with the field named, by `inferguard check-config` and by
Envoy itself at start (the filter's on_configure fails, Envoy exits and logs the same message).
Envoys start a few at a time: each exits as soon as it has read its configuration."""
import os
import subprocess

import pytest

from harness import ROOT, Envoy

CLI = os.path.join(ROOT, "target", "cli", "inferguard")

# (configuration, what the refusal says: the field's path first). Long messages are cut where
# they go on to list what is known.
BAD = [
    ('{"response": {"max_body_bytes": "big"}}',
     'response.max_body_bytes: invalid type: string "big", expected a positive integer'),
    ('{"response": {"max_body_bytes": 0}}',
     'response.max_body_bytes: expected a positive integer, got 0'),
    ('{"request": {"max_body_bytes": -5}}',
     'request.max_body_bytes: expected a positive integer, got -5'),
    ('{"respones": {}}',
     'respones: unknown field `respones`, expected one of `detect`, `request`, `response`, `admission`, `cors`, `hea'),
    ('{"response": {"max_body_bytes": 10',
     'configuration: invalid JSON: EOF while parsing an object at line 1 column 34'),
    ('[]',
     'configuration: invalid type: sequence, expected an object'),
    ('"default"',
     'configuration: invalid type: string "default", expected an object'),
    ('{"request": []}',
     'request: invalid type: sequence, expected an object'),
    ('{"request": {"mode": "scrub"}}',
     'request.mode: unknown variant `scrub`, expected one of `redact`, `block`, `report`'),
    ('{"response": {"on_oversize": "drop"}}',
     'response.on_oversize: unknown variant `drop`, expected one of `reject`, `pass_unscanned`'),
    ('{"response": {"enabled": "yes"}}',
     'response.enabled: invalid type: string "yes", expected a boolean'),
    ('{"response": {"max_holdback_bytes": 0}}',
     'response.max_holdback_bytes: expected a positive integer, got 0'),
    ('{"hold_headers": "yes"}',
     'hold_headers: invalid type: string "yes", expected a boolean'),
    ('{"detect": {"detectors": {"emial": {}}}}',
     'detect.detectors.emial: unknown detector (known: email, phone, credit_card, us_ssn, iban, ipv4, ipv6, aws_acce'),
    ('{"detect": {"detectors": {"email": {"action": "erase"}}}}',
     'detect.detectors.email.action: unknown variant `erase`, expected one of `mask`, `partial`, `hash`, `remove`, `block`, `report`'),
    ('{"detect": {"detectors": {"phone": {"action": "partial", "keep_last": "four"}}}}',
     'detect.detectors.phone.keep_last: invalid type: string "four", expected an integer from 0 to 255'),
    ('{"detect": {"rules": [{"name": "t", "pattern": "(unclosed"}]}}',
     "detect.rules[0].pattern: invalid regex: found open group without closing ')'"),
    ('{"detect": {"rules": [{"pattern": "x"}]}}',
     'detect.rules[0]: missing field `name`'),
    ('{"detect": {"rules": [{"name": "t", "pattern": ""}]}}',
     'detect.rules[0].pattern: matches the empty string'),
    ('{"detect": {"dictionaries": [{"name": "c", "terms": []}]}}',
     'detect.dictionaries[0].terms: must list at least one term'),
    ('{"detect": {"dictionaries": [{"name": "c", "terms": [""]}]}}',
     'detect.dictionaries[0].terms[0]: must be 1 to 256 bytes and not blank'),
    ('{"detect": {"allowlist": {"patterns": ["[z-a]"]}}}',
     'detect.allowlist.patterns[0]: invalid regex: invalid range in character class'),
    ('{"detect": {"field_rules": {"keys": "password"}}}',
     'detect.field_rules.keys: invalid type: string "password", expected a sequence'),
    ('{"detect": {"hash_key": "short"}}',
     'detect.hash_key: must be at least 16 bytes, got 5'),
    ('{"admission": {"require_tls": 1}}',
     'admission.require_tls: invalid type: integer `1`, expected a boolean'),
    ('{"admission": {"required_scopes": "inference"}}',
     'admission.required_scopes: invalid type: string "inference", expected a sequence'),
    ('{"admission": {"endpoints": ["no.such.endpoint"]}}',
     'admission.endpoints[0]: unknown endpoint `no.such.endpoint`: expected a path starting with `/` or one of ollam'),
    ('{"admission": {"models": [{"allow": [7]}]}}',
     'admission.models[0].allow[0]: invalid type: integer `7`, expected a string'),
    ('{"admission": {"min_tls_version": "SSLv3"}}',
     'admission.min_tls_version: unknown variant `SSLv3`, expected one of `TLSv1.0`, `TLSv1.1`, `TLSv1.2`, `TLSv1.3`'),
    ('{"cors": {"allowed_origins": ["not a url"]}}',
     'cors.allowed_origins[0]: not an origin: expected scheme://host[:port]'),
    ('{"cors": {"allowed_origins": ["*"], "allow_credentials": true}}',
     'cors.allowed_origins[0]: a wildcard origin or `null` cannot be combined with `allow_credentials: true` (any pa'),
    ('{"cors": {"max_age": -1}}',
     'cors.max_age: invalid type: integer `-1`, expected an integer from 0 to 86400'),
    ('{"headers": {"security": {"x-frame-options": 5}}}',
     'headers.security.x-frame-options: invalid type: integer `5`, expected a string'),
    ('{"limits": {"max_callers": 0}}',
     'limits.max_callers: expected an integer from 1 to 262144'),
    ('{"limits": {"requests_per_minute": 0}}',
     'limits.requests_per_minute: expected a positive integer, got 0'),
    ('{"limits": {"warn_at": 150}}',
     'limits.warn_at: expected a percentage from 0 to 100'),
    ('{"audit": {"prompt_digest": {"key": "short"}}}',
     'audit.prompt_digest.key: must be at least 16 bytes, got 5'),
    ('{"audit": {"capture": {"max_bytes": 0}}}',
     'audit.capture.max_bytes: expected a positive integer, got 0'),
    ('{"audit": {"capture": {"to": "syslog"}}}',
     'audit.capture.to: unknown variant `syslog`, expected one of `access_log`, `capture_log`'),
    ('{"policies": {}}',
     'policies: invalid type: map, expected a sequence'),
    ('{"policies": [{"match": {"models": ["a"]}}]}',
     'policies[0]: missing field `name`'),
    ('{"policies": [{"name": "default"}]}',
     'policies[0].name: the name `default` is already taken'),
    ('{"policies": [{"name": "a"}, {"name": "a"}]}',
     'policies[1].name: the name `a` is already taken'),
    ('{"policies": [{"name": "a", "match": {"models": [7]}}]}',
     'policies[0].match.models[0]: invalid type: integer `7`, expected a string'),
    ('{"policies": [{"name": "a", "match": {"spiffe": ["not-spiffe"]}}]}',
     'policies[0].match.spiffe[0]: expected a SPIFFE id glob starting with `spiffe://`'),
    ('{"admission": {"models": [{"spiffe": ["cluster.local/ns/a"], "allow": ["m"]}]}}',
     'admission.models[0].spiffe[0]: expected a SPIFFE id glob starting with `spiffe://`'),
    ('{"policies": [{"name": "a", "detect": {"rules": [{"name": "r", "pattern": "("}]}}]}',
     "policies[0].detect.rules[0].pattern: invalid regex: found open group without closing ')'"),
    ('{"policies": [{"name": "a", "response": {"mode": "nope"}}]}',
     'policies[0].response.mode: unknown variant `nope`, expected one of `redact`, `block`, `report`'),
    ('{"response": {"max_body_bytes": 1, "max_body_bytes": 2}}',
     'response.max_body_bytes: duplicate field `max_body_bytes`'),
]


def test_there_are_at_least_forty_and_each_names_a_field_or_the_document():
    assert len(BAD) >= 40
    assert len({c for c, _ in BAD}) == len(BAD)
    for _, message in BAD:
        where = message.split(":", 1)[0]
        assert where == "configuration" or where.split(".")[0].split("[")[0] in (
            "request", "response", "respones", "hold_headers", "detect", "admission", "cors", "headers", "limits",
            "audit", "policies"), message


@pytest.mark.parametrize("config, message", BAD, ids=[str(i) for i in range(len(BAD))])
def test_check_config_refuses_it_and_names_the_field(tmp_path, config, message):
    path = tmp_path / "bad.json"
    path.write_text(config)
    r = subprocess.run([CLI, "check-config", str(path)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1, r.stdout
    assert f"{path}: invalid configuration: {message}" in r.stderr, r.stderr


def test_envoy_refuses_each_at_start_and_logs_the_field(workdir, standin):
    failures = []
    for at in range(0, len(BAD), 6):
        batch = [(config, message, Envoy(workdir, standin.address, config, wait=False))
                 for config, message in BAD[at:at + 6]]
        for config, message, e in batch:
            try:
                e.proc.wait(timeout=60)
                out = e.output()
                if e.proc.returncode == 0 or f"inferguard: invalid configuration: {message}" not in out:
                    failures.append((config, e.proc.returncode, out[-600:]))
            finally:
                e.stop()
    assert not failures, failures
