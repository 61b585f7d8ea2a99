//! `inferguard redact`, and the command line's help, version and usage errors, run as the built binary.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn run(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_inferguard"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn inferguard");
    // The process may exit before reading (bad arguments): a broken pipe is fine.
    let _ = child.stdin.take().expect("stdin").write_all(stdin);
    child.wait_with_output().expect("wait")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("utf-8 stdout")
}

fn config(name: &str, json: &str) -> String {
    let dir = std::env::temp_dir().join(format!("inferguard-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, json).expect("write config");
    path.to_string_lossy().into_owned()
}

#[test]
fn plain_mode_redacts_stdin_with_the_default_policy() {
    let o = run(&["redact"], b"Mail jane@example.com or call (415) 555-2671.\nKey: AKIAIOSFODNN7Q2MZ9VK\n");
    assert!(o.status.success(), "{o:?}");
    assert_eq!(stdout(&o), "Mail [REDACTED:EMAIL] or call [REDACTED:PHONE].\nKey: [REDACTED:AWS_ACCESS_KEY_ID]\n");
}

#[test]
fn plain_mode_leaves_clean_text_byte_for_byte() {
    let text = "Nothing to see: v1.2.3, 2024-01-15, “quotes” — and 中文.\n\n";
    let o = run(&["redact"], text.as_bytes());
    assert!(o.status.success());
    assert_eq!(stdout(&o), text);
}

#[test]
fn jsonl_mode_reports_findings_with_byte_offsets_and_keeps_order() {
    let input = concat!(
        r#"{"id": 1, "text": "Mail jane@example.com now"}"#,
        "\n",
        r#"{"id": "two", "text": "é card 4111 1111 1111 1111"}"#,
        "\n",
        r#"{"text": "clean"}"#,
        "\n"
    );
    let o = run(&["redact", "--jsonl"], input.as_bytes());
    assert!(o.status.success(), "{o:?}");
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            r#"{"id":1,"text":"Mail [REDACTED:EMAIL] now","findings":[{"detector":"email","start":5,"end":21,"action":"mask"}]}"#,
            r#"{"id":"two","text":"é card [REDACTED:CREDIT_CARD]","findings":[{"detector":"credit_card","start":8,"end":27,"action":"mask"}]}"#,
            r#"{"id":null,"text":"clean","findings":[]}"#,
        ]
    );
}

#[test]
fn jsonl_bad_lines_get_an_error_object_and_the_run_goes_on() {
    let input = b"{\"id\": 1, \"text\": \"a@example.com\"}\nnot json\n\n[1,2]\n{\"id\": 7}\n{\"id\": 8, \"text\": 3}\n\xff\xfe\n{\"id\": 9, \"text\": \"ok\"}";
    let o = run(&["redact", "--jsonl"], input);
    assert!(o.status.success(), "{o:?}");
    let out = stdout(&o);
    let lines: Vec<serde_json::Value> =
        out.lines().map(|l| serde_json::from_str(l).expect("each output line is JSON")).collect();
    assert_eq!(lines.len(), 7, "{out}");
    assert_eq!(lines[0]["text"], "[REDACTED:EMAIL]");
    assert!(lines[1]["error"].as_str().is_some_and(|e| e.starts_with("line 2: invalid JSON")), "{}", lines[1]);
    assert!(lines[2]["error"].as_str().is_some_and(|e| e.starts_with("line 4: expected an object")));
    assert_eq!(lines[3]["id"], 7);
    assert_eq!(lines[3]["error"], "line 5: missing \"text\"");
    assert_eq!(lines[4]["id"], 8);
    assert!(lines[5]["error"].as_str().is_some_and(|e| e.starts_with("line 7: invalid JSON")));
    assert_eq!(lines[6]["text"], "ok");
}

#[test]
fn config_file_sets_actions_rules_dictionaries_and_allowlist() {
    let cfg = config(
        "policy.json",
        r#"{"detect": {
            "detectors": {"credit_card": {"action": "partial"}, "phone": {"enabled": false}, "email": {"action": "hash"}},
            "rules": [{"name": "ticket", "pattern": "\\bINC-[0-9]{6}\\b", "action": "remove"}],
            "dictionaries": [{"name": "codename", "terms": ["Project Falcon"]}],
            "allowlist": {"domains": ["example.org"]},
            "hash_key": "0123456789abcdef0123"
        }}"#,
    );
    let o = run(
        &["redact", "--config", &cfg],
        b"a@example.com b@example.org card 4111-1111-1111-1111 call 415-555-2671 INC-123456 project falcon",
    );
    assert!(o.status.success(), "{o:?}");
    let out = stdout(&o);
    assert!(out.starts_with("[EMAIL:"), "{out}");
    assert!(out.ends_with("] b@example.org card ****-****-****-1111 call 415-555-2671  [REDACTED:CODENAME]"), "{out}");
    // The same value hashes to the same token.
    let again = run(&["redact", "--config", &cfg], b"a@example.com");
    assert_eq!(stdout(&again), out[..16]);
}

