//! Fail-closed, as a property (issue 10): whatever labels a body carries, whatever tolerant
//! JSON an upstream or a client writes, and however the network splits the bytes, for every
//! wire format
//!
//! 1. no planted value reaches what the format's client reassembles, nor the raw bytes with
//!    every JSON escape decoded (so a `\u0040`-escaped survivor is caught);
//! 2. the audit never says `allowed` while a direction went out unscanned, an unscanned direction
//!    always says why, and a body that is text is always scanned;
//! 3. every byte was scanned or refused: a local reply (4xx/5xx, carrying no value) before
//!    anything went out, or one error event that ends the stream, or the whole answer, redacted
//!    exactly as the whole text would be;
//! 4. what goes out exceeds what came in only by what the redaction markers add.
//!
//! The tolerant JSON is what Python's `json` (the SDKs' reader) accepts: `NaN`, `Infinity`,
//! `-Infinity`, `1e400`, lone surrogate escapes, duplicate keys (an earlier duplicate of a member,
//! holding junk: clients keep the last), any character escaped (`\u0040`, `\u002e`, `\/`),
//! whitespace and line breaks between tokens (in SSE a line break continues the data on a new
//! `data:` line; NDJSON lines get none), and nesting: 120 levels must be read, 200 must be
//! refused (a client reads them; the filter's reader stops at 128).
//!
//! Every format of `tests/stream_split.rs` is generated (OpenAI chat with n = 2 and tool calls,
//! legacy completions, Responses, Anthropic, Ollama chat and generate, TGI, SSE with plain-text
//! data, plain text) and the whole answers of each API, under random labels (the right one,
//! another format's, `text/plain`, `text/html`, `application/octet-stream`, `image/png`, none;
//! `charset=utf-8` or not), random SSE line ends (LF, CRLF, CR), `data:` with or without its
//! space, comments and `id:` lines, a leading byte-order mark or blank lines, and random chunk
//! cuts (one chunk, one-byte chunks, 1..=40 cuts anywhere, empty chunks included). Prompts are
//! generated in each API's request shape, with a leading byte-order mark or whitespace, on GET,
//! POST, DELETE and PUT, under misleading labels; and `multipart/form-data` uploads whose text
//! fields, text files and JSON parts hold values next to a binary file.
//!
//! Cases come from a seeded xorshift generator, so every failure replays. A failing case is
//! shrunk (events, then chunk cuts, dropped while the same property still fails) and reported
//! with its bytes, label, split points and what went out. `INFERGUARD_PROP_SCALE=N` runs N times
//! as many cases, `INFERGUARD_PROP_SEED=S` other ones. The failures found so far are pinned at
//! the end of this file as their smallest reproductions, one test each.

// This suite drives exchanges only: the engine helpers of `common` are unused here.
#[allow(dead_code)]
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;

use inferguard::audit::{AuditRecord, Decision};
use inferguard::exchange::{Exchange, LocalReply, RequestHead, ResponseHead, Side, Then};
use inferguard::policy::{Policies, Verified};
use serde_json::{json, Map, Number, Value};

/// The default policy, with every path admitted: these properties are about scanning, and some
/// formats here live on paths that are not inference APIs.
const SCANNING: &str = r#"{"hold_headers":true,"admission":{"endpoints":["/"]}}"#;

/// The same policy with headers that cannot wait (Istio's `WasmPlugin`): every case is replayed
/// under it too, and must deliver what [`SCANNING`] delivers, a refusal of the answer as its body.
const SCANNING_FLOW: &str = r#"{"admission":{"endpoints":["/"]}}"#;

// ---------------------------------------------------------------------------------------------
// Planted values and what must never go out.

/// Values planted in every text, each split across events by the generators.
const SECRETS: [&str; 6] = [
    "jane.doe@acme-corp.com",
    "ops+oncall@mail.example.org",
    "x@y.io",
    "4111 1111 1111 1111",
    "AKIAIOSFODNN7Q2MZ9VK",
    "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
];

/// The card written as a JSON number by one of the tolerant constructs.
const CARD_NUMBER: &str = "4111111111111111";

/// Nesting the filter's JSON reader refuses beyond (`wire::json::MAX_DEPTH`).
const MAX_DEPTH: usize = 128;

/// Room for one error event or error line (the longest is OpenAI Responses' SSE error).
const ERROR_ROOM: usize = 1024;

/// Room per finding: the longest marker, JSON-escaped, is well under this.
const PER_FINDING: usize = 64;

fn texts() -> [String; 2] {
    [
        format!(
            "Hello! Write to {} or to {} about it. The card is {} and the key is `{}`. Paths a/b, ünï €😀 end.",
            SECRETS[0], SECRETS[1], SECRETS[3], SECRETS[4]
        ),
        format!("Second choice: {}, token {}; see https://example.com/x now.", SECRETS[2], SECRETS[5]),
    ]
}

/// A planted value the engine would find in `text`. The filter is exact with respect to the
/// engine: what a client joins is judged as joined text, so a value an upstream glues to the next
/// fragment (`AKIA...Q2MZ9VK` + `more`) is left exactly as whole-text redaction leaves it, and the
/// engine's own boundaries are not this test's subject. Everything the engine recognises in what
/// went out is a leak.
fn leaked(text: &str) -> Option<&'static str> {
    static ENGINE: std::sync::OnceLock<inferguard::Engine> = std::sync::OnceLock::new();
    let engine = ENGINE.get_or_init(|| inferguard::Engine::new(&Default::default()).expect("default engine"));
    if !SECRETS.iter().chain(&[CARD_NUMBER]).any(|s| text.contains(s)) {
        return None;
    }
    // An occurrence the engine redacts in what the client has should never have reached it.
    let left = engine.redact(text).text;
    SECRETS.iter().copied().chain([CARD_NUMBER]).find(|s| text.matches(s).count() > left.matches(s).count())
}

/// Every backslash escape a JSON reader decodes, decoded wherever it is (lone surrogates become
/// U+FFFD).
fn unescape_all(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if b[i] == b'\\' && i + 1 < s.len() {
            let simple = match b[i + 1] {
                b'/' => Some('/'),
                b'"' => Some('"'),
                b'\\' => Some('\\'),
                b'n' => Some('\n'),
                b't' => Some('\t'),
                b'r' => Some('\r'),
                b'b' => Some('\u{8}'),
                b'f' => Some('\u{c}'),
                _ => None,
            };
            if let Some(c) = simple {
                out.push(c);
                i += 2;
                continue;
            }
            if b[i + 1] == b'u' {
                if let Some(u) = hex4(s, i + 2) {
                    i += 6;
                    if (0xD800..0xDC00).contains(&u) && s[i..].starts_with("\\u") {
                        if let Some(lo) = hex4(s, i + 2).filter(|l| (0xDC00..0xE000).contains(l)) {
                            out.push(
                                char::from_u32(0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00)).unwrap_or('\u{FFFD}'),
                            );
                            i += 6;
                            continue;
                        }
                    }
                    out.push(char::from_u32(u).unwrap_or('\u{FFFD}'));
                    continue;
                }
            }
        }
        let c = s[i..].chars().next().unwrap_or('\u{FFFD}');
        out.push(c);
        i += c.len_utf8();
    }
    out
}

fn hex4(s: &str, at: usize) -> Option<u32> {
    let h = s.get(at..at + 4)?;
    if h.bytes().all(|c| c.is_ascii_hexdigit()) {
        u32::from_str_radix(h, 16).ok()
    } else {
        None
    }
}

/// Some text around byte `at` of `s`, for a report.
fn around(s: &str, at: usize) -> String {
    let mut a = at.saturating_sub(100);
    while !s.is_char_boundary(a) {
        a -= 1;
    }
    let mut e = (at + 160).min(s.len());
    while !s.is_char_boundary(e) {
        e += 1;
    }
    format!("{:?}", &s[a..e])
}

// ---------------------------------------------------------------------------------------------
// Deterministic randomness.

struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        // One splitmix64 step: xorshift's first outputs from small seeds are poor.
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Rng((z ^ (z >> 31)) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())]
    }
}

/// `INFERGUARD_PROP_SCALE=N` runs N times as many cases.
fn scaled(n: usize) -> usize {
    n * std::env::var("INFERGUARD_PROP_SCALE").ok().and_then(|v| v.parse().ok()).unwrap_or(1)
}

fn seed(base: u64) -> u64 {
    base ^ std::env::var("INFERGUARD_PROP_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// Writing JSON the way tolerant servers and clients may.

/// Whitespace between tokens of a whole document.
const WS_DOC: &[&str] = &[" ", "\t", "\n", "\r\n", "\r", "  \n\t"];
/// In an SSE event: a line break continues the data on a new `data:` line.
const WS_SSE: &[&str] = &[" ", "\t", "\n", " \n  "];
/// Inside one NDJSON line: no line breaks.
const WS_LINE: &[&str] = &[" ", "\t", "  "];

/// How one case writes its JSON (rates in percent).
#[derive(Debug, Clone, Copy)]
struct Style {
    ws: &'static [&'static str],
    /// Whitespace between two tokens.
    ws_rate: usize,
    /// `@`, `.`, `/` and non-ASCII characters escaped (any other character at an eighth of it).
    escape_rate: usize,
    /// Objects that get an extra tolerant member.
    extra_rate: usize,
    /// Members preceded by a shadowed duplicate holding junk.
    dup_rate: usize,
}

impl Style {
    fn random(rng: &mut Rng, ws: &'static [&'static str]) -> Style {
        if rng.chance(25) {
            // As most servers write it.
            return Style { ws, ws_rate: 0, escape_rate: 0, extra_rate: 0, dup_rate: 0 };
        }
        Style {
            ws,
            ws_rate: rng.pick(&[0, 5, 20, 50]),
            escape_rate: rng.pick(&[0, 10, 50, 100]),
            extra_rate: rng.pick(&[0, 10, 30, 60]),
            dup_rate: rng.pick(&[0, 5, 15]),
        }
    }
}

/// Text held by shadowed duplicates: junk, whole values (scanned on their own) and halves of
/// values (which must not be joined to the text the client reads).
const JUNK: &[&str] =
    &["junk", "stale text", "jane.doe@acme-", "corp.com", "4111 1111", "mail x@y.io", "AKIAIOSFODNN7Q2MZ9VK"];

/// Names of extra members (none that a format gives a meaning to).
const EXTRA_KEYS: &[&str] = &["x_extra", "x_meta", "vendor_ext", "x_debug"];

enum Member<'v> {
    Real(&'v str, &'v Value),
    Junk(&'v str, &'v Value),
    Extra,
    Deep200,
}

struct Writer<'r> {
    rng: &'r mut Rng,
    style: Style,
    out: String,
    /// Tolerant constructs written so far.
    used: BTreeSet<&'static str>,
    /// 120-level nests written in this case (bounded: each is a few hundred bytes).
    deep: usize,
}

