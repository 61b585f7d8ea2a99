//! The shapes real answers take (issue 15): passwords that start with punctuation or are quoted,
//! labels as configuration files and code write them, connection strings whose password holds
//! what URLs forbid, JSON escapes left visible in prose, bad IBANs that must not lose their
//! digits to other detectors, every family of each vendor's token, phone numbers as bare digit
//! runs in a contact context, and placeholders that are left alone.
//!
//! Each case is the text and what redaction must make of it; decoys come out unchanged. Every case
//! runs one shot, through `redact_field`, and streamed split at every point and one byte at a time,
//! which must all agree.

mod common;

use inferguard::detect::{DetectConfig, Engine};

/// (name, text, redacted text, detectors found in order).
type Case = (&'static str, &'static str, &'static str, &'static [&'static str]);

const PASSWORDS: &[Case] = &[
    (
        "quoted, opening paren",
        r#"password: "(Tq8#vLw2!mZ""#,
        r#"password: "[REDACTED:PASSWORD_ASSIGNMENT]""#,
        &["password_assignment"],
    ),
    (
        "env, percent signs",
        r#"DB_PASSWORD="%%x9Kp$2rQ""#,
        r#"DB_PASSWORD="[REDACTED:PASSWORD_ASSIGNMENT]""#,
        &["password_assignment"],
    ),
    (
        "passwd, star",
        r#"passwd = "*7hG(kk2Lm""#,
        r#"passwd = "[REDACTED:PASSWORD_ASSIGNMENT]""#,
        &["password_assignment"],
    ),
    (
        "camel label, ampersand, to whitespace",
        "PassWord:&k2P(vn9*W next",
        "PassWord:[REDACTED:PASSWORD_ASSIGNMENT] next",
        &["password_assignment"],
    ),
    ("pwd, bang", "Pwd=!Zr+4(qT8mN", "Pwd=[REDACTED:PASSWORD_ASSIGNMENT]", &["password_assignment"]),
    (
        "single quotes hold spaces",
        "pass = 'a b(c)d e'",
        "pass = '[REDACTED:PASSWORD_ASSIGNMENT]'",
        &["password_assignment"],
    ),
    ("dash label", "db-password: Qz!(8vv)x", "db-password: [REDACTED:PASSWORD_ASSIGNMENT]", &["password_assignment"]),
    (
        "sentence comma",
        "Use password: Kp9$w(2x, then log in.",
        "Use password: [REDACTED:PASSWORD_ASSIGNMENT], then log in.",
        &["password_assignment"],
    ),
    (
        "ado string",
        "Server=db;Password=(s3cr#t;Trusted=no",
        "Server=db;Password=[REDACTED:PASSWORD_ASSIGNMENT];Trusted=no",
        &["password_assignment"],
    ),
    // Decoys: calls, indexes, templates, references.
    ("call", "password = getpass()", "password = getpass()", &[]),
    ("dotted call", "password = vault.read(path)", "password = vault.read(path)", &[]),
    ("index", r#"password = os.environ["DB_PASSWORD"]"#, r#"password = os.environ["DB_PASSWORD"]"#, &[]),
    ("angle template", "password: <your password>", "password: <your password>", &[]),
    ("shell reference", "password=$DB_PASS", "password=$DB_PASS", &[]),
    ("braced reference", r#"password: "${DB_PASS}""#, r#"password: "${DB_PASS}""#, &[]),
    ("windows variable", "password=%DB_PASS%", "password=%DB_PASS%", &[]),
    ("parenthesised word", "password: (hidden)", "password: (hidden)", &[]),
];

const LABELS: &[Case] = &[
    (
        "aws dashed",
        "aws-secret-access-key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYzz9AB1Q3xQ",
        "aws-secret-access-key = [REDACTED:AWS_SECRET_ACCESS_KEY]",
        &["aws_secret_access_key"],
    ),
    (
        "aligned toml",
        "db_password      = \"hunter22x\"\nport             = 5432",
        "db_password      = \"[REDACTED:PASSWORD_ASSIGNMENT]\"\nport             = 5432",
        &["password_assignment"],
    ),
    (
        "aligned yaml",
        "api_key:            k8s9Xq2LmN4pR7tZ\nregion:             eu-west-1",
        "api_key:            [REDACTED:PASSWORD_ASSIGNMENT]\nregion:             eu-west-1",
        &["password_assignment"],
    ),
    (
        "hcl tabs",
        "secret_key\t\t= \"Zq7vN2mK9pL4xR8w\"",
        "secret_key\t\t= \"[REDACTED:PASSWORD_ASSIGNMENT]\"",
        &["password_assignment"],
    ),
    (
        "go var with type",
        r#"var gitlabToken string = "Zx81kLmP0qRs7TuV""#,
        r#"var gitlabToken string = "[REDACTED:PASSWORD_ASSIGNMENT]""#,
        &["password_assignment"],
    ),
    (
        "ts field with type",
        r#"apiKey: string = "Q9w8E7r6T5y4U3i2";"#,
        r#"apiKey: string = "[REDACTED:PASSWORD_ASSIGNMENT]";"#,
        &["password_assignment"],
    ),
    (
        "js object",
        r#"{ apiKey: "Q9w8E7r6T5y4U3i2" }"#,
        r#"{ apiKey: "[REDACTED:PASSWORD_ASSIGNMENT]" }"#,
        &["password_assignment"],
    ),
    (
        "php array",
        r#"'token' => 'a1B2c3D4e5F6g7H8',"#,
        r#"'token' => '[REDACTED:PASSWORD_ASSIGNMENT]',"#,
        &["password_assignment"],
    ),
    // Decoys: labels that name no secret.
    ("public token", r#"publicToken: "pk_1234567890abcdef""#, r#"publicToken: "pk_1234567890abcdef""#, &[]),
    ("csrf token", r#"csrf-token = "8f7e6d5c4b3a29180706""#, r#"csrf-token = "8f7e6d5c4b3a29180706""#, &[]),
    (
        "xsrf token",
        r#"<meta name="x" content="1"> XSRF_TOKEN=9a8b7c6d5e4f3a2b"#,
        r#"<meta name="x" content="1"> XSRF_TOKEN=9a8b7c6d5e4f3a2b"#,
        &[],
    ),
    ("next page token", r#""nextPageToken": "CAUQAA2024xyz""#, r#""nextPageToken": "CAUQAA2024xyz""#, &[]),
    ("nonce", r#"nonce: "a8f7e6d5c4b3a2918""#, r#"nonce: "a8f7e6d5c4b3a2918""#, &[]),
    ("max tokens", "max_tokens = 4096", "max_tokens = 4096", &[]),
];

const CONNECTION_STRINGS: &[Case] = &[
    (
        "unencoded punctuation",
        "postgres://svc:(x7$Lk9*Qa@db.local:5432/app",
        "postgres://[REDACTED:CONNECTION_STRING]@db.local:5432/app",
        &["connection_string"],
    ),
    (
        "at signs and hash",
        "mysql://etl:@r4T#w2@Kp9@10.0.0.5/dw",
        "mysql://[REDACTED:CONNECTION_STRING]@[REDACTED:IPV4]/dw",
        &["connection_string", "ipv4"],
    ),
    (
        "question mark",
        "amqp://guest:g?u#e$t!@rabbit.internal:5672",
        "amqp://[REDACTED:CONNECTION_STRING]@rabbit.internal:5672",
        &["connection_string"],
    ),
    (
        "quoted in code",
        r#"url = "redis://:Zp(9)x@cache:6379/0""#,
        r#"url = "redis://[REDACTED:CONNECTION_STRING]@cache:6379/0""#,
        &["connection_string"],
    ),
    // Decoys: a port and a query, a path with an '@', a template.
    ("port and query", "https://host.example:8080?to=a", "https://host.example:8080?to=a", &[]),
    ("path with at", "https://example.com/users/@alice", "https://example.com/users/@alice", &[]),
    ("template", "postgres://app:${DB_PASS}@db.internal/app", "postgres://app:${DB_PASS}@db.internal/app", &[]),
];

const JSON_ESCAPES: &[Case] = &[
    ("escaped at", r#"{"email": "ana\u0040shop.example"}"#, r#"{"email": "[REDACTED:EMAIL]"}"#, &["email"]),
    (
        "escaped at and dot",
        r#"write to ana\u0040shop\u002eexample today"#,
        "write to [REDACTED:EMAIL] today",
        &["email"],
    ),
    (
        "escaped slashes",
        r#""https:\/\/hooks.slack.com\/services\/T0A1B2C3D\/B0A1B2C3D\/abcdefghijklmnopqrstuvwx""#,
        r#""[REDACTED:SLACK_WEBHOOK]""#,
        &["slack_webhook"],
    ),
    (
        "escaped digits",
        r#"card 4111\u00201111 is not folded, but \u0034111111111111111 is"#,
        r#"card 4111\u00201111 is not folded, but [REDACTED:CREDIT_CARD] is"#,
        &["credit_card"],
    ),
    // Decoys: escapes of other characters, and a lone backslash.
    ("newline escapes", r#"line one\nline two\tand \u00e9t\u00e9"#, r#"line one\nline two\tand \u00e9t\u00e9"#, &[]),
    ("windows path", r"C:\Users\ana\u0041pp", r"C:\Users\ana\u0041pp", &[]),
];

const BAD_IBANS: &[Case] = &[
    // Each failed mod-97, and each once lost digits to the card or phone detector.
    ("card inside", "IBAN DE00 4111 1111 1111 1111 11 rejected", "IBAN DE00 4111 1111 1111 1111 11 rejected", &[]),
    (
        "phone inside",
        "IBAN FR00 3000 6000 0112 3456 7890 189 rejected",
        "IBAN FR00 3000 6000 0112 3456 7890 189 rejected",
        &[],
    ),
    ("belgian length", "compte BE00 0247 3188 65 refusé", "compte BE00 0247 3188 65 refusé", &[]),
    ("dashes", "IBAN DE00-4111-1111-1111-1111-11", "IBAN DE00-4111-1111-1111-1111-11", &[]),
    // A good one after a bad one is still found.
    (
        "good after bad",
        "DE00 4111 1111 1111 1111 11, then DE89 3704 0044 0532 0130 00",
        "DE00 4111 1111 1111 1111 11, then [REDACTED:IBAN]",
        &["iban"],
    ),
];

const VENDOR_FAMILIES: &[Case] = &[
    (
        "gitlab routable",
        "token glpat-aBcDeFgHiJkLmNoPqRsTuVwX.01.0g1h2i3j4 end",
        "token [REDACTED:GITLAB_TOKEN] end",
        &["gitlab_token"],
    ),
    (
        "gitlab routable at sentence end",
        "use glpat-aBcDeFgHiJkLmNoPqRsTuVwX.",
        "use [REDACTED:GITLAB_TOKEN].",
        &["gitlab_token"],
    ),
    ("gitlab runner", "glrt-t1_aBcDeFgHiJkLmNoPqRsT", "[REDACTED:GITLAB_TOKEN]", &["gitlab_token"]),
    (
        "gitlab runner registration",
        "--registration-token GR1348941aBcDeFgHiJkLmNoPqRsT",
        "--registration-token [REDACTED:GITLAB_TOKEN]",
        &["gitlab_token"],
    ),
    (
        "gitlab deploy, feed, trigger, job",
        "gldt-Zx81kLmP0qRs7TuVwXyZ glft-Zx81kLmP0qRs7TuVwXyZ glptt-Zx81kLmP0qRs7TuVwXyZ glcbt-64_Zx81kLmP0qRs7TuVwXyZ",
        "[REDACTED:GITLAB_TOKEN] [REDACTED:GITLAB_TOKEN] [REDACTED:GITLAB_TOKEN] [REDACTED:GITLAB_TOKEN]",
        &["gitlab_token", "gitlab_token", "gitlab_token", "gitlab_token"],
    ),
    (
        "gitlab session cookie",
        "Cookie: _gitlab_session=0123456789abcdef0123456789abcdef",
        "Cookie: _gitlab_session=[REDACTED:GITLAB_TOKEN]",
        &["gitlab_token"],
    ),
    ("slack rotating", "xoxe.xoxp-1-Mi0yLTE3ODMzNjM0NzE2MjMtMTc4MzM2", "[REDACTED:SLACK_TOKEN]", &["slack_token"]),
    ("slack client", "d=xoxc-1234567890-abcdefghij", "d=[REDACTED:SLACK_TOKEN]", &["slack_token"]),
    (
        "slack webhook without scheme",
        "post to hooks.slack.com/services/T0A1B2C3D/B0A1B2C3D/abcdefghijklmnopqrstuvwx now",
        "post to [REDACTED:SLACK_WEBHOOK] now",
        &["slack_webhook"],
    ),
    ("uatp card", "UATP 135412345678911 on file", "UATP [REDACTED:CREDIT_CARD] on file", &["credit_card"]),
    ("iban with dashes", "IBAN DE89-3704-0044-0532-0130-00.", "IBAN [REDACTED:IBAN].", &["iban"]),
    ("ssn with dots", "SSN 123.45.6789 on file", "SSN [REDACTED:US_SSN] on file", &["us_ssn"]),
    (
        "ssn after 'is'",
        "Her social security number is 234567890.",
        "Her social security number is [REDACTED:US_SSN].",
        &["us_ssn"],
    ),
    // Decoys.
    ("uatp-shaped order number", "order 135412345678912", "order 135412345678912", &[]),
    ("dotted version", "release 123.45.6789 of the tool", "release 123.45.6789 of the tool", &[]),
    ("nine digits without the label", "ticket 234567890 closed", "ticket 234567890 closed", &[]),
    ("slack docs page", "see api.slack.com/messaging/webhooks", "see api.slack.com/messaging/webhooks", &[]),
];

const BARE_PHONES: &[Case] = &[
    ("fr, call her on", "you can call her on 0247318865 tomorrow", "you can call her on [REDACTED:PHONE] tomorrow", &["phone"]),
    ("us, office line", "the office line is 2125559183.", "the office line is [REDACTED:PHONE].", &["phone"]),
    ("us, trunk one", "Dial 14155552671 from the lobby", "Dial [REDACTED:PHONE] from the lobby", &["phone"]),
    ("de, landline and mobile", "Sie erreichen mich unter 03012345678 oder mobil 015112345678.", "Sie erreichen mich unter [REDACTED:PHONE] oder mobil [REDACTED:PHONE].", &["phone", "phone"]),
    ("fr, appeler", "Vous pouvez appeler le 0612345678 demain.", "Vous pouvez appeler le [REDACTED:PHONE] demain.", &["phone"]),
    ("uk, alone after an announcing line", "For urgent matters, ring the duty manager:\n07700900123\nThanks.", "For urgent matters, ring the duty manager:\n[REDACTED:PHONE]\nThanks.", &["phone"]),
    ("table column headed Phone", "| Name | Role | Phone |\n|------|------|-------|\n| Ana  | Ops  | 2125559183 |\n| Bo   | Dev  | 4155552671 |", "| Name | Role | Phone |\n|------|------|-------|\n| Ana  | Ops  | [REDACTED:PHONE] |\n| Bo   | Dev  | [REDACTED:PHONE] |", &["phone", "phone"]),
    ("table column headed Tel", "| Tel | Ort |\n|---|---|\n| 0891234567 | München |", "| Tel | Ort |\n|---|---|\n| [REDACTED:PHONE] | München |", &["phone"]),
    // Decoys: no contact word, another column, another sentence, outside the numbering plans.
    ("epoch", "created at 1712345678 (epoch)", "created at 1712345678 (epoch)", &[]),
    ("order and id", "order 2125559183, id 4155552671.", "order 2125559183, id 4155552671.", &[]),
    ("other column", "| Name | Order | Phone |\n|---|---|---|\n| Ana | 2125559183 | n/a |", "| Name | Order | Phone |\n|---|---|---|\n| Ana | 2125559183 | n/a |", &[]),
    ("word in an earlier sentence", "Call me later. Order 2125559183 shipped.", "Call me later. Order 2125559183 shipped.", &[]),
    ("not alone on its line", "Phone numbers below:\n2125559183 is the order", "Phone numbers below:\n2125559183 is the order", &[]),
    ("nanp exchange 1", "call 2121559183 now", "call 2121559183 now", &[]),
    ("trunk zero twice", "call 0012345678 now", "call 0012345678 now", &[]),
];

const PLACEHOLDERS: &[Case] = &[
    (
        "aws documented keys",
        "aws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "aws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        &["placeholder", "placeholder"],
    ),
    (
        "github run of x",
        "export GITHUB_TOKEN=ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        "export GITHUB_TOKEN=ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        &["placeholder"],
    ),
    (
        "google run of a",
        "key=AIzaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "key=AIzaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        &["placeholder"],
    ),
    ("gitlab run of X", "glpat-XXXXXXXXXXXXXXXXXXXX", "glpat-XXXXXXXXXXXXXXXXXXXX", &["placeholder"]),
    (
        "pem without base64",
        "-----BEGIN RSA PRIVATE KEY-----\n...your key here...\n-----END RSA PRIVATE KEY-----",
        "-----BEGIN RSA PRIVATE KEY-----\n...your key here...\n-----END RSA PRIVATE KEY-----",
        &["placeholder"],
    ),
    // Real values beside them are still found.
    (
        "real beside example",
        "AKIAIOSFODNN7EXAMPLE then AKIAZ3MSJV4WWNKWW5FK",
        "AKIAIOSFODNN7EXAMPLE then [REDACTED:AWS_ACCESS_KEY_ID]",
        &["placeholder", "aws_access_key_id"],
    ),
    ("mixed body is real", "ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx1", "[REDACTED:GITHUB_TOKEN]", &["github_token"]),
];

fn engine() -> Engine {
    Engine::new(&DetectConfig::default()).unwrap()
}

fn check(cases: &[Case]) {
    let e = engine();
    for &(name, text, want, dets) in cases {
        let r = e.redact(text);
        assert_eq!(r.text, want, "{name}: {text:?}");
        let found: Vec<&str> = r.findings.iter().map(|f| f.detector.as_ref()).collect();
        assert_eq!(found, dets, "{name}");
        assert_eq!(e.redact_field(None, text), r, "{name}: redact_field");
        common::assert_streams_as_whole(&e, name, text, &r);
    }
}

#[test]
fn passwords_that_start_with_punctuation_or_are_quoted() {
    check(PASSWORDS);
}

#[test]
fn labels_as_configuration_files_and_code_write_them() {
    check(LABELS);
}

#[test]
fn connection_strings_with_unencoded_passwords() {
    check(CONNECTION_STRINGS);
}

#[test]
fn json_escapes_visible_in_text() {
    check(JSON_ESCAPES);
}

#[test]
fn bad_ibans_lose_no_digits_to_other_detectors() {
    check(BAD_IBANS);
}

#[test]
fn every_vendor_token_family_to_its_last_character() {
    check(VENDOR_FAMILIES);
}

#[test]
fn phone_numbers_as_bare_digit_runs_in_a_contact_context() {
    check(BARE_PHONES);
}

#[test]
fn placeholders_are_left_alone_and_reported() {
    check(PLACEHOLDERS);
}

#[test]
fn placeholders_count_in_the_audit_and_change_nothing() {
    let e = engine();
    let mut audit = inferguard::DirectionAudit::default();
    audit.count(&e.find_all("use ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx and AKIAIOSFODNN7EXAMPLE"));
    assert_eq!(audit.findings.get("placeholder"), Some(&2));
    assert_eq!(audit.actions.get("report"), Some(&2));
    assert!(!audit.redacted());
}

#[test]
fn placeholders_redact_setting_finds_them_as_values() {
    let cfg = inferguard::policy::Config::parse(r#"{"detect": {"placeholders": "redact"}}"#).unwrap();
    let e = Engine::new(&cfg.default.detect).unwrap();
    let r = e.redact("key AKIAIOSFODNN7EXAMPLE, token ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
    assert_eq!(r.text, "key [REDACTED:AWS_ACCESS_KEY_ID], token [REDACTED:GITHUB_TOKEN]");
    let bad = inferguard::policy::Config::parse(r#"{"detect": {"placeholders": "maybe"}}"#);
    assert!(bad.is_err());
}
