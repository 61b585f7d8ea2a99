//! Disguised spellings inside a value (issue 10, class 9): card numbers grouped with dots.
//!
//! Each case is the text and what redaction must make of it: a disguised value is found by its
//! detector and replaced whole, disguises included; a decoy comes out unchanged. Every case runs
//! through `redact`, `redact_field` and the streaming scan split at every point and in one-byte
//! chunks, which must all agree.

mod common;

use inferguard::detect::{DetectConfig, Engine};

/// (name, text, redacted text, detectors found in order).
type Case = (&'static str, &'static str, &'static str, &'static [&'static str]);

const DOTTED_CARDS: &[Case] = &[
    ("visa", "card 4111.1111.1111.1111 ok", "card [REDACTED:CREDIT_CARD] ok", &["credit_card"]),
    (
        "mastercard at the end of a sentence",
        "Pay with 5555.5555.5555.4444.",
        "Pay with [REDACTED:CREDIT_CARD].",
        &["credit_card"],
    ),
    ("amex", "3782.822463.10005", "[REDACTED:CREDIT_CARD]", &["credit_card"]),
    ("fullwidth dots", "4111．1111．1111．1111", "[REDACTED:CREDIT_CARD]", &["credit_card"]),
    // Decoys: Luhn still decides, and other dotted numbers are not cards.
    ("luhn fails", "4111.1111.1111.1112", "4111.1111.1111.1112", &[]),
    ("one group more", "4111.1111.1111.1111.5", "4111.1111.1111.1111.5", &[]),
    ("glued to a word", "v4111.1111.1111.1111", "v4111.1111.1111.1111", &[]),
    ("mixed separators", "4111.1111-1111 1111", "4111.1111-1111 1111", &[]),
    ("dates and decimals", "on 2024.01.15 at 1234.5678 or 3.14159", "on 2024.01.15 at 1234.5678 or 3.14159", &[]),
    ("versions", "v1.2.3, 10.0.19041.1, 2023.1.4", "v1.2.3, 10.0.19041.1, 2023.1.4", &[]),
    ("an ip is an ip", "host 10.0.0.1 up", "host [REDACTED:IPV4] up", &["ipv4"]),
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
        assert_eq!(e.find_field(Some("comment"), text), r.findings, "{name}: find_field");
        let want_found: Vec<(String, usize, usize)> =
            r.findings.iter().map(|f| (f.detector.to_string(), f.start, f.end)).collect();
        // Streamed: split at every point, and one byte at a time.
        for p in (0..=text.len()).filter(|&p| text.is_char_boundary(p)) {
            let (out, found) = common::stream(&e, text, |fed| if fed < p { p } else { text.len() });
            assert_eq!(out, want, "{name}: split at {p}");
            assert_eq!(found, want_found, "{name}: split at {p}");
        }
        let (out, found) = common::stream(&e, text, |fed| fed + 1);
        assert_eq!((out.as_str(), &found), (want, &want_found), "{name}: one byte at a time");
    }
}

#[test]
fn card_numbers_grouped_with_dots() {
    check(DOTTED_CARDS);
}