impl Writer<'_> {
    /// One document; with `deep200`, the root object gets a member nested 200 levels deep.
    fn doc(&mut self, v: &Value, deep200: bool) -> String {
        self.out.clear();
        self.value(v, 0, deep200);
        std::mem::take(&mut self.out)
    }

    fn ws(&mut self) {
        if self.style.ws_rate > 0 && self.rng.chance(self.style.ws_rate) {
            let w = self.rng.pick(self.style.ws);
            self.out.push_str(w);
            self.used.insert("whitespace");
        }
    }

    /// `depth`: the reader's depth of this value (the root is 0).
    fn value(&mut self, v: &Value, depth: usize, deep200: bool) {
        match v {
            Value::Null => self.out.push_str("null"),
            Value::Bool(b) => self.out.push_str(if *b { "true" } else { "false" }),
            Value::Number(n) => self.out.push_str(&n.to_string()),
            Value::String(s) => self.string(s),
            Value::Array(a) => {
                self.out.push('[');
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        self.ws();
                        self.out.push(',');
                    }
                    self.ws();
                    self.value(x, depth + 1, false);
                }
                self.ws();
                self.out.push(']');
            }
            Value::Object(m) => self.object(m, depth, deep200),
        }
    }

    fn object(&mut self, m: &Map<String, Value>, depth: usize, deep200: bool) {
        let mut members: Vec<Member> = Vec::new();
        for (k, v) in m {
            if self.style.dup_rate > 0 && self.rng.chance(self.style.dup_rate) {
                members.push(Member::Junk(k, v));
            }
            members.push(Member::Real(k, v));
        }
        if self.style.extra_rate > 0 && self.rng.chance(self.style.extra_rate) {
            let at = self.rng.below(members.len() + 1);
            members.insert(at, Member::Extra);
        }
        if deep200 {
            let at = self.rng.below(members.len() + 1);
            members.insert(at, Member::Deep200);
        }
        self.out.push('{');
        for (i, member) in members.iter().enumerate() {
            if i > 0 {
                self.ws();
                self.out.push(',');
            }
            self.ws();
            match member {
                Member::Real(k, v) => {
                    self.key(k);
                    self.value(v, depth + 1, false);
                }
                Member::Junk(k, v) => {
                    self.used.insert("duplicate key");
                    self.key(k);
                    self.junk(v, depth + 1);
                }
                Member::Extra => self.extra(depth + 1),
                Member::Deep200 => {
                    let k = self.rng.pick(EXTRA_KEYS);
                    self.key(k);
                    self.used.insert("nesting 200");
                    self.nest(200 - (depth + 1));
                }
            }
        }
        self.ws();
        self.out.push('}');
    }

    fn key(&mut self, k: &str) {
        self.string(k);
        self.ws();
        self.out.push(':');
        self.ws();
    }

    /// What an earlier duplicate of a member holds.
    fn junk(&mut self, v: &Value, depth: usize) {
        match self.rng.below(5) {
            0 => self.string("junk"),
            1 | 2 => {
                let j = self.rng.pick(JUNK);
                self.string(j);
            }
            3 => {
                // The same shape with junk in every string: the client never joins it.
                let j = junked(v, self.rng);
                self.value(&j, depth, false);
            }
            _ => self.out.push_str(self.rng.pick(&["null", "NaN", "0"])),
        }
    }

    /// An extra member holding one tolerant construct.
    fn extra(&mut self, depth: usize) {
        let k = self.rng.pick(EXTRA_KEYS);
        self.key(k);
        match self.rng.below(10) {
            0 => {
                self.used.insert("NaN");
                self.out.push_str("NaN");
            }
            1 => {
                self.used.insert("Infinity");
                self.out.push_str(self.rng.pick(&["Infinity", "-Infinity"]));
            }
            2 => {
                self.used.insert("big number");
                self.out.push_str(self.rng.pick(&[
                    "1e400",
                    "-1E+400",
                    "2.5e-400",
                    "123456789012345678901234567890e300",
                ]));
            }
            3 => {
                self.used.insert("lone surrogate");
                let s = self.rng.pick(&[
                    r#""\ud800""#,
                    r#""a\udfffb""#,
                    r#""x\uD83D""#,
                    r#""\ud800\u0041""#,
                    r#""\udc00\ud800""#,
                ]);
                self.out.push_str(s);
            }
            4 if self.deep < 2 => {
                self.deep += 1;
                self.used.insert("nesting 120");
                self.nest(120usize.saturating_sub(depth));
            }
            5 => {
                self.used.insert("card as a number");
                self.out.push_str(CARD_NUMBER);
            }
            6 => {
                self.used.insert("value as a key");
                let s = self.rng.pick(&SECRETS);
                self.out.push('{');
                self.key(s);
                self.out.push_str("1}");
            }
            7 => {
                self.used.insert("mixed array");
                self.out.push_str("[NaN,1e400,\"\\ud800\",");
                let s = self.rng.pick(&SECRETS);
                self.string(&format!("note {s}"));
                self.out.push(']');
            }
            _ => {
                let s = self.rng.pick(&SECRETS);
                self.string(&format!("note: {s}"));
            }
        }
    }

    /// `levels` containers (arrays and objects at random) around a planted value.
    fn nest(&mut self, levels: usize) {
        let kinds: Vec<bool> = (0..levels).map(|_| self.rng.chance(50)).collect();
        for &array in &kinds {
            self.out.push_str(if array { "[" } else { "{\"d\":" });
        }
        let s = self.rng.pick(&SECRETS);
        self.string(&format!("deep {s}"));
        for &array in kinds.iter().rev() {
            self.out.push(if array { ']' } else { '}' });
        }
    }

    fn string(&mut self, s: &str) {
        let rate = self.style.escape_rate;
        self.out.push('"');
        for c in s.chars() {
            match c {
                '"' => self.out.push_str("\\\""),
                '\\' => self.out.push_str("\\\\"),
                '\n' => self.out.push_str("\\n"),
                '\r' => self.out.push_str("\\r"),
                '\t' => self.out.push_str("\\t"),
                c if (c as u32) < 0x20 => self.out.push_str(&format!("\\u{:04x}", c as u32)),
                '/' if rate > 0 && self.rng.chance(rate) => {
                    self.used.insert("escape \\/");
                    self.out.push_str("\\/");
                }
                '@' | '.' if rate > 0 && self.rng.chance(rate) => {
                    self.used.insert("escape \\u0040 \\u002e");
                    self.unicode(c);
                }
                c if !c.is_ascii() && rate > 0 && self.rng.chance(rate) => {
                    self.used.insert("escape non-ASCII");
                    self.unicode(c);
                }
                c if rate > 0 && self.rng.chance(rate / 8) => {
                    self.used.insert("escape any");
                    self.unicode(c);
                }
                c => self.out.push(c),
            }
        }
        self.out.push('"');
    }

    fn unicode(&mut self, c: char) {
        let mut buf = [0u16; 2];
        let upper = self.rng.chance(50);
        for u in c.encode_utf16(&mut buf) {
            let e = if upper { format!("\\u{u:04X}") } else { format!("\\u{u:04x}") };
            self.out.push_str(&e);
        }
    }
}

/// `v` with every string replaced by junk.
fn junked(v: &Value, rng: &mut Rng) -> Value {
    match v {
        Value::String(_) => Value::String(rng.pick(JUNK).to_owned()),
        Value::Array(a) => Value::Array(a.iter().map(|x| junked(x, rng)).collect()),
        Value::Object(m) => Value::Object(m.iter().map(|(k, x)| (k.clone(), junked(x, rng))).collect()),
        other => other.clone(),
    }
}

// ---------------------------------------------------------------------------------------------
// The wire formats, as events (see `tests/stream_split.rs` and `../shared/wire-formats.md`).

/// How a body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Sse,
    /// Server-sent events whose data is plain text.
    SseText,
    Ndjson,
    /// Plain text, streamed.
    Text,
    /// One JSON document, read whole.
    Doc,
    /// `multipart/form-data`.
    Form,
}

/// One event of a body: JSON (an SSE event with its name, an NDJSON line, a document) or raw
/// text (`data: [DONE]`, a comment, plain text; `\n` becomes the case's line end in SSE).
enum Ev {
    Json(Option<&'static str>, Value),
    Raw(String),
}

fn data(v: Value) -> Ev {
    Ev::Json(None, v)
}

fn named(name: &'static str, v: Value) -> Ev {
    Ev::Json(Some(name), v)
}

/// Cuts `text` into deltas of 1..=4 characters, as tokenizers do.
fn deltas(text: &str, rng: &mut Rng) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let n = 1 + rng.below(4);
        out.push(chars[i..(i + n).min(chars.len())].iter().collect());
        i += n;
    }
    out
}

