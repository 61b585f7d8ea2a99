//! Table-driven tests of the engine: actions, configuration, allowlist, dictionaries, rules,
//! field rules and the streaming scan. The labelled corpus is in `tests/corpus`.

use super::*;
use crate::policy::Config;

fn engine() -> Engine {
    Engine::new(&DetectConfig::default()).unwrap()
}

fn with(json: &str) -> Engine {
    let cfg = Config::parse(&format!(r#"{{"detect": {json}}}"#)).unwrap();
    Engine::new(&cfg.default.detect).unwrap()
}

fn spans(fs: &[Finding]) -> Vec<(&str, usize, usize)> {
    fs.iter().map(|f| (f.detector.as_ref(), f.start, f.end)).collect()
}

#[test]
fn actions_render_as_documented() {
    let text = "to jane@example.com, card 4111 1111 1111 1111.";
    for (action, want) in [
        ("mask", "to [REDACTED:EMAIL], card [REDACTED:CREDIT_CARD]."),
        ("partial", "to ****@******e.com, card **** **** **** 1111."),
        ("remove", "to , card ."),
        ("block", text),
        ("report", text),
    ] {
        let e = with(&format!(
            r#"{{"detectors": {{"email": {{"action": "{action}"}}, "credit_card": {{"action": "{action}"}}}}}}"#
        ));
        let r = e.redact(text);
        assert_eq!(r.text, want, "{action}");
        assert_eq!(r.findings.len(), 2, "{action}");
        assert!(r.findings.iter().all(|f| f.action.as_str() == action));
        assert_eq!(r.blocked_by().is_some(), action == "block");
    }
}

#[test]
fn partial_keeps_configured_digits_and_separators() {
    let e = with(
        r#"{"detectors": {"credit_card": {"action": "partial", "keep_last": 6}, "phone": {"action": "partial", "keep_last": 0}}}"#,
    );
    assert_eq!(e.redact("4111-1111-1111-1111").text, "****-****-**11-1111");
    assert_eq!(e.redact("call (415) 555-2671").text, "call (***) ***-****");
    // Fullwidth digits stay as written; zero-width characters are dropped.
    let e = with(r#"{"detectors": {"credit_card": {"action": "partial"}}}"#);
    assert_eq!(e.redact("４１１１ １１１１ １１１１ １１１\u{200B}１").text, "**** **** **** １１１１");
    // An encoded digit is one digit (starred as one `*`, or kept as written); an encoded `@` or
    // `.` is punctuation, kept as written; bidi marks are dropped like zero-width characters.
    for (text, want) in [
        ("&#52;111.1111.1111.1111", "****.****.****.1111"),
        ("4111 1111 1111 11&#49;&#x31;", "**** **** **** 11&#49;&#x31;"),
        ("٤١١١ ١١١١ ١١١١ ١\u{200F}١١١", "**** **** **** ١١١١"),
    ] {
        assert_eq!(e.redact(text).text, want, "{text:?}");
    }
    let e = with(r#"{"detectors": {"email": {"action": "partial"}}}"#);
    assert_eq!(e.redact("jane%40example&#46;com").text, "****%40******e&#46;com");
    assert_eq!(e.redact("jane﹫example。com").text, "****﹫******e。com");
}

#[test]
fn hash_is_stable_keyed_and_ignores_evasion() {
    let keyed = |k: &str| with(&format!(r#"{{"detectors": {{"email": {{"action": "hash"}}}}, "hash_key": "{k}"}}"#));
    let a = keyed("0123456789abcdef");
    let t1 = a.redact("jane@example.com").text;
    assert!(t1.starts_with("[EMAIL:") && t1.ends_with(']') && t1.len() == "[EMAIL:12345678]".len(), "{t1}");
    assert!(t1[7..15].bytes().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(a.redact("x jane@example.com y").text, format!("x {t1} y"));
    // A zero-width character or any other disguise inside the value does not change its token.
    for disguised in [
        "jane\u{200B}@example.com",
        "jane%40example.com",
        "jane&#64;example&period;com",
        "jane\u{200E}﹫example。com",
        "ｊａｎｅ＠example.com",
    ] {
        assert_eq!(a.redact(disguised).text, t1, "{disguised:?}");
    }
    assert_ne!(a.redact("john@example.com").text, t1);
    assert_ne!(keyed("fedcba9876543210").redact("jane@example.com").text, t1);
    // The default key works, and says so in the summary.
    let d = with(r#"{"detectors": {"email": {"action": "hash"}}}"#);
    assert!(d.redact("jane@example.com").text.starts_with("[EMAIL:"));
    assert!(d.summary().contains("default key"), "{}", d.summary());
    assert!(!a.summary().contains("default key"));
}

#[test]
fn configuration_errors_name_the_field() {
    for (json, want) in [
        (r#"{"detectors": {"emial": {}}}"#, "detect.detectors.emial: unknown detector (known: email, phone, "),
        (r#"{"detectors": {"email": {"keep_last": 65}}}"#, "detect.detectors.email: must be at most 64"),
        (
            r#"{"rules": [{"name": "a", "pattern": "x"}, {"name": "b", "pattern": "x"}, {"name": "c", "pattern": "(x"}]}"#,
            "detect.rules[2].pattern: invalid regex: ",
        ),
        (r#"{"rules": [{"name": "a", "pattern": "x*"}]}"#, "detect.rules[0].pattern: matches the empty string"),
        (r#"{"rules": [{"name": "email", "pattern": "x"}]}"#, "detect.rules[0].name: `email` is already used"),
        (r#"{"rules": [{"name": "has space", "pattern": "x"}]}"#, "detect.rules[0].name: must be 1 to 64"),
        (
            r#"{"rules": [{"name": "a", "pattern": "x", "max_len": 0}]}"#,
            "detect.rules[0].max_len: must be between 1 and 4096",
        ),
        (
            r#"{"rules": [{"name": "a", "pattern": "x"}], "dictionaries": [{"name": "a", "terms": ["y"]}]}"#,
            "detect.dictionaries[0].name: `a` is already used",
        ),
        (
            r#"{"dictionaries": [{"name": "d", "terms": []}]}"#,
            "detect.dictionaries[0].terms: must list at least one term",
        ),
        (
            r#"{"dictionaries": [{"name": "d", "terms": ["ok", "  "]}]}"#,
            "detect.dictionaries[0].terms[1]: must be 1 to 256 bytes",
        ),
        (r#"{"allowlist": {"patterns": ["("]}}"#, "detect.allowlist.patterns[0]: invalid regex"),
        (r#"{"allowlist": {"domains": ["exa mple.com"]}}"#, "detect.allowlist.domains[0]: expected a domain name"),
        (r#"{"allowlist": {"values": [""]}}"#, "detect.allowlist.values[0]: must not be empty"),
        (r#"{"field_rules": {"keys": ["__"]}}"#, "detect.field_rules.keys[0]: must contain a letter or digit"),
        (r#"{"hash_key": "short"}"#, "detect.hash_key: must be at least 16 bytes, got 5"),
    ] {
        let cfg = Config::parse(&format!(r#"{{"detect": {json}}}"#)).unwrap();
        let err = Engine::new(&cfg.default.detect).unwrap_err().to_string();
        assert!(err.starts_with(want), "{json}\n got: {err}\nwant: {want}...");
        assert!(!err.contains("short\""), "error echoes the hash key: {err}");
    }
    // Unknown fields and wrong types are refused by serde, with the path.
    for (json, want) in [
        (
            r#"{"detect": {"detectors": {"email": {"enabeld": true}}}}"#,
            "detect.detectors.email.enabeld: unknown field `enabeld`",
        ),
        (r#"{"detect": {"rules": [{"name": "a"}]}}"#, "detect.rules[0]: missing field `pattern`"),
        (
            r#"{"detect": {"detectors": {"email": {"action": "scramble"}}}}"#,
            "detect.detectors.email.action: unknown variant `scramble`",
        ),
    ] {
        let err = Config::parse(json).unwrap_err().to_string();
        assert!(err.starts_with(want), "{json}\n got: {err}");
    }
}

#[test]
fn disabled_detectors_find_nothing() {
    let e = with(r#"{"detectors": {"email": {"enabled": false}, "ipv4": {"enabled": false}}}"#);
    assert!(e.find_all("a@example.com 10.1.2.3").is_empty());
    assert!(e.summary().starts_with("20 detectors enabled"), "{}", e.summary());
}

#[test]
fn summary_counts_everything() {
    let e = with(
        r#"{"rules": [{"name": "t", "pattern": "T-[0-9]+"}], "dictionaries": [{"name": "d", "terms": ["a", "b", "c"]}], "allowlist": {"values": ["x"], "domains": ["example.com"]}, "field_rules": {"keys": ["password", "ssn"]}}"#,
    );
    assert_eq!(e.summary(), "22 detectors enabled, 1 rule, 1 dictionary (3 terms), 2 field rules, 2 allowlist entries");
    assert_eq!(
        engine().summary(),
        format!(
            "22 detectors enabled, 0 rules, 0 dictionaries (0 terms), {} field rules",
            config::DEFAULT_FIELD_KEYS.len()
        )
    );
}

#[test]
fn allowlist_values_domains_and_patterns() {
    let e = with(
        r#"{"allowlist": {"values": ["Support@Example.com"], "domains": ["example.org"], "patterns": ["10\\.0\\.0\\.[0-9]+"]}}"#,
    );
    let r = e.redact("support@example.com a@example.org b@mail.example.org c@example.organic.com 10.0.0.7 10.0.1.7");
    assert_eq!(
        r.text,
        "support@example.com a@example.org b@mail.example.org [REDACTED:EMAIL] 10.0.0.7 [REDACTED:IPV4]"
    );
    // Nothing inside an allowlisted value is redacted by another detector.
    let e =
        with(r#"{"allowlist": {"domains": ["example.com"]}, "dictionaries": [{"name": "people", "terms": ["jane"]}]}"#);
    assert_eq!(e.redact("jane@example.com and jane").text, "jane@example.com and [REDACTED:PEOPLE]");
}

#[test]
fn dictionaries_are_case_insensitive_whole_word_by_default() {
    let e = with(
        r#"{"dictionaries": [{"name": "codename", "terms": ["Project Falcon", "ant"]}, {"name": "exact", "terms": ["ACME"], "case_sensitive": true, "whole_word": false}]}"#,
    );
    let r = e.redact("PROJECT FALCON, project falcon's ant; pants, task-ant, ACME and AcmeCorp, ACMECorp");
    assert_eq!(r.text, "[REDACTED:CODENAME], [REDACTED:CODENAME]'s [REDACTED:CODENAME]; pants, task-[REDACTED:CODENAME], [REDACTED:EXACT] and AcmeCorp, [REDACTED:EXACT]Corp");
    // Evasion applies to dictionaries too.
    assert_eq!(e.redact("Ｐｒｏｊｅｃｔ Falcon").text, "[REDACTED:CODENAME]");
}

#[test]
fn dictionary_with_thousands_of_terms() {
    let terms: Vec<String> = (0..5000).map(|i| format!("\"customer{i:05}\"")).collect();
    let e = with(&format!(r#"{{"dictionaries": [{{"name": "customers", "terms": [{}]}}]}}"#, terms.join(",")));
    assert!(e.summary().contains("1 dictionary (5000 terms)"));
    let r = e.redact("Customer04999 and customer00000, not customer000001 or xcustomer00001");
    assert_eq!(r.text, "[REDACTED:CUSTOMERS] and [REDACTED:CUSTOMERS], not customer000001 or xcustomer00001");
}

#[test]
fn custom_rules_match_and_respect_max_len() {
    let e = with(
        r#"{"rules": [{"name": "ticket", "pattern": "\\bINC-[0-9]{6}\\b", "action": "mask"}, {"name": "long", "pattern": "Z+", "max_len": 3}]}"#,
    );
    let r = e.redact("see INC-123456 and INC-1234567; ZZZ ZZZZ");
    assert_eq!(r.text, "see [REDACTED:TICKET] and INC-1234567; [REDACTED:LONG] ZZZZ");
    // Streams hold back max_len bytes for rules.
    let s = e.scan("aaaa aaaa aaaa", 0, End::More);
    // The whole text is shorter than the rule's default max_len (128): nothing is settled.
    assert_eq!(s.settled, 0);
}

#[test]
fn field_rules_mask_whole_values_by_key() {
    let e = engine();
    for (key, masked) in [
        ("password", true),
        ("Password", true),
        ("db_password", true),
        ("dbPassword", true),
        ("API-Key", true),
        ("client_secret", true),
        ("ssn", true),
        ("bypassword", false),
        ("token", false),
        ("content", false),
        ("passwords_count", false),
    ] {
        let r = e.redact_field(Some(key), "anything at all");
        assert_eq!(r.text != "anything at all", masked, "{key}");
    }
    assert_eq!(e.redact_field(Some("password"), "").text, "");
    assert_eq!(e.redact_field(None, "mail a@example.com").text, "mail [REDACTED:EMAIL]");
    let r = e.redact_field(Some("api_key"), "x");
    assert_eq!(spans(&r.findings), [("field:api_key", 0, 1)]);
    // Configured keys and action; an empty list turns field rules off.
    let e = with(r#"{"field_rules": {"keys": ["pin"], "action": "partial", "keep_last": 1}}"#);
    assert_eq!(e.redact_field(Some("PIN"), "1234").text, "***4");
    assert_eq!(e.redact_field(Some("password"), "hunter").text, "hunter");
    let e = with(r#"{"field_rules": {"keys": []}}"#);
    assert_eq!(e.redact_field(Some("password"), "hunter").text, "hunter");
    // A block inside a field value still blocks.
    let e = with(r#"{"detectors": {"private_key": {"action": "block"}}}"#);
    let r = e.redact_field(Some("secret"), "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----");
    assert_eq!(r.blocked_by().map(|f| f.detector.as_ref()), Some("private_key"));
}

#[test]
fn scan_holds_back_only_what_could_still_match() {
    let e = engine();
    for (text, held) in [
        ("ordinary prose ends here. ", ""),
        ("ordinary prose ends here", "here"),
        ("the token is gh", "gh"),
        ("paste the key:\n-----BEGIN", "-----BEGIN"),
        (
            "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA0Z3VS5JJcds3xfn\n",
            "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA0Z3VS5JJcds3xfn\n",
        ),
        ("write to jane.doe", "jane.doe"),
        ("write to jane.doe@exa", "jane.doe@exa"),
        ("card 4111 1111", "4111 1111"),
        ("call (", "("),
        ("total: 42.", "42."),
        ("done.\n\n", ""),
        ("中文 and emoji 🎉", ""),
        // A `%` or `&` sequence cut short is held until it is complete.
        ("write to jane&#6", "jane&#6"),
        ("up 50%", "50%"),
        ("Tom &", "&"),
        ("AT&amp;T ", ""),
    ] {
        let s = e.scan(text, 0, End::More);
        assert_eq!(&text[s.settled..], held, "{text:?}");
        assert!(s.findings.iter().all(|f| f.end <= s.settled));
        let f = e.scan(text, 0, End::Final);
        assert_eq!(f.settled, text.len());
    }
}

#[test]
fn scan_uses_left_context_but_never_reports_before_from() {
    let e = engine();
    let text = "SSN: 123456789 next";
    // The label is in released context; the value is not.
    let s = e.scan(text, 5, End::Final);
    assert_eq!(spans(&s.findings), [("us_ssn", 5, 14)]);
    // A match that started in released context is not reported.
    let s = e.scan(text, 6, End::Final);
    assert!(s.findings.is_empty());
    // `from` past the end or inside a character is clamped to a char boundary.
    let s = e.scan("a\u{e9} 4111111111111111", 2, End::Final);
    assert_eq!(spans(&s.findings), [("credit_card", 4, 20)]);
    let s = e.scan("\u{e9}", 1, End::More);
    assert_eq!(s.settled, 2);
    let s = e.scan("abc", 99, End::Final);
    assert_eq!(s.settled, 3);
    assert!(e.max_left_context() >= 64);
}

#[test]
fn a_finding_never_straddles_the_settled_point() {
    let e = engine();
    // The email is complete, but "x" after it may be the start of another local part.
    let text = "jane@example.com x";
    let s = e.scan(text, 0, End::More);
    assert_eq!(spans(&s.findings), [("email", 0, 16)]);
    assert_eq!(s.settled, 17);
    // Settled text renders on its own.
    let mut out = String::new();
    e.render(&text[..s.settled], &s.findings, &mut out);
    assert_eq!(out, "[REDACTED:EMAIL] ");
}

#[test]
fn render_skips_findings_it_cannot_apply() {
    let e = engine();
    let f = |start, end| Finding { detector: Arc::from("email"), start, end, action: Action::Mask };
    let mut out = String::new();
    e.render("héllo world", &[f(0, 2), f(1, 3), f(2, 5), f(7, 99), f(7, 12)], &mut out);
    // (0, 2) cuts 'é'; (2, 5) overlaps the applied (1, 3); (7, 99) is out of range.
    assert_eq!(out, "h[REDACTED:EMAIL]llo [REDACTED:EMAIL]");
    // Unknown detector names are upper-cased; block and report leave text alone.
    let mut out = String::new();
    let g = Finding { detector: Arc::from("custom"), start: 0, end: 1, action: Action::Mask };
    let b = Finding { detector: Arc::from("custom"), start: 2, end: 3, action: Action::Block };
    e.render("a b c", &[g, b], &mut out);
    assert_eq!(out, "[REDACTED:CUSTOM] b c");
}

#[test]
fn redaction_is_idempotent_on_examples() {
    let e = engine();
    let text = "SSN 123-45-6789, jane@example.com, password: hunter2, AKIAIOSFODNN7Q2MZ9VK, +44 20 7946 0958";
    let once = e.redact(text).text;
    assert_eq!(e.redact(&once).text, once);
    assert!(e.find_all(&once).is_empty(), "{once}");
}

#[test]
fn specific_credentials_win_over_generic_matches() {
    let e = engine();
    assert_eq!(
        spans(&e.find_all("https://ghp_u8jzPde0IgxLd6GncfBAepfJBd0Kh8oOOL8d@github.com/x")),
        [("github_token", 8, 48)]
    );
    let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl";
    assert_eq!(spans(&e.find_all(&format!("Authorization: Bearer {jwt}"))), [("jwt", 22, 22 + jwt.len())]);
    assert_eq!(spans(&e.find_all("api_key = \"sk_live_1CiAhzCueQpBenQtYh5Xj8TP\"")), [("stripe_key", 11, 43)]);
}

#[test]
fn contains_either_agrees_with_a_plain_search() {
    // Every length around the 16-byte step, the byte at every position, and bytes that differ
    // from the targets in one bit (which a loose SWAR test would confuse with them).
    for len in 0..40 {
        for pos in 0..=len {
            for fill in [b'a', b'Y', b'_', b'\\', 0x00, 0xDB, 0xFF] {
                let mut v = vec![fill; len];
                if pos < len {
                    v[pos] = if pos % 2 == 0 { b'[' } else { b']' };
                }
                let want = v.iter().any(|&c| c == b'[' || c == b']');
                assert_eq!(crate::swar::contains_either(&v, b'[', b']'), want, "{v:?}");
            }
        }
    }
}

#[test]
fn values_are_found_at_every_offset_of_the_scan_window() {
    // The scanner takes 64 bytes at a time: put each value across every window boundary, after
    // plain padding and after padding full of anchors (digits, dashes, colons, curly quotes).
    let e = engine();
    let samples = [
        ("credit_card", "4111 1111 1111 1111"),
        ("credit_card", "4111111111111111"),
        ("us_ssn", "123-45-6789"),
        ("phone", "(415) 555-2671"),
        ("phone", "+44 20 7946 0958"),
        ("ipv4", "10.1.2.3"),
        ("ipv6", "2001:db8::8a2e:370:7334"),
        ("email", "jane.doe@example.com"),
        ("github_token", "ghp_abcdefghijklmnopqrstuvwxyz0123456789"),
        ("openai_api_key", "sk-proj-abcdefghij0123456789abcdefghij"),
        ("aws_access_key_id", "AKIAIOSFODNN7Q2MZ9VK"),
        ("iban", "DE89370400440532013000"),
        // Disguised: the folded text is shorter, and offsets map back through the window.
        ("credit_card", "4111.1111.1111.1111"),
        ("credit_card", "٤١١١ ١١١١ ١١١١ ١١١١"),
        ("email", "jane%40example&#46;com"),
        ("email", "jane\u{200E}.doe﹫example。com"),
    ];
    let noisy = "ab -- 12: x=1 “q” 3.5 de ";
    for (det, value) in samples {
        for pad in 0..140 {
            let long = noisy.repeat(pad / noisy.len() + 1);
            for filler in [" ".repeat(pad), long.get(..pad).unwrap_or_default().to_string()] {
                if filler.len() != pad {
                    continue; // `pad` falls inside a curly quote
                }
                // A word between: a number just before a phone number could be its trunk prefix.
                let text = format!("{filler} x {value} end");
                let start = pad + 3;
                let found = e.find_all(&text);
                assert!(
                    found
                        .iter()
                        .any(|f| f.detector.as_ref() == det && (f.start, f.end) == (start, start + value.len())),
                    "{det} at {start} in {text:?}: {found:?}"
                );
            }
        }
    }
}

#[test]
fn long_digit_and_dash_runs_hide_nothing_after_them() {
    // Runs longer than a scan window are passed over whole; what follows is still scanned.
    let e = engine();
    for run in [b'7', b'-'] {
        for len in [1, 20, 21, 63, 64, 65, 127, 128, 129, 1000] {
            let text = format!("{} jane@example.com 10.1.2.3", String::from(run as char).repeat(len));
            let found: Vec<_> = e.find_all(&text).iter().map(|f| f.detector.to_string()).collect();
            assert_eq!(found, ["email", "ipv4"], "{len} x {:?}", run as char);
        }
    }
}

#[test]
fn connection_strings_end_at_the_at_before_the_host() {
    let e = engine();
    for (text, want) in [
        ("postgres://app:s3cret@db.internal:5432/app", Some("app:s3cret")),
        // An '@' in the password, escaped (as it should be) or not.
        ("mongodb+srv://admin:p%40ssw0rd@cluster0.mongodb.net/test", Some("admin:p%40ssw0rd")),
        ("postgres://app:p@ss@db.internal/app", Some("app:p@ss")),
        ("redis://:pa&#64;ss@[::1]:6379/0", Some(":pa&#64;ss")),
        // The userinfo runs to the last '@' before a host, whatever the password holds.
        ("https://u:p@x@y@ z", Some("u:p@x")),
        ("postgres://svc:(x7$Lk9*Qa@db.local:5432/app", Some("svc:(x7$Lk9*Qa")),
        ("mysql://etl:@r4T#w2@Kp9@10.0.0.5/dw", Some("etl:@r4T#w2@Kp9")),
        ("amqp://guest:g?u#e$t!@rabbit.internal", Some("guest:g?u#e$t!")),
        // A port and a query, a path: no userinfo.
        ("https://host.example:8080?to=a@b.example", None),
        ("https://host.example:8080/users/@alice", None),
        ("https://u:${DB_PASS}@db.example", None),
        // No password, or no host after the '@'.
        ("https://user@host.example:8080/", None),
        ("https://u:p@/path", None),
        ("https://u:p@[REDACTED:EMAIL]", None),
    ] {
        let got: Vec<&str> = e
            .find_all(text)
            .iter()
            .filter(|f| f.detector.as_ref() == "connection_string")
            .map(|f| &text[f.start..f.end])
            .collect();
        assert_eq!(got, want.into_iter().collect::<Vec<_>>(), "{text}");
    }
}
