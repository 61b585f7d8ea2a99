//! Property tests over generated text (a small in-tree PRNG, so failures reproduce from the
//! printed seed): the streaming contract of `Engine::scan` under random splits, streams of
//! random chunk sizes, idempotence, and planted values found exactly (never grown into their
//! neighbours, never missed).

mod common;

use inferguard::detect::{DetectConfig, End, Engine, Finding};
use inferguard::policy::Config;

/// `INFERGUARD_PROP_SCALE=N` runs N times as many cases (and other seeds) for a longer hunt.
fn cases(n: usize) -> usize {
    n * std::env::var("INFERGUARD_PROP_SCALE").ok().and_then(|v| v.parse().ok()).unwrap_or(1)
}

fn seed(base: u64) -> u64 {
    base ^ std::env::var("INFERGUARD_PROP_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0)
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len())]
    }
}

/// Values with the detector that must find them, and the text that must precede them.
const PLANTED: &[(&str, &str, &str, &str)] = &[
    ("", "jane.doe@example.com", "", "email"),
    ("", "ops+alerts@corp.example.org", "", "email"),
    ("", "4111 1111 1111 1111", "", "credit_card"),
    ("", "4111.1111.1111.1111", "", "credit_card"),
    ("", "٤١١١ ١١١١ ١١١١ ١١١١", "", "credit_card"),
    ("", "jane%40example&#46;com", "", "email"),
    ("", "ops\u{200E}+alerts﹫corp。example.org", "", "email"),
    ("", "5555-5555-5555-4444", "", "credit_card"),
    ("", "378282246310005", "", "credit_card"),
    ("", "123-45-6789", "", "us_ssn"),
    ("SSN: ", "536221234", "", "us_ssn"),
    ("", "DE89 3704 0044 0532 0130 00", "", "iban"),
    ("", "GB82WEST12345698765432", "", "iban"),
    ("", "(415) 555-2671", "", "phone"),
    ("", "+44 20 7946 0958", "", "phone"),
    ("", "+33 1 23 45 67 89", "", "phone"),
    ("", "192.168.1.10", "", "ipv4"),
    ("", "2001:db8::8a2e:370:7334", "", "ipv6"),
    ("", "AKIAIOSFODNN7Q2MZ9VK", "", "aws_access_key_id"),
    ("aws_secret_access_key = ", "wJalrXUtnFEMI/K7MDENG/bPxRfiCY7hQ2mZ9vKd", "", "aws_secret_access_key"),
    ("", "ghp_u8jzPde0IgxLd6GncfBAepfJBd0Kh8oOOL8d", "", "github_token"),
    ("", "glpat-b8DwkNhFdnXsiVpzz63F", "", "gitlab_token"),
    ("", "xoxb-024264628897-5140261401419-2oeq3hDavJA76rNicHTp8hkq", "", "slack_token"),
    ("", "https://hooks.slack.com/services/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", "", "slack_webhook"),
    ("", "sk-proj-n9ZhyiA4uoRgnatmUdjAWtGSU8po-799NksnRH9ucAUsdMlH", "", "openai_api_key"),
    ("", "sk-ant-api03-S5SUkCnD8zRA9a9SkpXz9w3QlY7Zkuvqdt7s8Stqcbnr3yBdGBLEPH1qhT61qtc4", "", "anthropic_api_key"),
    ("", "sk_live_1CiAhzCueQpBenQtYh5Xj8TP", "", "stripe_key"),
    ("", "AIzakv5ZJr3J1TWDtkwtDDb-xHKas1VOqg6YYZY", "", "google_api_key"),
    ("", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl", "", "jwt"),
    ("", "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----", "", "private_key"),
    ("Authorization: Bearer ", "a1b2c3d4e5f6g7h8", "", "bearer_token"),
    ("password = ", "hunter2x", "", "password_assignment"),
    ("postgres://", "app:s3cr3t", "@db.internal", "connection_string"),
];

/// Neighbours that must survive next to a planted value.
const NEIGHBOURS: &[&str] = &[
    "the",
    "skeleton",
    "task-ant",
    "sk-learn",
    "version v1.2.3",
    "2024-01-15",
    "2024.01.15",
    "3.14159",
    "AT&amp;T",
    "50%",
    "١٢٣",
    "❤\u{FE0F}",
    "$1,299.99",
    "550e8400-e29b-41d4-a716-446655440000",
    "order 4111 1111 1111 1112",
    "é",
    "中文",
    "🎉",
    "“quoted”",
    "—",
    "12:30",
    "**bold**",
    "`code`",
    "| cell |",
];

const SEPARATORS: &[&str] = &[" ", "\n", ", ", ". ", "; ", " | ", " (", ") ", "\n\n", "\t"];

/// Random text from fragments that stress the scanner: partial prefixes, labels, digits,
/// evasion characters, values.
fn noise(rng: &mut Rng) -> String {
    const FRAGMENTS: &[&str] = &[
        "the ",
        "a",
        "b",
        "e",
        "x",
        "gh",
        "ghp",
        "_",
        "-",
        "--",
        "-----BEGIN",
        " PRIVATE KEY-----",
        "-----END",
        "sk",
        "sk-",
        "ant",
        "AKIA",
        "AIza",
        "ey",
        "eyJ",
        "J",
        ".",
        "@",
        ":",
        "//",
        "=",
        "password",
        "token",
        "SSN",
        "Bearer ",
        "Authorization: ",
        "(",
        ")",
        "+",
        "+1 ",
        "1",
        "4111",
        " 1111",
        "-1111",
        "123",
        "45",
        "6789",
        "2024",
        "10.",
        "0.0.1",
        "::",
        "db8",
        "DE89",
        " 3704",
        "\n",
        " ",
        "\"",
        "'",
        "`",
        "|",
        "é",
        "中",
        "🎉",
        "\u{200B}",
        "４",
        "１",
        "\u{00A0}",
        "\u{2013}",
        "—",
        "“",
        "jane",
        "example.com",
        "https://",
        "hooks.slack.com/services/",
        "xoxb-",
        "glpat-",
        "\\n",
        "MIIE",
        // Disguises, whole and cut short.
        "%40",
        "%4",
        "%",
        "%2E",
        "%2d",
        "&#64;",
        "&#64",
        "&#6",
        "&#x2e;",
        "&#",
        "&",
        "&commat;",
        "&comm",
        "&amp;",
        "٤",
        "١",
        "𝟏",
        "\u{200E}",
        "\u{202E}",
        "\u{FE0F}",
        "\u{E0041}",
        "\u{FFFD}",
        "﹫",
        "。",
        ".1111",
    ];
    let mut s = String::new();
    for _ in 0..rng.below(60) {
        if rng.below(12) == 0 {
            let (pre, v, post, _) = PLANTED[rng.below(PLANTED.len())];
            s.push_str(pre);
            s.push_str(v);
            s.push_str(post);
        } else {
            s.push_str(rng.pick(FRAGMENTS));
        }
    }
    s
}

fn boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn engines() -> Vec<(&'static str, Engine)> {
    let custom = Config::parse(
        r#"{"detect": {"dictionaries": [{"name": "codename", "terms": ["Project Falcon", "jane", "ant"]}], "rules": [{"name": "ticket", "pattern": "INC-[0-9]{4}", "max_len": 8}], "allowlist": {"domains": ["example.org"]}}}"#,
    )
    .unwrap();
    vec![
        ("default", Engine::new(&DetectConfig::default()).unwrap()),
        ("custom", Engine::new(&custom.default.detect).unwrap()),
    ]
}

#[test]
fn streaming_contract_holds_under_random_splits() {
    for (name, e) in engines() {
        let mut rng = Rng(seed(0x5eed_0001));
        for case in 0..cases(3000) {
            let t = noise(&mut rng);
            let p = boundary(&t, rng.below(t.len() + 1));
            let from = boundary(&t, rng.below(p + 1));
            let whole = e.scan(&t, from, End::Final);
            assert_eq!(whole.settled, t.len());
            let part = e.scan(&t[..p], from, End::More);
            let ctx = format!("{name} case {case}: text {t:?}, split {p}, from {from}");
            assert!(
                part.settled >= from && part.settled <= p && t.is_char_boundary(part.settled),
                "{ctx}: settled {}",
                part.settled
            );
            assert!(part.findings.iter().all(|f| f.start >= from && f.end <= part.settled), "{ctx}");
            let want: Vec<&Finding> = whole.findings.iter().filter(|f| f.start < part.settled).collect();
            let got: Vec<&Finding> = part.findings.iter().collect();
            assert_eq!(got, want, "{ctx}: settled {}", part.settled);
        }
    }
}

#[test]
fn random_chunking_matches_one_shot() {
    for (name, e) in engines() {
        let mut rng = Rng(seed(0x5eed_0002));
        for case in 0..cases(1500) {
            let t = noise(&mut rng);
            let whole = e.redact(&t);
            let want: Vec<(String, usize, usize)> =
                whole.findings.iter().map(|f| (f.detector.to_string(), f.start, f.end)).collect();
            let (out, found) = common::stream(&e, &t, |fed| fed + 1 + rng.below(24));
            assert_eq!(found, want, "{name} case {case}: {t:?}");
            assert_eq!(out, whole.text, "{name} case {case}: {t:?}");
        }
    }
}

#[test]
fn mean_holdback_on_prose_is_small() {
    let e = Engine::new(&DetectConfig::default()).unwrap();
    let prose = "Large language models are trained on vast amounts of text. When you ask a question, the model predicts the next token, one at a time; the answer streams back to you as it is produced. Latency matters, so a filter in the path should release text as soon as it knows the text is safe — typically within a word or two. Numbers such as 42 or 2024, and words like skeleton or task-ant, are harmless.";
    let (mut total, mut n) = (0, 0);
    for p in 1..=prose.len() {
        if !prose.is_char_boundary(p) {
            continue;
        }
        let s = e.scan(&prose[..p], 0, End::More);
        total += p - s.settled;
        n += 1;
    }
    let mean = total as f64 / n as f64;
    assert!(mean < 16.0, "mean holdback {mean:.1} bytes");
    assert!(mean < 8.0, "mean holdback {mean:.1} bytes (expected a word or so)");
}

#[test]
fn redaction_is_idempotent() {
    for (name, e) in engines() {
        let mut rng = Rng(seed(0x5eed_0003));
        for case in 0..cases(3000) {
            let t = noise(&mut rng);
            let once = e.redact(&t).text;
            let twice = e.redact(&once).text;
            assert_eq!(twice, once, "{name} case {case}: {t:?}");
        }
    }
}

#[test]
fn planted_values_are_found_exactly_and_never_grow_into_neighbours() {
    let e = Engine::new(&DetectConfig::default()).unwrap();
    let mut rng = Rng(seed(0x5eed_0004));
    for case in 0..cases(3000) {
        let mut t = String::new();
        let mut want = Vec::new();
        for _ in 0..1 + rng.below(6) {
            if rng.below(2) == 0 {
                t.push_str(rng.pick(NEIGHBOURS));
                t.push_str(rng.pick(SEPARATORS));
            }
            let (pre, v, post, det) = PLANTED[rng.below(PLANTED.len())];
            t.push_str(pre);
            want.push((det.to_string(), t.len(), t.len() + v.len()));
            t.push_str(v);
            t.push_str(post);
            t.push_str(rng.pick(SEPARATORS));
            if rng.below(2) == 0 {
                t.push_str(rng.pick(NEIGHBOURS));
                t.push_str(rng.pick(SEPARATORS));
            }
        }
        let got: Vec<(String, usize, usize)> =
            e.find_all(&t).iter().map(|f| (f.detector.to_string(), f.start, f.end)).collect();
        assert_eq!(got, want, "case {case}: {t:?}");
        // Everything outside the values comes out unchanged.
        let r = e.redact(&t);
        let mut rebuilt = String::new();
        let mut last = 0;
        for (det, s, end) in &want {
            rebuilt.push_str(&t[last..*s]);
            rebuilt.push_str(&format!("[REDACTED:{}]", det.to_uppercase()));
            last = *end;
        }
        rebuilt.push_str(&t[last..]);
        assert_eq!(r.text, rebuilt, "case {case}");
    }
}

#[test]
fn no_input_makes_the_engine_panic() {
    let e = Engine::new(&DetectConfig::default()).unwrap();
    let mut rng = Rng(seed(0x5eed_0005));
    for _ in 0..2000 {
        // Arbitrary bytes made valid UTF-8.
        let bytes: Vec<u8> = (0..rng.below(200)).map(|_| rng.next() as u8).collect();
        let t = String::from_utf8_lossy(&bytes).into_owned();
        for from in [0, 1, t.len() / 2, t.len(), t.len() + 5] {
            let _ = e.scan(&t, from, End::More);
            let _ = e.scan(&t, from, End::Final);
        }
        let _ = e.redact(&t);
        let _ = e.redact_field(Some("password"), &t);
    }
}