fn openai_chat(t: &[String; 2], rng: &mut Rng) -> Vec<Ev> {
    let chunk = |choices: Value| json!({"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":choices});
    let mut out =
        vec![data(chunk(json!([{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}])))];
    let (a, b) = (deltas(&t[0], rng), deltas(&t[1], rng));
    for i in 0..a.len().max(b.len()) {
        // n = 2: the two choices interleave, each its own text.
        if let Some(d) = a.get(i) {
            out.push(data(chunk(json!([{"index":0,"delta":{"content":d},"finish_reason":null}]))));
        }
        if let Some(d) = b.get(i) {
            out.push(data(chunk(json!([{"index":1,"delta":{"content":d},"finish_reason":null}]))));
        }
    }
    out.push(data(chunk(json!([{"index":0,"delta":{},"finish_reason":"stop"}]))));
    out.push(data(chunk(json!([{"index":1,"delta":{},"finish_reason":"stop"}]))));
    out.push(data(json!({"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}})));
    out.push(Ev::Raw("data: [DONE]\n\n".into()));
    out
}

fn openai_tool_call(t: &[String; 2], rng: &mut Rng) -> Vec<Ev> {
    let args = json!({"to": SECRETS[0], "body": t[1]}).to_string();
    let mut out = Vec::new();
    for (i, d) in deltas(&args, rng).iter().enumerate() {
        let call = if i == 0 {
            json!({"index":0,"id":"call_1","type":"function","function":{"name":"send","arguments":d}})
        } else {
            json!({"index":0,"function":{"arguments":d}})
        };
        out.push(data(json!({"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"tool_calls":[call]},"finish_reason":null}]})));
    }
    // vLLM-style: the last text arrives with finish_reason.
    out.push(data(json!({"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":t[0]},"finish_reason":"tool_calls"}]})));
    out.push(Ev::Raw("data: [DONE]\n\n".into()));
    out
}

fn openai_legacy(t: &[String; 2], rng: &mut Rng) -> Vec<Ev> {
    let mut out: Vec<Ev> = deltas(&t[0], rng)
        .into_iter()
        .map(|d| data(json!({"id":"cmpl-1","object":"text_completion","created":1,"model":"m","choices":[{"index":0,"text":d,"logprobs":null,"finish_reason":null}]})))
        .collect();
    out.push(data(json!({"id":"cmpl-1","object":"text_completion","created":1,"model":"m","choices":[{"index":0,"text":"","logprobs":null,"finish_reason":"length"}]})));
    out.push(Ev::Raw("data: [DONE]\n\n".into()));
    out
}

fn responses(t: &[String; 2], rng: &mut Rng) -> Vec<Ev> {
    let mut seq = 0;
    let mut ev = |name: &'static str, mut v: Value| {
        v["type"] = json!(name);
        v["sequence_number"] = json!(seq);
        seq += 1;
        named(name, v)
    };
    let text = &t[0];
    let mut out = vec![
        ev(
            "response.created",
            json!({"response":{"id":"resp_1","object":"response","status":"in_progress","output":[]}}),
        ),
        ev(
            "response.output_item.added",
            json!({"output_index":0,"item":{"id":"msg_1","type":"message","role":"assistant","content":[]}}),
        ),
        ev(
            "response.content_part.added",
            json!({"item_id":"msg_1","output_index":0,"content_index":0,"part":{"type":"output_text","text":""}}),
        ),
    ];
    for d in deltas(text, rng) {
        out.push(ev(
            "response.output_text.delta",
            json!({"item_id":"msg_1","output_index":0,"content_index":0,"delta":d}),
        ));
    }
    out.push(ev(
        "response.output_text.done",
        json!({"item_id":"msg_1","output_index":0,"content_index":0,"text":text}),
    ));
    out.push(ev(
        "response.content_part.done",
        json!({"item_id":"msg_1","output_index":0,"content_index":0,"part":{"type":"output_text","text":text}}),
    ));
    let item = json!({"id":"msg_1","type":"message","role":"assistant","content":[{"type":"output_text","text":text}]});
    out.push(ev("response.output_item.done", json!({"output_index":0,"item":item})));
    out.push(ev(
        "response.completed",
        json!({"response":{"id":"resp_1","object":"response","status":"completed","output":[item]}}),
    ));
    out
}

fn anthropic(t: &[String; 2], rng: &mut Rng) -> Vec<Ev> {
    let mut out = vec![named(
        "message_start",
        json!({"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"claude"}}),
    )];
    for (i, text) in t.iter().enumerate() {
        out.push(named(
            "content_block_start",
            json!({"type":"content_block_start","index":i,"content_block":{"type":"text","text":""}}),
        ));
        for (j, d) in deltas(text, rng).iter().enumerate() {
            out.push(named(
                "content_block_delta",
                json!({"type":"content_block_delta","index":i,"delta":{"type":"text_delta","text":d}}),
            ));
            if j % 7 == 3 {
                out.push(named("ping", json!({"type":"ping"})));
            }
        }
        out.push(named("content_block_stop", json!({"type":"content_block_stop","index":i})));
    }
    out.push(named(
        "message_delta",
        json!({"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":9}}),
    ));
    out.push(named("message_stop", json!({"type":"message_stop"})));
    out
}

fn ollama_chat(t: &[String; 2], rng: &mut Rng) -> Vec<Ev> {
    let mut out: Vec<Ev> = deltas(&t[0], rng)
        .into_iter()
        .map(|d| data(json!({"model":"llama3","created_at":"2024-01-01T00:00:00Z","message":{"role":"assistant","content":d},"done":false})))
        .collect();
    out.push(data(json!({"model":"llama3","created_at":"2024-01-01T00:00:00Z","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","total_duration":1})));
    out
}

fn ollama_generate(t: &[String; 2], rng: &mut Rng) -> Vec<Ev> {
    let mut out: Vec<Ev> = deltas(&t[1], rng)
        .into_iter()
        .map(|d| data(json!({"model":"llama3","created_at":"2024-01-01T00:00:00Z","response":d,"done":false})))
        .collect();
    out.push(data(
        json!({"model":"llama3","created_at":"2024-01-01T00:00:00Z","response":"","done":true,"context":[1,2]}),
    ));
    out
}

fn tgi(t: &[String; 2], rng: &mut Rng) -> Vec<Ev> {
    let ds = deltas(&t[0], rng);
    let n = ds.len();
    ds.into_iter()
        .enumerate()
        .map(|(i, d)| {
            let whole = if i + 1 == n { json!(t[0]) } else { Value::Null };
            data(json!({"index":i,"token":{"id":i,"text":d,"logprob":-0.1,"special":false},"generated_text":whole,"details":null}))
        })
        .collect()
}

/// Events whose data is plain text (no JSON): a generic client joins their data.
fn sse_text(t: &[String; 2], rng: &mut Rng) -> Vec<Ev> {
    deltas(&t[0], rng).into_iter().map(|d| Ev::Raw(format!("data: {d}\n\n"))).collect()
}

fn plain_text(t: &[String; 2], _rng: &mut Rng) -> Vec<Ev> {
    let whole = format!("{}\n{}\n", t[0], t[1]);
    whole.split_inclusive(". ").map(|s| Ev::Raw(s.to_owned())).collect()
}

fn chat_doc(t: &[String; 2], _rng: &mut Rng) -> Vec<Ev> {
    let args = json!({"to": SECRETS[0], "body": t[1]}).to_string();
    vec![data(
        json!({"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":t[0],"tool_calls":[{"id":"call_1","type":"function","function":{"name":"send","arguments":args}}]},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}),
    )]
}

fn anthropic_doc(t: &[String; 2], _rng: &mut Rng) -> Vec<Ev> {
    vec![data(
        json!({"id":"msg_1","type":"message","role":"assistant","model":"claude","content":[{"type":"text","text":t[0]},{"type":"tool_use","id":"toolu_1","name":"send","input":{"to":SECRETS[2],"body":t[1]}}],"stop_reason":"end_turn","usage":{"input_tokens":1,"output_tokens":2}}),
    )]
}

fn responses_doc(t: &[String; 2], _rng: &mut Rng) -> Vec<Ev> {
    let args = json!({"to": SECRETS[1]}).to_string();
    vec![data(
        json!({"id":"resp_1","object":"response","status":"completed","output":[{"id":"msg_1","type":"message","role":"assistant","content":[{"type":"output_text","text":t[0],"annotations":[]}]},{"type":"function_call","id":"fc_1","call_id":"call_1","name":"send","arguments":args}],"usage":{"input_tokens":1,"output_tokens":2}}),
    )]
}

fn ollama_doc(t: &[String; 2], _rng: &mut Rng) -> Vec<Ev> {
    vec![data(
        json!({"model":"llama3","created_at":"2024-01-01T00:00:00Z","message":{"role":"assistant","content":t[0]},"done":true,"done_reason":"stop"}),
    )]
}

fn tgi_doc(t: &[String; 2], rng: &mut Rng) -> Vec<Ev> {
    // The token list spells the text one token at a time: it must not go out.
    let tokens: Vec<Value> = deltas(&t[1], rng)
        .iter()
        .enumerate()
        .map(|(i, d)| json!({"id":i,"text":d,"logprob":-0.1,"special":false}))
        .collect();
    vec![data(
        json!({"generated_text":t[1],"details":{"finish_reason":"eos_token","generated_tokens":tokens.len(),"prefill":[],"tokens":tokens}}),
    )]
}

struct Format {
    name: &'static str,
    path: &'static str,
    framing: Framing,
    /// The label the format's servers send.
    content_type: &'static str,
    events: fn(&[String; 2], &mut Rng) -> Vec<Ev>,
}

const SSE: &str = "text/event-stream";
const NDJSON: &str = "application/x-ndjson";
const JSON: &str = "application/json";

const FORMATS: &[Format] = &[
    Format {
        name: "openai chat n=2",
        path: "/v1/chat/completions",
        framing: Framing::Sse,
        content_type: SSE,
        events: openai_chat,
    },
    Format {
        name: "openai tool call",
        path: "/v1/chat/completions",
        framing: Framing::Sse,
        content_type: SSE,
        events: openai_tool_call,
    },
    Format {
        name: "openai legacy",
        path: "/v1/completions",
        framing: Framing::Sse,
        content_type: SSE,
        events: openai_legacy,
    },
    Format {
        name: "openai responses",
        path: "/v1/responses",
        framing: Framing::Sse,
        content_type: SSE,
        events: responses,
    },
    Format { name: "anthropic", path: "/v1/messages", framing: Framing::Sse, content_type: SSE, events: anthropic },
    Format {
        name: "ollama chat",
        path: "/api/chat",
        framing: Framing::Ndjson,
        content_type: NDJSON,
        events: ollama_chat,
    },
    Format {
        name: "ollama generate",
        path: "/api/generate",
        framing: Framing::Ndjson,
        content_type: NDJSON,
        events: ollama_generate,
    },
    Format { name: "tgi stream", path: "/generate_stream", framing: Framing::Sse, content_type: SSE, events: tgi },
    Format {
        name: "sse plain text",
        path: "/v1/stream",
        framing: Framing::SseText,
        content_type: SSE,
        events: sse_text,
    },
    Format {
        name: "plain text",
        path: "/v1/chat/completions",
        framing: Framing::Text,
        content_type: "text/plain",
        events: plain_text,
    },
    Format {
        name: "openai chat doc",
        path: "/v1/chat/completions",
        framing: Framing::Doc,
        content_type: JSON,
        events: chat_doc,
    },
    Format {
        name: "anthropic doc",
        path: "/v1/messages",
        framing: Framing::Doc,
        content_type: JSON,
        events: anthropic_doc,
    },
    Format {
        name: "openai responses doc",
        path: "/v1/responses",
        framing: Framing::Doc,
        content_type: JSON,
        events: responses_doc,
    },
    Format {
        name: "ollama chat doc",
        path: "/api/chat",
        framing: Framing::Doc,
        content_type: JSON,
        events: ollama_doc,
    },
    Format { name: "tgi doc", path: "/generate", framing: Framing::Doc, content_type: JSON, events: tgi_doc },
];

/// Labels a body may carry besides its own: none of them may change what goes out.
const OTHER_LABELS: &[&str] = &[SSE, NDJSON, JSON, "text/plain", "text/html", "application/octet-stream", "image/png"];

fn random_label(rng: &mut Rng, right: &str) -> Option<String> {
    let label = match rng.below(8) {
        0 => return None,
        1 | 2 => right,
        _ => rng.pick(OTHER_LABELS),
    };
    Some(if rng.chance(30) { format!("{label}; charset=utf-8") } else { label.to_owned() })
}

// ---------------------------------------------------------------------------------------------
// Cases.

/// One exchange to replay: a body in parts (events, or lead and document), cut into chunks.
#[derive(Clone, Debug)]
struct Case {
    what: String,
    side: Side,
    framing: Framing,
    path: &'static str,
    method: &'static str,
    label: Option<String>,
    encoding: Option<&'static str>,
    parts: Vec<Vec<u8>>,
    /// Chunk boundaries, as (part, offset in it).
    cuts: Vec<(usize, usize)>,
    /// Tolerant constructs in it.
    used: BTreeSet<&'static str>,
    /// Form parts that are binary files (passed unscanned by design).
    binary_files: usize,
}

impl Case {
    fn input(&self) -> Vec<u8> {
        self.parts.concat()
    }

    /// The chunk boundaries as offsets in [`Case::input`], in order.
    fn offsets(&self) -> Vec<usize> {
        let mut starts = Vec::with_capacity(self.parts.len());
        let mut at = 0;
        for p in &self.parts {
            starts.push(at);
            at += p.len();
        }
        let mut out: Vec<usize> = self.cuts.iter().map(|&(p, o)| starts[p] + o).collect();
        out.sort_unstable();
        out
    }

    fn chunks<'a>(&self, input: &'a [u8]) -> Vec<&'a [u8]> {
        let mut chunks = Vec::new();
        let mut last = 0;
        for c in self.offsets() {
            chunks.push(&input[last..c]);
            last = c;
        }
        chunks.push(&input[last..]);
        chunks
    }

    /// Whether some JSON in it is nested deeper than the filter reads: it must be refused.
    fn too_deep(&self) -> bool {
        self.framing != Framing::Form && self.parts.iter().any(|p| max_depth(p) > MAX_DEPTH)
    }
}

/// Random chunk boundaries: one chunk, one-byte chunks, or 1..=40 cuts anywhere (empty chunks
/// included, as a host may call with nothing new).
fn random_cuts(rng: &mut Rng, parts: &[Vec<u8>]) -> (Vec<(usize, usize)>, &'static str) {
    let total: usize = parts.iter().map(Vec::len).sum();
    let locate = |mut at: usize| -> (usize, usize) {
        for (i, p) in parts.iter().enumerate() {
            if at <= p.len() {
                return (i, at);
            }
            at -= p.len();
        }
        (parts.len() - 1, parts[parts.len() - 1].len())
    };
    match rng.below(10) {
        0 => ((1..total).map(locate).collect(), "one-byte chunks"),
        1 => (Vec::new(), "one chunk"),
        _ => ((0..1 + rng.below(40)).map(|_| locate(rng.below(total + 1))).collect(), "random cuts"),
    }
}

fn answer_case(format: &Format, rng: &mut Rng) -> Case {
    let t = texts();
    let events = (format.events)(&t, rng);
    let ws = match format.framing {
        Framing::Sse | Framing::SseText => WS_SSE,
        Framing::Doc => WS_DOC,
        _ => WS_LINE,
    };
    let style = Style::random(rng, ws);
    let sse = matches!(format.framing, Framing::Sse | Framing::SseText);
    // SSE lines may end in LF, CRLF or CR; NDJSON lines in LF or CRLF.
    let eol = match rng.below(10) {
        0 | 1 => "\r\n",
        2 if sse => "\r",
        _ => "\n",
    };
    let json_events = events.iter().filter(|e| matches!(e, Ev::Json(..))).count();
    let deep200 = if rng.chance(10) { Some(rng.below(json_events)) } else { None };
    let mut w = Writer { rng, style, out: String::new(), used: BTreeSet::new(), deep: 0 };
    let lead = match format.framing {
        Framing::Sse | Framing::SseText => {
            w.rng.pick(&["", "", "", "\n", "\u{FEFF}", ": hello\n\n"]).replace('\n', eol)
        }
        Framing::Ndjson => w.rng.pick(&["", "", "\n"]).to_owned(),
        Framing::Doc => w.rng.pick(&["", "", "\u{FEFF}", "\n  ", "\u{FEFF}\r\n\t"]).to_owned(),
        _ => String::new(),
    };
    if lead.contains('\u{FEFF}') {
        w.used.insert("byte-order mark");
    }
    let mut parts = vec![lead.into_bytes()];
    let mut j = 0;
    for ev in &events {
        let part = match ev {
            Ev::Raw(s) if sse => s.replace('\n', eol),
            Ev::Raw(s) => s.clone(),
            Ev::Json(name, v) => {
                let json = w.doc(v, deep200 == Some(j));
                j += 1;
                match format.framing {
                    Framing::Sse => {
                        let prefix =
                            if format.name.starts_with("tgi") || w.rng.chance(20) { "data:" } else { "data: " };
                        let mut s = name.map_or(String::new(), |n| format!("event: {n}{eol}"));
                        if style.extra_rate > 0 && w.rng.chance(5) {
                            // Browsers expose an event's id as `lastEventId`.
                            w.used.insert("id line");
                            let id = if w.rng.chance(50) { "7" } else { w.rng.pick(&SECRETS) };
                            s += &format!("id: {id}{eol}");
                        }
                        for line in json.split('\n') {
                            s.push_str(prefix);
                            s.push_str(line);
                            s.push_str(eol);
                        }
                        s + eol
                    }
                    Framing::Ndjson => json + eol,
                    _ => json + w.rng.pick(&["", "", "\n", " \r\n"]),
                }
            }
        };
        parts.push(part.into_bytes());
        if sse && style.extra_rate > 0 && w.rng.chance(3) {
            w.used.insert("comment");
            let comment =
                if w.rng.chance(50) { "keep-alive".to_owned() } else { format!("note {}", w.rng.pick(&SECRETS)) };
            parts.push(format!(":{comment}{eol}{eol}").into_bytes());
        }
    }
    let used = std::mem::take(&mut w.used);
    let label = random_label(rng, format.content_type);
    let (cuts, how) = random_cuts(rng, &parts);
    let mut used = used;
    used.insert(how);
    Case {
        what: format.name.to_owned(),
        side: Side::Response,
        framing: format.framing,
        path: format.path,
        method: "POST",
        label,
        encoding: None,
        parts,
        cuts,
        used,
        binary_files: 0,
    }
}

/// Prompts in each API's request shape.
fn prompt(t: &[String; 2], rng: &mut Rng) -> (&'static str, &'static str, Value) {
    let model = if rng.chance(20) { SECRETS[0] } else { "gpt-4o" };
    match rng.below(7) {
        0 => {
            let content = if rng.chance(50) { json!(t[0]) } else { json!([{"type":"text","text":t[0]}]) };
            (
                "openai chat",
                "/v1/chat/completions",
                json!({"model":model,"stream":rng.chance(50),"messages":[{"role":"system","content":t[1]},{"role":"user","content":content}]}),
            )
        }
        1 => (
            "openai chat tool result",
            "/v1/chat/completions",
            json!({"model":model,"messages":[{"role":"assistant","tool_calls":[{"id":"call_1","type":"function","function":{"name":"send","arguments":json!({"to":SECRETS[0],"body":t[1]}).to_string()}}]},{"role":"tool","tool_call_id":"call_1","content":t[0]}]}),
        ),
        2 => (
            "anthropic",
            "/v1/messages",
            json!({"model":model,"max_tokens":256,"system":t[1],"messages":[{"role":"user","content":[{"type":"text","text":t[0]}]}]}),
        ),
        3 => (
            "openai responses",
            "/v1/responses",
            json!({"model":model,"instructions":t[1],"input":[{"role":"user","content":[{"type":"input_text","text":t[0]}]}]}),
        ),
        4 => ("ollama generate", "/api/generate", json!({"model":model,"prompt":t[0],"system":t[1]})),
        5 => (
            "ollama chat",
            "/api/chat",
            json!({"model":model,"messages":[{"role":"user","content":t[0]},{"role":"user","content":t[1]}]}),
        ),
        _ => ("embeddings", "/v1/embeddings", json!({"model":model,"input":[t[0],t[1]]})),
    }
}

const METHODS: &[&str] = &["GET", "POST", "DELETE", "PUT"];

/// Labels a prompt may carry: a multipart label on JSON must be refused (it is not a form).
const PROMPT_LABELS: &[&str] = &[
    JSON,
    "application/json; charset=utf-8",
    "text/plain",
    "text/html",
    "application/octet-stream",
    "image/png",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=zz",
];

fn prompt_case(rng: &mut Rng) -> Case {
    let t = texts();
    let (name, path, v) = prompt(&t, rng);
    let style = Style::random(rng, WS_DOC);
    let deep200 = rng.chance(10);
    let mut w = Writer { rng, style, out: String::new(), used: BTreeSet::new(), deep: 0 };
    let lead = w.rng.pick(&["", "", "\u{FEFF}", "\n\n   ", "\t", "\u{FEFF}\r\n"]);
    if lead.contains('\u{FEFF}') {
        w.used.insert("byte-order mark");
    }
    let body = w.doc(&v, deep200) + w.rng.pick(&["", "", "\n", " \r\n"]);
    let mut used = std::mem::take(&mut w.used);
    let method = rng.pick(METHODS);
    let label = if rng.chance(10) { None } else { Some(rng.pick(PROMPT_LABELS).to_owned()) };
    let encoding = rng.chance(3).then_some("gzip");
    let parts = vec![lead.as_bytes().to_vec(), body.into_bytes()];
    let (cuts, how) = random_cuts(rng, &parts);
    used.insert(how);
    Case {
        what: format!("prompt: {name}"),
        side: Side::Request,
        framing: Framing::Doc,
        path,
        method,
        label,
        encoding,
        parts,
        cuts,
        used,
        binary_files: 0,
    }
}

/// A form part: name, file name, content type, body.
type FormField = (&'static str, Option<&'static str>, Option<&'static str>, Vec<u8>);

fn form_case(rng: &mut Rng) -> Case {
    let t = texts();
    let boundary = rng.pick(&["xyz", "----WebKitFormBoundary7MA4YWxkTrZu0gW", "3f2b0c8e"]);
    let png: Vec<u8> = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
        .iter()
        .copied()
        .chain((0..700u32).map(|i| (i * 97 % 251) as u8))
        .collect();
    let style = Style::random(rng, WS_DOC);
    let mut w = Writer { rng, style, out: String::new(), used: BTreeSet::new(), deep: 0 };
    let metadata = w.doc(&json!({"user": SECRETS[0], "note": t[1]}), false);
    let mut used = std::mem::take(&mut w.used);
    let mut fields: Vec<FormField> = vec![
        ("model", None, None, b"whisper-1".to_vec()),
        ("prompt", None, rng.pick(&[None, Some("text/plain; charset=utf-8")]), t[0].clone().into_bytes()),
    ];
    if rng.chance(50) {
        fields.push(("language", None, None, b"en".to_vec()));
    }
    let mut binary_files = 0;
    if rng.chance(70) {
        fields.push(("file", Some("speech.png"), Some("image/png"), png));
        binary_files = 1;
    }
    if rng.chance(50) {
        used.insert("text file part");
        fields.push((
            "notes",
            Some("notes.txt"),
            Some(rng.pick(&["text/plain", "application/octet-stream"])),
            t[1].clone().into_bytes(),
        ));
    }
    if rng.chance(50) {
        used.insert("json part");
        fields.push(("metadata", None, Some(JSON), metadata.into_bytes()));
    }
    if rng.chance(30) {
        used.insert("text labelled binary");
        fields.push(("hint", None, Some("application/octet-stream"), format!("call {}", SECRETS[2]).into_bytes()));
    }
    for i in (1..fields.len()).rev() {
        let j = rng.below(i + 1);
        fields.swap(i, j);
    }
    let mut parts: Vec<Vec<u8>> = fields
        .iter()
        .map(|(name, file, ct, body)| {
            let mut p = format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"");
            if let Some(f) = file {
                p += &format!("; filename=\"{f}\"");
            }
            p += "\r\n";
            if let Some(ct) = ct {
                p += &format!("Content-Type: {ct}\r\n");
            }
            p += "\r\n";
            let mut p = p.into_bytes();
            p.extend_from_slice(body);
            p.extend_from_slice(b"\r\n");
            p
        })
        .collect();
    parts.push(format!("--{boundary}--\r\n").into_bytes());
    let label = if rng.chance(50) {
        format!("multipart/form-data; boundary={boundary}")
    } else {
        format!("multipart/form-data; boundary=\"{boundary}\"; charset=utf-8")
    };
    let (cuts, how) = random_cuts(rng, &parts);
    used.insert(how);
    Case {
        what: "multipart upload".into(),
        side: Side::Request,
        framing: Framing::Form,
        path: "/v1/audio/transcriptions",
        method: rng.pick(&["POST", "PUT"]),
        label: Some(label),
        encoding: None,
        parts,
        cuts,
        used,
        binary_files,
    }
}

// ---------------------------------------------------------------------------------------------
// What clients read.

/// Reads JSON as Python's `json` does: `NaN`, `Infinity`, numbers of any size, lone surrogates
/// (as U+FFFD), duplicate keys (the last wins), a leading byte-order mark, any nesting.
fn parse_lenient(text: &str) -> Option<Value> {
    let t = text.strip_prefix('\u{FEFF}').unwrap_or(text);
    let mut p = Lenient { s: t.as_bytes(), i: 0 };
    p.ws();
    let v = p.value()?;
    p.ws();
    (p.i == p.s.len()).then_some(v)
}

struct Lenient<'a> {
    s: &'a [u8],
    i: usize,
}

impl Lenient<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }
    fn eat(&mut self, lit: &str) -> bool {
        let ok = self.s[self.i..].starts_with(lit.as_bytes());
        if ok {
            self.i += lit.len();
        }
        ok
    }
    fn value(&mut self) -> Option<Value> {
        match self.peek()? {
            b'{' => {
                self.i += 1;
                let mut m = Map::new();
                self.ws();
                if self.eat("}") {
                    return Some(Value::Object(m));
                }
                loop {
                    self.ws();
                    let k = self.string()?;
                    self.ws();
                    if !self.eat(":") {
                        return None;
                    }
                    self.ws();
                    let v = self.value()?;
                    m.insert(k, v);
                    self.ws();
                    if self.eat("}") {
                        return Some(Value::Object(m));
                    }
                    if !self.eat(",") {
                        return None;
                    }
                }
            }
            b'[' => {
                self.i += 1;
                let mut a = Vec::new();
                self.ws();
                if self.eat("]") {
                    return Some(Value::Array(a));
                }
                loop {
                    self.ws();
                    a.push(self.value()?);
                    self.ws();
                    if self.eat("]") {
                        return Some(Value::Array(a));
                    }
                    if !self.eat(",") {
                        return None;
                    }
                }
            }
            b'"' => self.string().map(Value::String),
            _ => {
                for (lit, v) in [
                    ("NaN", Value::Null),
                    ("Infinity", Value::Null),
                    ("-Infinity", Value::Null),
                    ("true", Value::Bool(true)),
                    ("false", Value::Bool(false)),
                    ("null", Value::Null),
                ] {
                    if self.eat(lit) {
                        return Some(v);
                    }
                }
                self.number()
            }
        }
    }
    fn number(&mut self) -> Option<Value> {
        let start = self.i;
        self.eat("-");
        let digits = |p: &mut Self| {
            let s = p.i;
            while p.peek().is_some_and(|c| c.is_ascii_digit()) {
                p.i += 1;
            }
            p.i > s
        };
        if !digits(self) {
            return None;
        }
        if self.eat(".") && !digits(self) {
            return None;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if !self.eat("+") {
                self.eat("-");
            }
            if !digits(self) {
                return None;
            }
        }
        let text = std::str::from_utf8(&self.s[start..self.i]).ok()?;
        Some(if let Ok(n) = text.parse::<i64>() {
            Value::Number(n.into())
        } else {
            text.parse::<f64>().ok().and_then(Number::from_f64).map_or(Value::Null, Value::Number)
        })
    }
    fn string(&mut self) -> Option<String> {
        if !self.eat("\"") {
            return None;
        }
        let mut out: Vec<u8> = Vec::new();
        loop {
            let c = self.peek()?;
            self.i += 1;
            match c {
                b'"' => return String::from_utf8(out).ok(),
                b'\\' => {
                    let e = self.peek()?;
                    self.i += 1;
                    let ch = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let s = std::str::from_utf8(self.s).ok()?;
                            let u = hex4(s, self.i)?;
                            self.i += 4;
                            if (0xD800..0xDC00).contains(&u) && self.s[self.i..].starts_with(b"\\u") {
                                if let Some(lo) = hex4(s, self.i + 2).filter(|l| (0xDC00..0xE000).contains(l)) {
                                    self.i += 6;
                                    char::from_u32(0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00))?
                                } else {
                                    '\u{FFFD}'
                                }
                            } else {
                                char::from_u32(u).unwrap_or('\u{FFFD}')
                            }
                        }
                        _ => return None,
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                }
                c if c < 0x20 => return None,
                c => out.push(c),
            }
        }
    }
}