#[test]
fn block_in_plain_mode_writes_nothing_and_exits_3() {
    let cfg = config("block.json", r#"{"detect": {"detectors": {"private_key": {"action": "block"}}}}"#);
    let o = run(
        &["redact", "--config", &cfg],
        b"-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n",
    );
    assert_eq!(o.status.code(), Some(3));
    assert!(o.stdout.is_empty());
    assert!(String::from_utf8_lossy(&o.stderr).contains("blocked by rule private_key"));
    let o = run(
        &["redact", "--jsonl", "--config", &cfg],
        b"{\"id\":1,\"text\":\"-----BEGIN PRIVATE KEY-----\\nMIIE\\n-----END PRIVATE KEY-----\"}\n",
    );
    assert!(o.status.success());
    assert_eq!(stdout(&o), "{\"id\":1,\"text\":null,\"blocked_by\":\"private_key\",\"findings\":[{\"detector\":\"private_key\",\"start\":0,\"end\":58,\"action\":\"block\"}]}\n");
}

#[test]
fn bad_config_and_bad_arguments_are_refused() {
    let cfg = config("bad.json", r#"{"detect": {"detectors": {"emial": {}}}}"#);
    let o = run(&["redact", "--config", &cfg], b"x");
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("detect.detectors.emial: unknown detector"), "{o:?}");
    let o = run(&["redact", "--frobnicate"], b"x");
    assert_eq!(o.status.code(), Some(2));
    let o = run(&["redact", "--config"], b"x");
    assert_eq!(o.status.code(), Some(2));
    let o = run(&["redact", "--config", "/nonexistent/inferguard.json"], b"x");
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn check_config_still_works() {
    let cfg = config("ok.json", r#"{"detect": {"rules": [{"name": "t", "pattern": "T-[0-9]+"}]}}"#);
    let o = run(&["check-config", &cfg], b"");
    assert!(o.status.success(), "{o:?}");
    assert!(stdout(&o).contains("22 detectors enabled, 1 rule"), "{}", stdout(&o));
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).expect("utf-8 stderr")
}

#[test]
fn help_names_every_subcommand_and_exits_0() {
    for args in [&["--help"][..], &["-h"], &["help"]] {
        let o = run(args, b"");
        assert_eq!(o.status.code(), Some(0), "{args:?}: {o:?}");
        let out = stdout(&o);
        assert!(out.starts_with("Redact sensitive data from LLM inference traffic"), "{out}");
        assert!(out.contains("\nUsage: inferguard <COMMAND>\n"), "{out}");
        for line in [
            "  check-config     Check a plugin configuration exactly as the filter loads it\n",
            "  redact           Redact stdin to stdout with a configuration's policy\n",
            "  explain          Explain the decision on one request (not implemented yet)\n",
            "  import-gitleaks  Convert a gitleaks configuration into inferguard rules\n",
            "  -V, --version",
        ] {
            assert!(out.contains(line), "{args:?} lacks {line:?}:\n{out}");
        }
        assert!(o.stderr.is_empty(), "{o:?}");
    }
    // The long help says what the exit statuses mean.
    assert!(stdout(&run(&["--help"], b"")).contains("3 `redact` refused its\ninput (a `block` rule fired)"));
}

#[test]
fn version_prints_the_crate_version() {
    for flag in ["--version", "-V"] {
        let o = run(&[flag], b"");
        assert_eq!(o.status.code(), Some(0), "{o:?}");
        assert_eq!(stdout(&o), "inferguard 0.1.0\n");
    }
}

#[test]
fn redact_help_describes_the_modes_and_the_flags() {
    let o = run(&["redact", "--help"], b"");
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let out = stdout(&o);
    assert!(out.starts_with("Redact stdin to stdout with a configuration's policy\n"), "{out}");
    assert!(out.contains("\nUsage: inferguard redact [OPTIONS]\n"), "{out}");
    assert!(out.contains("\n      --config <FILE>\n"), "{out}");
    assert!(out.contains("\n      --jsonl\n"), "{out}");
    assert!(out.contains("the exit\nstatus is 3"), "{out}");
    assert!(out.contains(r#"[{"detector", "start", "end", "action"}]"#), "{out}");
    // -h: one line per flag.
    let short = stdout(&run(&["redact", "-h"], b""));
    assert!(short.contains("\n      --jsonl          Read and write JSON Lines, one text per line\n"), "{short}");
    // The same text through `help redact`.
    assert_eq!(stdout(&run(&["help", "redact"], b"")), out);
}

#[test]
fn usage_errors_exit_2_with_clap_s_message_on_stderr() {
    let cases: [(&[&str], &str); 7] = [
        (&["redact", "--frobnicate"], "error: unexpected argument '--frobnicate' found\n"),
        (&["redact", "extra"], "error: unexpected argument 'extra' found\n"),
        (&["redact", "--config"], "error: a value is required for '--config <FILE>' but none was supplied\n"),
        (&["--frobnicate"], "error: unexpected argument '--frobnicate' found\n"),
        (&["frobnicate"], "error: unrecognized subcommand 'frobnicate'\n"),
        (&["check-config"], "error: the following required arguments were not provided:\n  <FILE>\n"),
        (&["explain"], "error: the following required arguments were not provided:\n  --path <PATH>\n"),
    ];
    for (args, message) in cases {
        let o = run(args, b"x");
        assert_eq!(o.status.code(), Some(2), "{args:?}: {o:?}");
        assert!(o.stdout.is_empty(), "{args:?}: {o:?}");
        let err = stderr(&o);
        assert!(err.starts_with(message), "{args:?}: {err}");
        assert!(err.ends_with("For more information, try '--help'.\n"), "{args:?}: {err}");
    }
    // A near miss is named.
    let err = stderr(&run(&["redact", "--jsonl", "--confg", "x"], b""));
    assert!(err.contains("tip: a similar argument exists: '--config'"), "{err}");
    // No subcommand: the short help, on stderr.
    let o = run(&[], b"");
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(o.stdout.is_empty());
    assert!(stderr(&o).contains("\nUsage: inferguard <COMMAND>\n"), "{o:?}");
}

#[test]
fn redact_flags_may_repeat_and_the_last_config_wins() {
    let o = run(
        &["redact", "--jsonl", "--config", "/nonexistent/x.json", "--jsonl", "--config=envoy/inferguard.json"],
        b"{\"text\": \"a@example.com\"}\n",
    );
    assert!(o.status.success(), "{o:?}");
    assert_eq!(stdout(&o), "{\"id\":null,\"text\":\"[REDACTED:EMAIL]\",\"findings\":[{\"detector\":\"email\",\"start\":0,\"end\":13,\"action\":\"mask\"}]}\n");
}

#[test]
fn explain_names_each_policy_verdict_the_policy_chosen_and_the_decision() {
    let cfg = config(
        "explain.json",
        r#"{"policies": [
            {"name": "restricted", "match": {"models": ["gpt-4*"]},
             "admission": {"require_client_certificate": true, "required_scopes": ["inference:restricted"]}},
            {"name": "batch", "match": {"spiffe": ["spiffe://cluster.local/ns/batch/*"]}}
        ]}"#,
    );
    let o = run(
        &[
            "explain",
            "--config",
            &cfg,
            "--path",
            "/v1/chat/completions",
            "--model",
            "gpt-4o",
            "--sub",
            "alice",
            "--scope",
            "inference",
        ],
        b"",
    );
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert_eq!(
        stdout(&o),
        "request:  POST /v1/chat/completions model=gpt-4o\n\
         caller:   jwt subject=alice groups=[] scopes=[inference] TLS\n\
         policies, first match wins:\n\
         \x20 restricted               matches\n\
         \x20 batch                    no: match.spiffe\n\
         policy:   restricted\n\
         decision: denied (403 client_certificate_required)\n\
         reply:    {\"error\":{\"message\":\"this endpoint requires a client certificate (mutual TLS)\",\"type\":\"invalid_request_error\",\"param\":null,\"code\":\"client_certificate_required\"}}\n\
         \x20         content-type: application/json\n\
         \x20         x-inferguard: refused\n\
         \x20         x-content-type-options: nosniff\n\
         \x20         x-frame-options: DENY\n\
         \x20         content-security-policy: default-src 'none'; frame-ancestors 'none'\n\
         \x20         referrer-policy: no-referrer\n\
         \x20         cache-control: no-store\n\
         \x20         strict-transport-security: max-age=31536000\n\
         \x20         vary: Origin\n\
         audit:    {\"schema\":1,\"decision\":\"denied\",\"policy\":\"restricted\",\"identity\":{\"source\":\"jwt\",\"subject\":\"alice\"},\"api\":\"openai.chat_completions\",\"model\":\"gpt-4o\",\"request\":{\"scanned\":true},\"response\":{\"scanned\":true},\"reason\":\"client_certificate_required\"}\n"
    );
    // With the certificate and the scope: forwarded, under the same policy.
    let o = run(
        &[
            "explain",
            "--config",
            &cfg,
            "--path",
            "/v1/chat/completions",
            "--model",
            "gpt-4o",
            "--sub",
            "alice",
            "--scope",
            "inference:restricted",
            "--mtls",
        ],
        b"",
    );
    let out = stdout(&o);
    assert!(out.contains("\npolicy:   restricted\ndecision: forwarded\n"), "{out}");
    // Another model: the first policy misses, and the default allows it.
    let o = run(&["explain", "--config", &cfg, "--path", "/v1/chat/completions", "--model", "llama-3"], b"");
    let out = stdout(&o);
    assert!(out.contains("  restricted               no: match.models\n"), "{out}");
    assert!(out.contains("\npolicy:   default\ndecision: forwarded\n"), "{out}");
    // The path tricks are judged the way the filter judges them.
    let o = run(&["explain", "--path", "//API/./pull", "--method", "GET"], b"");
    assert!(stdout(&o).contains("\ndecision: denied (403 admin_endpoint)\n"), "{}", stdout(&o));
    let o = run(&["explain", "--path", "/v1/chat/completions", "--plaintext"], b"");
    assert!(stdout(&o).contains("\ndecision: denied (426 tls_required)\n"), "{}", stdout(&o));
    let out = stdout(&run(&["explain", "--help"], b""));
    assert!(out.contains("\nUsage: inferguard explain [OPTIONS] --path <PATH>\n"), "{out}");
    for flag in [
        "--config <FILE>",
        "--path <PATH>",
        "--method <METHOD>",
        "[default: POST]",
        "--host <HOST>",
        "--route <NAME>",
        "--model <NAME>",
        "--sub <SUBJECT>",
        "--group <GROUP>",
        "--scope <SCOPE>",
        "--spiffe <ID>",
        "--mtls",
        "--plaintext",
    ] {
        assert!(out.contains(flag), "explain --help lacks {flag}:\n{out}");
    }
}

#[test]
fn import_gitleaks_writes_a_fragment_and_accounts_for_every_rule() {
    let dir = std::env::temp_dir().join(format!("inferguard-gitleaks-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let toml = dir.join("rules.toml");
    std::fs::write(
        &toml,
        r#"
[allowlist]
stopwords = ["example"]

[[rules]]
id = "demo-key"
regex = '''demo_([a-z0-9]{16})'''
secretGroup = 1
entropy = 3
keywords = ["demo_"]

[[rules]]
id = "letters"
regex = '''\p{L}{40}'''

[[rules]]
id = "keystore"
path = '''\.p12$'''
"#,
    )
    .unwrap();
    let o = run(&["import-gitleaks", toml.to_str().unwrap()], b"");
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let fragment: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        fragment,
        serde_json::json!({"detect": {
            "rules": [{"name": "gitleaks.demo-key", "pattern": "demo_([a-z0-9]{16})", "max_len": 512,
                       "secret_group": 1, "entropy": 3.0, "keywords": ["demo_"]}],
            "rule_allowlist": {"stopwords": ["example"]}
        }})
    );
    let err = String::from_utf8(o.stderr).unwrap();
    assert!(err.starts_with("carried 1 of 3 rules\nnot carried: letters: regex: "), "{err}");
    assert!(
        err.ends_with("not carried: keystore: no regex: it matches file paths only, and traffic has none\n"),
        "{err}"
    );
    // The fragment is a configuration the filter loads, and the rule redacts its secret group.
    let cfg = dir.join("fragment.json");
    let o = run(&["import-gitleaks", toml.to_str().unwrap(), "--output", cfg.to_str().unwrap()], b"");
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let o = run(&["redact", "--config", cfg.to_str().unwrap()], b"key demo_k3x9q2m7p4z8w1v6 set\n");
    assert_eq!(stdout(&o), "key demo_[REDACTED:GITLEAKS.DEMO-KEY] set\n");
    // Not TOML: exit 1 with the reason.
    std::fs::write(&toml, "[[rules]\nid =").unwrap();
    let o = run(&["import-gitleaks", toml.to_str().unwrap()], b"");
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(String::from_utf8(o.stderr).unwrap().contains("not TOML"));
    let _ = std::fs::remove_dir_all(&dir);
}
