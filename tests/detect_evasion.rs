//! Disguised spellings inside a value (issue 10, class 9): every decimal digit of Unicode,
//! default-ignorable and bidi characters, compatibility forms of `@` and `.`, percent escapes and
//! HTML references, and card numbers grouped with dots.
//!
//! Each case is the text and what redaction must make of it: a disguised value is found by its
//! detector and replaced whole, disguises included; a decoy comes out unchanged. Every case runs
//! through `redact`, `redact_field` and the streaming scan split at every point and in one-byte
//! chunks, which must all agree.

mod common;

use inferguard::detect::{DetectConfig, Engine};

/// (name, text, redacted text, detectors found in order).
type Case = (&'static str, &'static str, &'static str, &'static [&'static str]);

const DIGITS: &[Case] = &[
    ("arabic-indic card", "card ٤١١١ ١١١١ ١١١١ ١١١١ ok", "card [REDACTED:CREDIT_CARD] ok", &["credit_card"]),
    ("extended arabic-indic card", "card ۴۱۱۱۱۱۱۱۱۱۱۱۱۱۱۱.", "card [REDACTED:CREDIT_CARD].", &["credit_card"]),
    ("devanagari ssn", "SSN १२३-४५-६७८९ on file", "SSN [REDACTED:US_SSN] on file", &["us_ssn"]),
    ("bengali phone", "call (৪১৫) ৫৫৫-২৬৭১ now", "call [REDACTED:PHONE] now", &["phone"]),
    ("thai card", "๔๑๑๑-๑๑๑๑-๑๑๑๑-๑๑๑๑", "[REDACTED:CREDIT_CARD]", &["credit_card"]),
    ("math bold card", "𝟒𝟏𝟏𝟏 𝟏𝟏𝟏𝟏 𝟏𝟏𝟏𝟏 𝟏𝟏𝟏𝟏", "[REDACTED:CREDIT_CARD]", &["credit_card"]),
    ("math double-struck card", "𝟜𝟙𝟙𝟙𝟙𝟙𝟙𝟙𝟙𝟙𝟙𝟙𝟙𝟙𝟙𝟙", "[REDACTED:CREDIT_CARD]", &["credit_card"]),
    ("math sans-serif card", "𝟦𝟣𝟣𝟣 𝟣𝟣𝟣𝟣 𝟣𝟣𝟣𝟣 𝟣𝟣𝟣𝟣", "[REDACTED:CREDIT_CARD]", &["credit_card"]),
    ("math monospace ip", "host 𝟷𝟶.𝟷.𝟸.𝟹 up", "host [REDACTED:IPV4] up", &["ipv4"]),
    ("mixed scripts", "4١1१ ๑𝟏1١ 1111 ۱111", "[REDACTED:CREDIT_CARD]", &["credit_card"]),
    ("digit inside a key", "key AKIAIOSFODNN٧Q2MZ9VK", "key [REDACTED:AWS_ACCESS_KEY_ID]", &["aws_access_key_id"]),
    // Decoys: numbers in other scripts are still only numbers.
    ("arabic prose", "السعر ١٢٣ ريال و ٤١١١ ١١١١ ١١١١ ١١١٢", "السعر ١٢٣ ريال و ٤١١١ ١١١١ ١١١١ ١١١٢", &[]),
    ("hindi date", "दिनांक २०२४-०१-१५ को", "दिनांक २०२४-०१-१५ को", &[]),
];

const INVISIBLES: &[Case] = &[
    ("bidi marks", "jane\u{200E}.doe@exam\u{200F}ple.com", "[REDACTED:EMAIL]", &["email"]),
    ("arabic letter mark", "123\u{061C}-45-6789", "[REDACTED:US_SSN]", &["us_ssn"]),
    (
        "embeddings and overrides",
        "4111\u{202A}1111\u{202E}1111\u{202C}1111 x",
        "[REDACTED:CREDIT_CARD] x",
        &["credit_card"],
    ),
    ("isolates", "4111 \u{2066}1111\u{2069} 1111 \u{2067}1111\u{2069} x", "[REDACTED:CREDIT_CARD] x", &["credit_card"]),
    (
        "variation selector in a token",
        "ghp_u8jzPde0IgxLd6Gn\u{FE0F}cfBAepfJBd0Kh8oOOL8d",
        "[REDACTED:GITHUB_TOKEN]",
        &["github_token"],
    ),
    (
        "supplementary variation selector and tags",
        "sk-proj-n9ZhyiA4uoRg\u{E0100}natmUdjAWtGSU8po\u{E0041}\u{E007F}-799NksnRH9ucAUsdMlH",
        "[REDACTED:OPENAI_API_KEY]",
        &["openai_api_key"],
    ),
    ("grapheme joiner", "jane\u{034F}@example.com", "[REDACTED:EMAIL]", &["email"]),
    ("hangul fillers", "jane\u{3164}@exa\u{115F}mple\u{FFA0}.com", "[REDACTED:EMAIL]", &["email"]),
    ("khmer and mongolian", "4111\u{17B4}1111\u{180B}1111\u{180F}1111 x", "[REDACTED:CREDIT_CARD] x", &["credit_card"]),
    ("word joiner", "123\u{2060}-45-6789", "[REDACTED:US_SSN]", &["us_ssn"]),
    ("replacement character", "mail jane\u{FFFD}@example.com", "mail [REDACTED:EMAIL]", &["email"]),
    ("replacement character in a card", "41\u{FFFD}11 1111 1111 1111", "[REDACTED:CREDIT_CARD]", &["credit_card"]),
    // Decoys: emoji sequences, right-to-left prose, a lone replacement character.
    (
        "emoji",
        "ok ❤\u{FE0F} ⚠\u{FE0F} 👍🏽 👨\u{200D}👩\u{200D}👧 🏴\u{E0067}\u{E0062}\u{E007F}",
        "ok ❤\u{FE0F} ⚠\u{FE0F} 👍🏽 👨\u{200D}👩\u{200D}👧 🏴\u{E0067}\u{E0062}\u{E007F}",
        &[],
    ),
    ("rtl prose", "\u{200F}שלום \u{202B}עולם\u{202C} 2024", "\u{200F}שלום \u{202B}עולם\u{202C} 2024", &[]),
    ("lone replacement", "bad byte \u{FFFD} here", "bad byte \u{FFFD} here", &[]),
];

const AT_AND_DOT: &[Case] = &[
    ("small commercial at", "jane﹫example.com", "[REDACTED:EMAIL]", &["email"]),
    ("fullwidth at and dot", "jane＠example．com", "[REDACTED:EMAIL]", &["email"]),
    ("ideographic full stop", "jane@example。com", "[REDACTED:EMAIL]", &["email"]),
    ("halfwidth ideographic full stop", "jane@mail｡example｡com", "[REDACTED:EMAIL]", &["email"]),
    ("small full stop", "jane﹒doe@example﹒com", "[REDACTED:EMAIL]", &["email"]),
    ("one dot leader", "jane@example․com", "[REDACTED:EMAIL]", &["email"]),
    ("all at once", "ｊａｎｅ﹒doe﹫ex\u{200B}ample。ｃｏｍ!", "[REDACTED:EMAIL]!", &["email"]),
    // Decoys: Japanese sentences end in `。`, and an `@` needs a domain.
    ("japanese prose", "ありがとう。またね。", "ありがとう。またね。", &[]),
    ("handle", "ping ﹫channel。", "ping ﹫channel。", &[]),
];

const ENCODED: &[Case] = &[
    ("percent at", "mail jane%40example.com now", "mail [REDACTED:EMAIL] now", &["email"]),
    ("percent dots", "jane.doe%40example%2Ecom", "[REDACTED:EMAIL]", &["email"]),
    ("percent lower case", "ops%2balerts%40corp%2eexample%2eorg", "[REDACTED:EMAIL]", &["email"]),
    ("percent in a url", "?to=jane%2Ddoe%5Fx%40example.com&x=1", "?to=[REDACTED:EMAIL]&x=1", &["email"]),
    (
        "percent in a token",
        "sk%2Dproj-n9ZhyiA4uoRgnatmUdjAWtGSU8po-799NksnRH9ucAUsdMlH",
        "[REDACTED:OPENAI_API_KEY]",
        &["openai_api_key"],
    ),
    ("percent digits", "%34%31%31%31 1111 1111 1111", "[REDACTED:CREDIT_CARD]", &["credit_card"]),
    ("decimal reference", "jane&#64;example.com", "[REDACTED:EMAIL]", &["email"]),
    (
        "hex references",
        "jane&#x40;example&#x2e;com and jo&#X40;example&#X2E;org",
        "[REDACTED:EMAIL] and [REDACTED:EMAIL]",
        &["email", "email"],
    ),
    ("named references", "<p>jane&commat;example&period;com</p>", "<p>[REDACTED:EMAIL]</p>", &["email"]),
    ("references without semicolons", "jane&#64example&#46com", "[REDACTED:EMAIL]", &["email"]),
    ("leading zeros", "jane&#0064;example&#x0002E;com", "[REDACTED:EMAIL]", &["email"]),
    ("digit references", "&#52;&#x31;&#49;&#49; 1111 1111 1111", "[REDACTED:CREDIT_CARD]", &["credit_card"]),
    ("plus and underscore", "ops&plus;x&lowbar;y&#64;example.com", "[REDACTED:EMAIL]", &["email"]),
    (
        "escaped at in a password",
        "mongodb+srv://admin:p%40ssw0rd@cluster0.mongodb.net/test",
        "mongodb+srv://[REDACTED:CONNECTION_STRING]@cluster0.mongodb.net/test",
        &["connection_string"],
    ),
    // Decoys. `100%40` reads as `100@`, which is no email address: the text stays as written.
    ("percent of", "up 100%40 of them, 50%2E5 more, %s and %d%%", "up 100%40 of them, 50%2E5 more, %s and %d%%", &[]),
    ("other escapes", "a%20b %2F %3A %41%42 jane%2540example.com", "a%20b %2F %3A %41%42 jane%2540example.com", &[]),
    ("ampersands", "AT&amp;T, R&D, a && b, &lt;b&gt;, &nbsp;", "AT&amp;T, R&D, a && b, &lt;b&gt;, &nbsp;", &[]),
    ("references to nothing", "x&#64 y, &commat y, &#6412;, &#x40e;", "x&#64 y, &commat y, &#6412;, &#x40e;", &[]),
    ("not decoded twice", "jane&amp;#64;example.com", "jane&amp;#64;example.com", &[]),
    // Cut after `&#64` (which alone would read as `@`), with a folded character before it.
    ("digits run on after a cut", "\u{200E}a@&#646789jane@example.com", "\u{200E}a@&#[REDACTED:EMAIL]", &["email"]),
];

const DOTTED_CARDS: &[Case] = &[
    ("visa", "card 4111.1111.1111.1111 ok", "card [REDACTED:CREDIT_CARD] ok", &["credit_card"]),
    (
        "mastercard at the end of a sentence",
        "Pay with 5555.5555.5555.4444.",
        "Pay with [REDACTED:CREDIT_CARD].",
        &["credit_card"],
    ),
    ("amex", "3782.822463.10005", "[REDACTED:CREDIT_CARD]", &["credit_card"]),
    ("arabic-indic and dots", "٤١١١.١١١١.١١١١.١١١١", "[REDACTED:CREDIT_CARD]", &["credit_card"]),
    ("fullwidth dots", "4111．1111．1111．1111", "[REDACTED:CREDIT_CARD]", &["credit_card"]),
    ("escaped dots", "4111%2E1111&#46;1111&period;1111", "[REDACTED:CREDIT_CARD]", &["credit_card"]),
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
        common::assert_streams_as_whole(&e, name, text, &r);
    }
}

#[test]
fn unicode_digits_fold_to_ascii() {
    check(DIGITS);
}

#[test]
fn invisible_and_bidi_characters_are_dropped() {
    check(INVISIBLES);
}

#[test]
fn compatibility_at_and_dot_fold() {
    check(AT_AND_DOT);
}

#[test]
fn percent_escapes_and_html_references_fold() {
    check(ENCODED);
}

#[test]
fn card_numbers_grouped_with_dots() {
    check(DOTTED_CARDS);
}

#[test]
fn a_finding_covers_every_original_byte_of_the_value() {
    let e = engine();
    for (text, value) in [
        ("to jane%40example&#46;com.", "jane%40example&#46;com"),
        ("to jane\u{200E}﹫example。com.", "jane\u{200E}﹫example。com"),
        ("x ٤١١١.١١١١.١١١١.١١١١ y", "٤١١١.١١١١.١١١١.١١١١"),
        ("x 41\u{200E}11\u{E0100} 1111 1111 111١ y", "41\u{200E}11\u{E0100} 1111 1111 111١"),
        ("x 4111 1111 1111 111&#49; y", "4111 1111 1111 111&#49;"),
    ] {
        let f = e.find_all(text);
        assert_eq!(f.len(), 1, "{text:?}");
        assert_eq!(&text[f[0].start..f[0].end], value);
    }
}

#[test]
fn a_cut_sequence_is_held_until_it_is_complete() {
    use inferguard::detect::End;
    let e = engine();
    for (text, held) in [
        ("write to jane&#6", "jane&#6"),
        ("write to jane&#64", "jane&#64"),
        ("write to jane%4", "jane%4"),
        ("write to jane&comm", "jane&comm"),
        ("AT&", "AT&"),
        ("Tom &", "&"),
        ("up 50%", "50%"),
        ("a && ", ""),
        ("AT&amp;T ", ""),
    ] {
        let s = e.scan(text, 0, End::More);
        assert_eq!(&text[s.settled..], held, "{text:?}");
    }
    // Released text before the cut sequence is not scanned again.
    let s = e.scan("abc &#6", 6, End::More);
    assert_eq!((s.settled, s.findings.len()), (6, 0));
}