/// The deepest nesting of brackets in JSON text (strings skipped).
fn max_depth(b: &[u8]) -> usize {
    let (mut depth, mut max, mut in_str, mut esc) = (0usize, 0usize, false, false);
    for &c in b {
        if in_str {
            if esc {
                esc = false;
            } else if c == b'\\' {
                esc = true;
            } else if c == b'"' {
                in_str = false;
            }
            continue;
        }
        match c {
            b'"' => in_str = true,
            b'{' | b'[' => {
                depth += 1;
                max = max.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// What a client made of a body.
#[derive(Debug, Default, PartialEq)]
struct Client {
    /// Text per logical stream, joined as the SDKs join it.
    streams: BTreeMap<String, String>,
    /// Copies of a whole text some formats send again.
    wholes: Vec<String>,
    /// Every string the client can read (values and keys).
    strings: Vec<String>,
    errors: usize,
    /// Something came after the first error.
    after_error: bool,
    /// Events or lines the client could not read.
    unreadable: Vec<String>,
}

fn collect_strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| collect_strings(x, out)),
        Value::Object(m) => {
            for (k, x) in m {
                out.push(k.clone());
                collect_strings(x, out);
            }
        }
        _ => {}
    }
}

/// Server-sent events as the WHATWG parser reads them: a leading byte-order mark dropped, lines
/// ending in CRLF, LF or CR, `data` lines joined with LF, an event dispatched at a blank line
/// (an unfinished last event is dropped). Returns (event name, data, byte offset after it).
fn sse_events(text: &str) -> (Vec<(Option<String>, String, usize)>, usize) {
    let body = text.strip_prefix('\u{FEFF}').unwrap_or(text);
    let skip = text.len() - body.len();
    let mut events = Vec::new();
    let (mut name, mut data): (Option<String>, Option<String>) = (None, None);
    let b = body.as_bytes();
    let mut i = 0;
    let mut end_of_last = 0;
    while i < b.len() {
        let e = b[i..].iter().position(|&c| c == b'\n' || c == b'\r').map_or(b.len(), |p| i + p);
        if e == b.len() {
            break; // an unfinished line
        }
        let line = &body[i..e];
        i = if b[e] == b'\r' && b.get(e + 1) == Some(&b'\n') { e + 2 } else { e + 1 };
        if line.is_empty() {
            if let Some(d) = data.take() {
                events.push((name.take(), d, skip + i));
            }
            name = None;
            end_of_last = skip + i;
            continue;
        }
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => name = Some(value.to_owned()),
            "data" => match &mut data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => data = Some(value.to_owned()),
            },
            _ => {}
        }
    }
    (events, end_of_last)
}

/// What the format's client reassembles from `bytes`.
fn client(framing: Framing, bytes: &[u8]) -> Client {
    let text = String::from_utf8_lossy(bytes);
    let mut c = Client::default();
    match framing {
        Framing::Sse | Framing::SseText => {
            let (events, _) = sse_events(&text);
            let mut error_at = None;
            for (i, (name, data, end)) in events.iter().enumerate() {
                if error_at.is_some() {
                    c.after_error = true;
                }
                if data == "[DONE]" {
                    continue;
                }
                if framing == Framing::SseText && parse_lenient(data).map_or(true, |v| v.get("error").is_none()) {
                    // Plain text: the client joins the data of every event.
                    c.streams.entry("data".into()).or_default().push_str(data);
                    c.strings.push(data.clone());
                    continue;
                }
                let Some(v) = parse_lenient(data) else {
                    c.unreadable.push(data.clone());
                    continue;
                };
                if name.as_deref() == Some("error") || v.get("error").is_some() || v["type"] == "error" {
                    c.errors += 1;
                    error_at.get_or_insert((i, *end));
                    collect_strings(&v, &mut c.strings);
                    continue;
                }
                accumulate(&mut c, &v);
            }
            if let Some((_, end)) = error_at {
                c.after_error |= !text[end..].trim().is_empty();
            }
        }
        Framing::Ndjson => {
            let mut errored = false;
            for line in text.split('\n').map(|l| l.trim_end_matches('\r')) {
                if line.trim().is_empty() {
                    continue;
                }
                if errored {
                    c.after_error = true;
                }
                let Some(v) = parse_lenient(line) else {
                    c.unreadable.push(line.to_owned());
                    continue;
                };
                if v.get("error").is_some() {
                    c.errors += 1;
                    errored = true;
                    collect_strings(&v, &mut c.strings);
                    continue;
                }
                accumulate(&mut c, &v);
            }
        }
        Framing::Text => match text.find("\n[inferguard: ") {
            Some(i) => {
                c.errors = 1;
                c.streams.insert("text".into(), text[..i].to_owned());
                let rest = &text[i + 1..];
                c.after_error = rest.find("]\n").map_or(true, |e| e + 2 != rest.len());
                c.strings.push(text.to_string());
            }
            None => {
                c.streams.insert("text".into(), text.to_string());
                c.strings.push(text.to_string());
            }
        },
        // The upstream reads a form's fields as they are.
        Framing::Form => c.strings.push(text.to_string()),
        Framing::Doc => match parse_lenient(&text) {
            Some(v) => {
                collect_strings(&v, &mut c.strings);
                doc_texts(&v, &mut c);
            }
            None => c.unreadable.push(text.to_string()),
        },
    }
    c
}

/// Joins the text of one streamed event the way the SDKs do.
fn accumulate(c: &mut Client, v: &Value) {
    collect_strings(v, &mut c.strings);
    let mut add = |k: String, s: &str| c.streams.entry(k).or_default().push_str(s);
    let ty = v["type"].as_str().unwrap_or("");
    if let Some(choices) = v["choices"].as_array() {
        for (pos, ch) in choices.iter().enumerate() {
            let i = ch["index"].as_u64().unwrap_or(pos as u64);
            if let Some(s) = ch["delta"]["content"].as_str() {
                add(format!("choice{i}"), s);
            }
            if let Some(calls) = ch["delta"]["tool_calls"].as_array() {
                for (j, call) in calls.iter().enumerate() {
                    let k = call["index"].as_u64().unwrap_or(j as u64);
                    if let Some(s) = call["function"]["arguments"].as_str() {
                        add(format!("choice{i}.tool{k}"), s);
                    }
                }
            }
            if let Some(s) = ch["text"].as_str() {
                add(format!("choice{i}"), s);
            }
        }
        return;
    }
    match ty {
        "response.output_text.delta" => {
            add(format!("output{}.{}", v["output_index"], v["content_index"]), v["delta"].as_str().unwrap_or(""))
        }
        "response.content_part.added" => {
            add(format!("output{}.{}", v["output_index"], v["content_index"]), v["part"]["text"].as_str().unwrap_or(""))
        }
        "response.output_text.done" => c.wholes.push(v["text"].as_str().unwrap_or("").to_owned()),
        "response.content_part.done" => c.wholes.push(v["part"]["text"].as_str().unwrap_or("").to_owned()),
        "response.output_item.done" => c.wholes.push(v["item"]["content"][0]["text"].as_str().unwrap_or("").to_owned()),
        "response.completed" => {
            c.wholes.push(v["response"]["output"][0]["content"][0]["text"].as_str().unwrap_or("").to_owned())
        }
        "content_block_start" => add(format!("block{}", v["index"]), v["content_block"]["text"].as_str().unwrap_or("")),
        "content_block_delta" => add(format!("block{}", v["index"]), v["delta"]["text"].as_str().unwrap_or("")),
        _ => {
            if let Some(s) = v["message"]["content"].as_str() {
                add("message".into(), s);
            } else if let Some(s) = v["response"].as_str() {
                add("response".into(), s);
            } else if let Some(s) = v["token"]["text"].as_str() {
                add("token".into(), s);
                if let Some(g) = v["generated_text"].as_str() {
                    c.wholes.push(g.to_owned());
                }
            }
        }
    }
}

/// The texts of a whole answer, by path; and a token list joined (as a client showing tokens
/// would).
fn doc_texts(v: &Value, c: &mut Client) {
    let mut put = |k: String, s: Option<&str>| {
        if let Some(s) = s {
            c.streams.insert(k, s.to_owned());
        }
    };
    for (i, ch) in v["choices"].as_array().into_iter().flatten().enumerate() {
        put(format!("choice{i}"), ch["message"]["content"].as_str());
        for (j, call) in ch["message"]["tool_calls"].as_array().into_iter().flatten().enumerate() {
            put(format!("choice{i}.tool{j}"), call["function"]["arguments"].as_str());
        }
    }
    for (i, b) in v["content"].as_array().into_iter().flatten().enumerate() {
        put(format!("block{i}"), b["text"].as_str());
    }
    for (i, o) in v["output"].as_array().into_iter().flatten().enumerate() {
        put(format!("output{i}.args"), o["arguments"].as_str());
        for (j, p) in o["content"].as_array().into_iter().flatten().enumerate() {
            put(format!("output{i}.{j}"), p["text"].as_str());
        }
    }
    put("message".into(), v["message"]["content"].as_str());
    put("generated".into(), v["generated_text"].as_str());
    let tokens: String =
        v["details"]["tokens"].as_array().into_iter().flatten().filter_map(|t| t["text"].as_str()).collect();
    c.strings.push(tokens);
}

/// What the client must end up with: every text redacted as a whole.
fn expected(policy: &Policies, framing: Framing, input: &[u8]) -> Client {
    let whole = client(framing, input);
    let e = &policy.default_policy().engine;
    Client {
        streams: whole.streams.iter().map(|(k, v)| (k.clone(), e.redact(v).text)).collect(),
        wholes: whole.wholes.iter().map(|w| e.redact(w).text).collect(),
        ..Client::default()
    }
}

// ---------------------------------------------------------------------------------------------
// The properties.

#[derive(Debug)]
struct Failure {
    property: &'static str,
    detail: String,
}

macro_rules! ensure {
    ($cond:expr, $prop:expr, $($arg:tt)+) => {
        if !$cond {
            return Err(Failure { property: $prop, detail: format!($($arg)+) });
        }
    };
}

/// How a case ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Replied(u16),
    Stopped,
    Whole,
}

/// Property 1 on raw bytes: no planted value, raw or with every escape decoded.
fn check_bytes(what: &str, bytes: &[u8]) -> Result<(), Failure> {
    let raw = String::from_utf8_lossy(bytes);
    let decoded = unescape_all(&raw);
    for (how, view) in [("raw", &*raw), ("with escapes decoded", &decoded)] {
        if let Some(s) = leaked(view) {
            let at = view.find(s).unwrap_or(0);
            return Err(Failure {
                property: "1: a planted value went out",
                detail: format!("{s:?} in {what} ({how}): ...{}...", around(view, at)),
            });
        }
    }
    Ok(())
}

/// Property 1 on what a client reads.
fn check_client(what: &str, c: &Client) -> Result<(), Failure> {
    for (k, s) in &c.streams {
        if let Some(v) = leaked(s) {
            return Err(Failure {
                property: "1: a planted value went out",
                detail: format!("{v:?} in the {what} client's text {k:?}: {s:?}"),
            });
        }
    }
    for s in c.wholes.iter().chain(&c.strings) {
        if let Some(v) = leaked(s) {
            return Err(Failure {
                property: "1: a planted value went out",
                detail: format!("{v:?} in a string the {what} client reads: {s:?}"),
            });
        }
    }
    Ok(())
}

/// Property 2.
fn check_audit(a: &AuditRecord, text_only: bool) -> Result<(), Failure> {
    const P: &str = "2: the audit";
    let json = a.to_json();
    for (side, d) in [("request", &a.request), ("response", &a.response)] {
        ensure!(d.scanned() || d.unscanned_reason.is_some(), P, "{side} unscanned without a reason: {json}");
        if a.decision == Decision::Allowed {
            ensure!(d.scanned(), P, "`allowed` while the {side} went out unscanned: {json}");
        }
        if text_only {
            ensure!(d.scanned(), P, "the {side} is text, yet it went out unscanned: {json}");
        }
    }
    ensure!(a.decision != Decision::Blocked || a.reason.is_some(), P, "blocked without a reason: {json}");
    check_bytes("the audit record", json.as_bytes())
}

/// Property 3 for a local reply.
fn check_reply(r: &LocalReply, sent: &[u8], a: &AuditRecord, statuses: std::ops::Range<u16>) -> Result<(), Failure> {
    const P: &str = "3: scanned or refused";
    ensure!(statuses.contains(&r.status), P, "a local reply with status {}: {}", r.status, r.body);
    ensure!(
        sent.is_empty(),
        P,
        "a local reply after {} bytes went out: {:?}",
        sent.len(),
        String::from_utf8_lossy(sent)
    );
    ensure!(parse_lenient(&r.body).is_some(), P, "a local reply that is not JSON: {}", r.body);
    ensure!(a.decision == Decision::Blocked, "2: the audit", "a refusal not recorded as blocked: {}", a.to_json());
    check_bytes("the local reply", r.body.as_bytes())
}

struct Ran {
    outcome: Outcome,
    /// Bytes out beyond bytes in, and what redaction allowed (for the statistics).
    growth: i64,
}

fn run(policy: &Rc<Policies>, case: &Case) -> Result<Ran, Failure> {
    match catch_unwind(AssertUnwindSafe(|| match case.side {
        Side::Response => run_answer(policy, case),
        Side::Request => run_prompt(policy, case),
    })) {
        Ok(r) => r,
        Err(p) => {
            let msg = p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()));
            Err(Failure { property: "the core panicked", detail: msg.unwrap_or_default() })
        }
    }
}

/// Replays an answer: what the client received, and the audit.
fn deliver_answer(policy: &Rc<Policies>, case: &Case) -> Result<(common::Delivered, AuditRecord), Failure> {
    const P3: &str = "3: scanned or refused";
    let input = case.input();
    let chunks = case.chunks(&input);
    let mut x = Exchange::new(Rc::clone(policy));
    let head = x.on_request_head(
        &RequestHead { method: "POST", path: case.path, ..Default::default() },
        &Verified::tls("TLSv1.3"),
        true,
    );
    ensure!(head.then == Then::Forward, P3, "a request without a body was not forwarded: {:?}", head.then);
    let head = x.on_response_head(
        &ResponseHead {
            status: 200,
            content_type: case.label.as_deref(),
            content_encoding: None,
            ..Default::default()
        },
        false,
    );
    let want = if policy.holds_headers() { Then::Hold } else { Then::Forward };
    ensure!(head.then == want, P3, "the response head: {:?}, not {want:?}", head.then);
    let mut d = common::Delivered { headers: head.headers, ..Default::default() };
    let at_head = d.headers.len();
    common::drive_body(&mut x, Side::Response, &chunks, &mut d, |_| {});
    if !policy.holds_headers() {
        ensure!(d.headers.len() == at_head, P3, "header edits after the headers went: {:?}", &d.headers[at_head..]);
    }
    Ok((d, x.audit().clone()))
}

fn run_answer(policy: &Rc<Policies>, case: &Case) -> Result<Ran, Failure> {
    const P3: &str = "3: scanned or refused";
    let input = case.input();
    let (d, audit) = deliver_answer(policy, case)?;
    check_audit(&audit, true)?;
    let refuse = case.too_deep();
    let findings: usize = audit.response.findings.values().map(|&n| n as usize).sum();
    if let Some(r) = &d.reply {
        check_reply(r, &d.bytes, &audit, 400..600)?;
        ensure!(refuse, P3, "an answer the filter can read was refused: {} {}", r.status, r.body);
        return Ok(Ran { outcome: Outcome::Replied(r.status), growth: 0 });
    }
    check_bytes("the bytes forwarded", &d.bytes)?;
    let got = client(case.framing, &d.bytes);
    check_client(&case.what, &got)?;
    ensure!(got.unreadable.is_empty(), P3, "the client cannot read what went out: {:?}", got.unreadable[0]);
    let want = expected(policy, case.framing, &input);
    let out = String::from_utf8_lossy(&d.bytes);
    let stopped = got.errors > 0;
    // Property 4. The markers, one error event; and held text that ends a stream goes out in a
    // synthetic event shaped like the stream's last one: together those may copy the input's
    // events once, never more.
    let literal = input.len() + PER_FINDING * findings + if stopped { ERROR_ROOM } else { 0 };
    let flushes =
        if matches!(case.framing, Framing::Sse | Framing::SseText | Framing::Ndjson) { input.len() } else { 0 };
    let growth = d.bytes.len() as i64 - literal as i64;
    ensure!(
        d.bytes.len() <= literal + flushes,
        "4: output bound",
        "{} bytes out for {} in and {findings} findings: more than the markers{} and one copy of every event",
        d.bytes.len(),
        input.len(),
        if stopped { ", an error event" } else { "" }
    );
    if stopped {
        ensure!(
            got.errors == 1 && !got.after_error,
            P3,
            "{} errors, something after the first: ...{}",
            got.errors,
            around(&out, out.len().saturating_sub(200))
        );
        ensure!(
            refuse,
            P3,
            "an answer the filter can read was stopped: ...{}",
            around(&out, out.len().saturating_sub(200))
        );
        ensure!(
            audit.decision == Decision::Blocked,
            "2: the audit",
            "a stopped answer not recorded as blocked: {}",
            audit.to_json()
        );
        for (k, s) in &got.streams {
            let whole = want.streams.get(k).map_or("", String::as_str);
            ensure!(
                whole.starts_with(s.as_str()),
                P3,
                "before the error, text {k:?} went out as {s:?}, not a prefix of {whole:?}"
            );
        }
        for w in &got.wholes {
            ensure!(want.wholes.contains(w), P3, "before the error, a whole text went out as {w:?}");
        }
        return Ok(Ran { outcome: Outcome::Stopped, growth });
    }
    ensure!(!refuse, P3, "JSON nested deeper than the filter reads went out unstopped (a client reads it)");
    ensure!(
        got.streams == want.streams && got.wholes == want.wholes,
        P3,
        "the answer is not the whole text redacted:\n got {:?} {:?}\nwant {:?} {:?}",
        got.streams,
        got.wholes,
        want.streams,
        want.wholes
    );
    ensure!(audit.decision == Decision::Redacted, "2: the audit", "values were redacted, yet: {}", audit.to_json());
    Ok(Ran { outcome: Outcome::Whole, growth })
}

/// Replays a prompt: what the upstream received (or the reply), and the audit.
fn deliver_prompt(policy: &Rc<Policies>, case: &Case) -> Result<(common::Delivered, AuditRecord), Failure> {
    const P3: &str = "3: scanned or refused";
    let input = case.input();
    let chunks = case.chunks(&input);
    let head = RequestHead {
        method: case.method,
        path: case.path,
        authority: None,
        content_type: case.label.as_deref(),
        content_encoding: case.encoding,
        ..Default::default()
    };
    let mut x = Exchange::new(Rc::clone(policy));
    let step = x.on_request_head(&head, &Verified::tls("TLSv1.3"), false);
    let mut d = common::Delivered::default();
    match step.then {
        Then::Reply(r) => d.reply = Some(r),
        // Headers that cannot wait go on without the length; the body is still read whole.
        Then::Forward if !policy.holds_headers() && step.headers.contains(&("content-length".into(), None)) => {
            d.headers = step.headers;
            let at_head = d.headers.len();
            common::drive_body(&mut x, Side::Request, &chunks, &mut d, |_| {});
            ensure!(d.headers.len() == at_head, P3, "header edits after the headers went: {:?}", &d.headers[at_head..]);
        }
        Then::Forward => {
            return Err(Failure { property: P3, detail: "a request body was let through before it was read".into() })
        }
        Then::Hold => common::drive_body(&mut x, Side::Request, &chunks, &mut d, |_| {}),
    }
    Ok((d, x.audit().clone()))
}

fn run_prompt(policy: &Rc<Policies>, case: &Case) -> Result<Ran, Failure> {
    const P3: &str = "3: scanned or refused";
    let input = case.input();
    let not_a_form =
        case.framing != Framing::Form && case.label.as_deref().is_some_and(|l| l.starts_with("multipart/"));
    let refuse = case.too_deep() || case.encoding.is_some() || not_a_form;
    let (d, audit) = deliver_prompt(policy, case)?;
    check_audit(&audit, case.binary_files == 0)?;
    if let Some(r) = &d.reply {
        check_reply(r, &d.bytes, &audit, 400..500)?;
        ensure!(refuse, P3, "a prompt the filter can read was refused: {} {}", r.status, r.body);
        return Ok(Ran { outcome: Outcome::Replied(r.status), growth: 0 });
    }
    ensure!(!refuse, P3, "a prompt that must be refused reached the upstream");
    check_bytes("what the upstream received", &d.bytes)?;
    let got = client(case.framing, &d.bytes);
    ensure!(got.unreadable.is_empty(), P3, "the upstream cannot read the forwarded JSON");
    check_client("upstream", &got)?;
    if case.binary_files > 0 {
        ensure!(
            audit.request.unscanned_reason == Some("binary") && audit.request.passed.get("binary_parts") == Some(&1),
            "2: the audit",
            "a binary file part passed without being recorded: {}",
            audit.to_json()
        );
    }
    ensure!(audit.decision == Decision::Redacted, "2: the audit", "values were redacted, yet: {}", audit.to_json());
    let findings: usize = audit.request.findings.values().map(|&n| n as usize).sum();
    let allowed = input.len() + PER_FINDING * findings;
    ensure!(
        d.bytes.len() <= allowed,
        "4: output bound",
        "{} bytes out for {} in and {findings} findings",
        d.bytes.len(),
        input.len()
    );
    Ok(Ran { outcome: Outcome::Whole, growth: d.bytes.len() as i64 - allowed as i64 })
}

// ---------------------------------------------------------------------------------------------
// Shrinking and reporting.

/// Delta debugging (complements only): the smallest sublist of `items` for which `fails` still
/// holds, within `budget` runs.
fn ddmin<T: Clone>(mut items: Vec<T>, budget: &mut usize, mut fails: impl FnMut(&[T]) -> bool) -> Vec<T> {
    let mut n = 2;
    while !items.is_empty() && *budget > 0 {
        let size = items.len().div_ceil(n);
        let mut reduced = false;
        let mut start = 0;
        while start < items.len() && *budget > 0 {
            let candidate: Vec<T> =
                items[..start].iter().chain(&items[(start + size).min(items.len())..]).cloned().collect();
            *budget -= 1;
            if fails(&candidate) {
                items = candidate;
                n = (n - 1).max(2);
                reduced = true;
                break;
            }
            start += size;
        }
        if !reduced {
            if size <= 1 {
                break;
            }
            n = (n * 2).min(items.len());
        }
    }
    items
}

/// The smallest case (fewest parts, then fewest cuts) that fails `property` still.
fn shrink(policy: &Rc<Policies>, case: &Case, property: &str) -> Case {
    let same = |c: &Case| matches!(run(policy, c), Err(f) if f.property == property);
    let mut budget = 4000;
    let mut best = case.clone();
    if matches!(case.framing, Framing::Sse | Framing::SseText | Framing::Ndjson | Framing::Text) {
        let keep: Vec<usize> = (0..case.parts.len()).collect();
        let keep = ddmin(keep, &mut budget, |k| same(&with_parts(case, k)));
        best = with_parts(case, &keep);
    }
    let cuts = ddmin(best.cuts.clone(), &mut budget, |cuts| same(&Case { cuts: cuts.to_vec(), ..best.clone() }));
    best.cuts = cuts;
    best
}

/// `case` with only the parts `keep` (in order), and the cuts inside them.
fn with_parts(case: &Case, keep: &[usize]) -> Case {
    let parts = keep.iter().map(|&i| case.parts[i].clone()).collect();
    let cuts = case.cuts.iter().filter_map(|&(p, o)| keep.iter().position(|&k| k == p).map(|new| (new, o))).collect();
    Case { parts, cuts, ..case.clone() }
}

fn report(policy: &Rc<Policies>, original: &Case, f: &Failure) -> String {
    let case = shrink(policy, original, f.property);
    let detail = match run(policy, &case) {
        Err(f) => f.detail,
        Ok(_) => f.detail.clone(),
    };
    let input = case.input();
    let out = match case.side {
        Side::Response => match catch_unwind(AssertUnwindSafe(|| deliver_answer(policy, &case))) {
            Ok(Ok((d, _))) => format!("{:?} (reply {:?})", String::from_utf8_lossy(&d.bytes), d.reply),
            _ => String::new(),
        },
        Side::Request => String::new(),
    };
    format!(
        "PROPERTY {}\n  format: {} ({:?}, {} {}), label {:?}, encoding {:?}\n  constructs: {:?}\n  \
         minimal input ({} bytes, from {} in {} parts): {:?}\n  split at byte offsets {:?} ({} chunks)\n  what: {}\n  \
         forwarded: {}\n",
        f.property,
        case.what,
        case.framing,
        case.method,
        case.path,
        case.label,
        case.encoding,
        original.used,
        input.len(),
        original.input().len(),
        original.parts.len(),
        String::from_utf8_lossy(&input),
        case.offsets(),
        case.offsets().len() + 1,
        detail,
        out
    )
}

/// Property 5. With headers that cannot wait, a case delivers exactly what it delivers with held
/// headers, and records the same: a refusal of the answer is its error body instead of a
/// status; a refusal of the prompt is still a reply (no answer has started).
fn same_with_headers_gone(held: &Rc<Policies>, flow: &Rc<Policies>, case: &Case) -> Result<(), Failure> {
    const P5: &str = "5: headers that cannot wait";
    let ((hd, ha), (fd, fa)) = match case.side {
        Side::Response => (deliver_answer(held, case)?, deliver_answer(flow, case)?),
        Side::Request => (deliver_prompt(held, case)?, deliver_prompt(flow, case)?),
    };
    let (want_bytes, want_reply) = match (&hd.reply, case.side) {
        (Some(r), Side::Response) => {
            ensure!(hd.bytes.is_empty(), P5, "bytes went out before a status reply");
            (r.body.as_bytes().to_vec(), None)
        }
        (r, _) => (hd.bytes.clone(), r.clone()),
    };
    ensure!(fd.reply == want_reply, P5, "the reply: {:?}, held: {:?}", fd.reply, hd.reply);
    ensure!(
        fd.bytes == want_bytes,
        P5,
        "delivered {:?}, held headers delivered {:?}",
        String::from_utf8_lossy(&fd.bytes),
        String::from_utf8_lossy(&want_bytes)
    );
    ensure!(fa.to_json() == ha.to_json(), P5, "the record: {}, held: {}", fa.to_json(), ha.to_json());
    Ok(())
}

/// Runs every case; reports the first failure of each (format, property), shrunk.
fn hunt(name: &str, cases: impl Iterator<Item = Case>) {
    let policy = Rc::new(Policies::from_json(SCANNING).expect("the default policy"));
    let flow = Rc::new(Policies::from_json(SCANNING_FLOW).expect("the default policy"));
    let started = std::time::Instant::now();
    // Keyed by format, property, and whether the body starts with a byte-order mark (the most
    // frequent cause so far, which would otherwise hide the others).
    let mut failures: BTreeMap<(&'static str, String, bool), (Case, Failure)> = BTreeMap::new();
    let mut outcomes: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    let mut used: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut by_property: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut total = 0;
    let (mut max_growth, mut over_markers) = (i64::MIN, 0);
    for case in cases {
        total += 1;
        for u in &case.used {
            *used.entry(u).or_default() += 1;
        }
        let what = case.what.clone();
        let outcome = match run(&policy, &case).and_then(|r| same_with_headers_gone(&policy, &flow, &case).map(|_| r)) {
            Ok(r) => {
                max_growth = max_growth.max(r.growth);
                over_markers += usize::from(r.growth > 0);
                match r.outcome {
                    Outcome::Replied(s) => format!("replied {s}"),
                    o => format!("{o:?}").to_lowercase(),
                }
            }
            Err(f) => {
                *by_property.entry(f.property).or_default() += 1;
                let bom = case.input().starts_with(b"\xEF\xBB\xBF");
                failures.entry((f.property, case.what.clone(), bom)).or_insert((case, f));
                "FAILED".into()
            }
        };
        *outcomes.entry(what).or_default().entry(outcome).or_default() += 1;
    }
    println!("{name}: {total} cases in {:.1?}", started.elapsed());
    for (what, o) in &outcomes {
        println!("  {what}: {o:?}");
    }
    println!("  constructs (cases with each): {used:?}");
    println!(
        "  passing cases that grew beyond the markers (by synthetic flush events): {over_markers}, at most by {max_growth} bytes"
    );
    println!("  failing cases per property: {by_property:?}");
    if failures.is_empty() {
        return;
    }
    let mut text = format!("{name}: {} failing (property, format, byte-order mark) groups\n", failures.len());
    for (case, f) in failures.values() {
        text += &report(&policy, case, f);
    }
    panic!("{text}");
}

// ---------------------------------------------------------------------------------------------
// The suites.

#[test]
fn no_answer_carries_a_planted_value_whatever_its_label_json_or_chunking() {
    let mut rng = Rng::new(seed(0x1057_f00d));
    let per_format = scaled(500);
    let cases: Vec<Case> =
        FORMATS.iter().flat_map(|f| (0..per_format).map(|_| answer_case(f, &mut rng)).collect::<Vec<_>>()).collect();
    // Every generated answer plants values a client would read.
    let policy = Policies::from_json(SCANNING).expect("the default policy");
    for f in FORMATS {
        let mut probe = Rng::new(7);
        let mut c = answer_case(f, &mut probe);
        c.cuts.clear();
        let seen = client(c.framing, &c.input());
        let all: String = seen.streams.values().cloned().collect();
        assert!(SECRETS.iter().filter(|s| all.contains(*s)).count() >= 2, "{}: {seen:?}", f.name);
        assert_ne!(expected(&policy, c.framing, &c.input()).streams, seen.streams, "{}", f.name);
    }
    hunt("answers", cases.into_iter());
}

#[test]
fn no_prompt_reaches_the_upstream_with_a_planted_value() {
    let mut rng = Rng::new(seed(0x9e0_7e57));
    let cases: Vec<Case> = (0..scaled(2000)).map(|_| prompt_case(&mut rng)).collect();
    hunt("prompts", cases.into_iter());
}

#[test]
fn no_form_field_reaches_the_upstream_with_a_planted_value() {
    let mut rng = Rng::new(seed(0xf0_4d));
    let cases: Vec<Case> = (0..scaled(1000)).map(|_| form_case(&mut rng)).collect();
    hunt("forms", cases.into_iter());
}

// ---------------------------------------------------------------------------------------------
// Failures the hunt found, pinned as their smallest reproductions (each one property, by hand).

/// Replays an answer labelled as an event stream under the default policy.
fn replay(path: &'static str, chunks: &[&[u8]]) -> (common::Delivered, AuditRecord) {
    let mut x = Exchange::new(Rc::new(Policies::from_json(SCANNING).expect("the default policy")));
    x.on_request_head(&RequestHead { method: "POST", path, ..Default::default() }, &Verified::tls("TLSv1.3"), true);
    x.on_response_head(
        &ResponseHead { status: 200, content_type: Some(SSE), content_encoding: None, ..Default::default() },
        false,
    );
    let mut d = common::Delivered::default();
    common::drive_body(&mut x, Side::Response, chunks, &mut d, |_| {});
    let audit = x.audit().clone();
    (d, audit)
}

fn assert_clean(what: &str, framing: Framing, d: &common::Delivered) {
    if let Err(f) =
        check_bytes("the bytes forwarded", &d.bytes).and_then(|_| check_client(what, &client(framing, &d.bytes)))
    {
        panic!("{what}: {}\n  forwarded {:?}", f.detail, String::from_utf8_lossy(&d.bytes));
    }
}

/// Property 1. A UTF-8 byte-order mark that the network splits (`\xEF\xBB` | `\xBF{...`): the
/// first bytes alone look like text, so the body is redacted as plain text and JSON escapes are
/// never decoded. `json.loads` on the bytes (httpx's `Response.json()`) and WHATWG event-stream
/// parsers skip the mark and read the value.
#[test]
fn a_byte_order_mark_split_across_chunks_changes_nothing() {
    let doc = "\u{FEFF}{\"t\":\"mail x\\u0040y.io\"}";
    let sse =
        "\u{FEFF}data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"mail x\\u0040y.io\"}}]}\n\ndata: [DONE]\n\n";
    for (framing, body) in [(Framing::Doc, doc), (Framing::Sse, sse)] {
        for cut in [1, 2] {
            let b = body.as_bytes();
            let (d, _) = replay("/v1/chat/completions", &[&b[..cut], &b[cut..]]);
            assert_clean(&format!("{framing:?} cut at {cut}"), framing, &d);
        }
    }
}

/// Property 1 (and 3). A byte-order mark before an event stream, whole in the first chunk: the
/// sniffer skips it, but the event framer does not, so the first line's field is `\u{FEFF}data`
/// (an unknown field, scanned as raw text) and its data is not read as JSON nor joined to the
/// stream. WHATWG parsers (browsers' `EventSource`, `eventsource-parser`) drop the mark and read
/// it as data. With the first event's JSON on several `data:` lines the answer is refused instead.
#[test]
fn a_byte_order_mark_before_an_event_stream_is_skipped_as_whatwg_parsers_skip_it() {
    let escaped =
        "\u{FEFF}data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"mail x\\u0040y.io\"}}]}\n\ndata: [DONE]\n\n";
    let split = "\u{FEFF}data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"mail x\"}}]}\n\n\
                 data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"@y.io now\"}}]}\n\ndata: [DONE]\n\n";
    for body in [escaped, split] {
        let (d, _) = replay("/v1/chat/completions", &[body.as_bytes()]);
        assert_clean("an event stream after a byte-order mark", Framing::Sse, &d);
    }
}

/// Property 1. openai-python joins every string of a chat delta, so the filter reads an unknown
/// delta field (`x_note`) as one running text. A value that one event carries whole, bounded by
/// the end of its string, is then judged glued to the next event's fragment
/// (`AKIAIOSFODNN7Q2MZ9VKmore`), where no detector's boundary holds, and goes out verbatim, moved
/// into the next event. A reader of single events sees the key.
#[test]
fn a_delta_field_is_judged_as_the_client_joins_it() {
    // The SDK joins every string of a delta: `key AKIA...Q2MZ9VK` + `more` is one text, in
    // which the key is glued to `more` (whole-text redaction leaves it too); delimited, it is found.
    for (second, want) in [("more", "key AKIAIOSFODNN7Q2MZ9VKmore"), (" more", "key [REDACTED:AWS_ACCESS_KEY_ID] more")]
    {
        let body = format!(
            "data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"x_note\":\"key AKIAIOSFODNN7Q2MZ9VK\"}}}}]}}\n\n\
             data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"x_note\":\"{second}\"}}}}]}}\n\ndata: [DONE]\n\n"
        );
        let (d, _) = replay("/v1/chat/completions", &[body.as_bytes()]);
        assert_clean("an unknown delta field", Framing::Sse, &d);
        let joined: String = String::from_utf8_lossy(&d.bytes)
            .split("\n\n")
            .filter_map(|ev| serde_json::from_str::<Value>(ev.strip_prefix("data: ")?).ok())
            .filter_map(|v| v["choices"][0]["delta"]["x_note"].as_str().map(str::to_owned))
            .collect();
        assert_eq!(joined, want);
    }
}

/// Property 4. Text held at a stream's end goes out in a synthetic event copying the stream's
/// last event. When one event carries many held texts (many choices, or many delta fields),
/// each gets its own full copy: output grows with texts × event size.
#[test]
fn texts_held_in_one_event_do_not_each_send_a_copy_of_it() {
    let n = 100;
    let choices: Vec<String> =
        (0..n).map(|i| format!("{{\"index\":{i},\"delta\":{{\"content\":\"call 555\"}}}}")).collect();
    let fields: Vec<String> = (0..n).map(|i| format!("\"f{i}\":\"call 555\"")).collect();
    let pad = "p".repeat(4000);
    for body in [
        format!("data: {{\"choices\":[{}]}}\n\ndata: [DONE]\n\n", choices.join(",")),
        format!(
            "data: {{\"pad\":\"{pad}\",\"choices\":[{{\"index\":0,\"delta\":{{{}}}}}]}}\n\ndata: [DONE]\n\n",
            fields.join(",")
        ),
    ] {
        let (d, audit) = replay("/v1/chat/completions", &[body.as_bytes()]);
        let findings: usize = audit.response.findings.values().map(|&n| n as usize).sum();
        let bound = 2 * body.len() + PER_FINDING * findings;
        assert!(d.bytes.len() <= bound, "{} bytes out for {} in ({findings} findings)", d.bytes.len(), body.len());
    }
}

/// Property 1. Held text goes out at a stream's end in a synthetic event built from the
/// stream's last event as it arrived: its `id:` line (browsers expose it as `lastEventId`) is
/// copied unredacted, though the event itself went out with the id redacted.
#[test]
fn a_synthetic_flush_event_carries_no_line_of_its_template_unredacted() {
    let body = "event: content_block_delta\nid: jane.doe@acme-corp.com\n\
                data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"call 555\"}}\n\n\
                event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
    let (d, _) = replay("/v1/messages", &[body.as_bytes()]);
    assert_clean("a synthetic event", Framing::Sse, &d);
}
