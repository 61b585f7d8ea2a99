//! What each fuzz target checks, for any input: not only that nothing panics, but the invariants a
//! user relies on. Shared by the libFuzzer targets (`make fuzz`) and by the main crate's
//! `tests/fuzz_replay.rs`, which runs every committed corpus file through the same checks in
//! `make test`.
//!
//! Inputs are raw bytes; the first bytes choose how the exchange is set up (the API path, the
//! label, compression, the chunking, whether headers are held), the rest is the body.

use std::rc::Rc;

use inferguard::detect::{DetectConfig, Engine};
use inferguard::exchange::{Exchange, RequestHead, ResponseHead, Side, Then};
use inferguard::policy::{Policies, Verified};
use inferguard::Decision;

const PATHS: [&str; 8] = [
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/responses",
    "/v1/messages",
    "/api/chat",
    "/api/generate",
    "/generate_stream",
    "/v1/embeddings",
];

const LABELS: [Option<&str>; 8] = [
    Some("application/json"),
    Some("text/event-stream"),
    Some("application/x-ndjson"),
    Some("text/plain"),
    Some("application/octet-stream"),
    None,
    Some("text/event-stream; charset=utf-16"),
    Some("multipart/form-data; boundary=b"),
];

/// The most an answer or a prompt may grow per finding (the longest marker and its escaping).
const GROWTH_PER_FINDING: usize = 96;
/// And once: an error body or an error event, a flushed event's framing.
const GROWTH_ONCE: usize = 1024;

thread_local! {
    static HELD: Rc<Policies> = Rc::new(Policies::from_json(r#"{"hold_headers": true}"#).unwrap());
    static FLOWING: Rc<Policies> = Rc::new(Policies::from_json("").unwrap());
    static ENGINE: Engine = Engine::new(&DetectConfig::default()).unwrap();
}

/// How the first bytes of an input set the exchange up.
struct Setup<'a> {
    path: &'static str,
    label: Option<&'static str>,
    gzip: bool,
    held: bool,
    chunk: usize,
    body: &'a [u8],
}

fn setup(data: &[u8]) -> Option<Setup<'_>> {
    let (&a, &b, &c) = (data.first()?, data.get(1)?, data.get(2)?);
    let body = &data[3..];
    Some(Setup {
        path: PATHS[usize::from(a) % PATHS.len()],
        label: LABELS[usize::from(b) % LABELS.len()],
        gzip: a & 0x80 != 0,
        held: b & 0x80 != 0,
        chunk: 1 + usize::from(c),
        body,
    })
}

/// What went out of one direction.
#[derive(Default)]
struct Out {
    bytes: Vec<u8>,
    reply: Option<(u16, String)>,
}

/// Feeds `body` in `chunk`-byte pieces as Envoy would (the host buffer grows while the filter
/// holds; a replacement replaces what it holds).
fn drive(x: &mut Exchange, side: Side, body: &[u8], chunk: usize, out: &mut Out) {
    let mut held: Vec<u8> = Vec::new();
    let pieces: Vec<&[u8]> = if body.is_empty() { vec![&[][..]] } else { body.chunks(chunk).collect() };
    for (i, piece) in pieces.iter().enumerate() {
        held.extend_from_slice(piece);
        let end = i + 1 == pieces.len();
        let snapshot = held.clone();
        let step = x.on_body(side, held.len(), end, &mut |s, n| snapshot[s..s + n].to_vec());
        if let Some(b) = step.body {
            held = b;
        }
        match step.then {
            Then::Forward => out.bytes.append(&mut held),
            Then::Hold => {}
            Then::Reply(r) => {
                out.reply = Some((r.status, r.body));
                return;
            }
        }
    }
}

/// A gzip member of `plain` (stored blocks: what matters is the framing, not the ratio).
fn gzip(plain: &[u8]) -> Vec<u8> {
    let mut v = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
    let mut blocks = plain.chunks(65535).peekable();
    if blocks.peek().is_none() {
        v.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(b) = blocks.next() {
        let n = b.len() as u16;
        v.push(u8::from(blocks.peek().is_none()));
        v.extend_from_slice(&n.to_le_bytes());
        v.extend_from_slice(&(!n).to_le_bytes());
        v.extend_from_slice(b);
    }
    v.extend_from_slice(&crc32(plain).to_le_bytes());
    v.extend_from_slice(&(plain.len() as u32).to_le_bytes());
    v
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// Every string a JSON client reads in `bytes`: the whole as one document, else each line (or
/// each SSE `data:` field) as one. Strings and keys, decoded.
fn client_strings(bytes: &[u8]) -> Vec<String> {
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::String(s) => out.push(s.clone()),
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            serde_json::Value::Object(m) => m.iter().for_each(|(k, v)| {
                out.push(k.clone());
                walk(v, out)
            }),
            _ => {}
        }
    }
    let mut out = Vec::new();
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(bytes) {
        walk(&v, &mut out);
        return out;
    }
    for line in bytes.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let line = line.strip_prefix(b"data:").map(|l| l.strip_prefix(b" ").unwrap_or(l)).unwrap_or(line);
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(line) {
            walk(&v, &mut out);
        }
    }
    out
}

/// Values the default engine would still rewrite in what a client reads of `bytes`.
pub fn surviving(bytes: &[u8]) -> Vec<String> {
    ENGINE.with(|e| {
        client_strings(bytes)
            .into_iter()
            .filter_map(|s| {
                let found: Vec<String> = e
                    .find_all(&s)
                    .into_iter()
                    .filter(|f| f.action.rewrites())
                    .map(|f| format!("{} {:?}", f.detector, &s[f.start..f.end]))
                    .collect();
                (!found.is_empty()).then(|| found.join(", "))
            })
            .collect()
    })
}

/// The checks of one direction's outcome.
fn check(what: &str, input: &[u8], out: &Out, audit: &inferguard::AuditRecord, side: Side) {
    let d = match side {
        Side::Request => &audit.request,
        Side::Response => &audit.response,
    };
    // Every byte that went out was scanned, or refused, or the record says why not; only a body
    // that is not UTF-8 text may pass as binary.
    if let Some(why) = d.unscanned_reason {
        assert_eq!(why, "binary", "{what}: unscanned for {why}");
        assert!(std::str::from_utf8(input).is_err(), "{what}: UTF-8 text passed as binary");
    }
    assert!(audit.decision != Decision::Allowed || d.scanned(), "{what}: allowed yet unscanned");
    let sent: &[u8] = match &out.reply {
        Some((_, body)) => body.as_bytes(),
        None => &out.bytes,
    };
    // Nothing the engine finds in what a client reads survives (redaction is complete).
    let left = surviving(sent);
    assert!(left.is_empty(), "{what}: survived: {left:?}\n sent {:?}", String::from_utf8_lossy(sent));
    // Growth only by markers (and one error).
    let findings: u64 = d.findings.values().map(|&n| u64::from(n)).sum();
    let bound = input.len() + GROWTH_ONCE + GROWTH_PER_FINDING * findings as usize;
    assert!(sent.len() <= bound, "{what}: {} bytes out of {} in, {findings} findings", sent.len(), input.len());
}

/// An answer from an untrusted upstream, whatever its bytes, label, compression and chunking.
pub fn answer(data: &[u8]) {
    let Some(s) = setup(data) else { return };
    let policies = if s.held { HELD.with(Rc::clone) } else { FLOWING.with(Rc::clone) };
    let mut x = Exchange::new(policies);
    let head = RequestHead { method: "POST", path: s.path, ..Default::default() };
    if !matches!(x.on_request_head(&head, &Verified::tls("TLSv1.3"), true).then, Then::Forward) {
        return;
    }
    let wire = if s.gzip { gzip(s.body) } else { s.body.to_vec() };
    let encoding = s.gzip.then_some("gzip");
    let step = x.on_response_head(
        &ResponseHead { status: 200, content_type: s.label, content_encoding: encoding, ..Default::default() },
        false,
    );
    let mut out = Out::default();
    if let Then::Reply(r) = step.then {
        out.reply = Some((r.status, r.body));
    } else {
        drive(&mut x, Side::Response, &wire, s.chunk, &mut out);
    }
    check("answer", s.body, &out, x.audit(), Side::Response);
}

/// A prompt from an untrusted client, whatever its bytes, label and chunking.
pub fn prompt(data: &[u8]) {
    let Some(s) = setup(data) else { return };
    let policies = if s.held { HELD.with(Rc::clone) } else { FLOWING.with(Rc::clone) };
    let mut x = Exchange::new(policies);
    let head = RequestHead { method: "POST", path: s.path, content_type: s.label, ..Default::default() };
    let step = x.on_request_head(&head, &Verified::tls("TLSv1.3"), false);
    let mut out = Out::default();
    match step.then {
        Then::Reply(r) => out.reply = Some((r.status, r.body)),
        _ => drive(&mut x, Side::Request, s.body, s.chunk, &mut out),
    }
    check("prompt", s.body, &out, x.audit(), Side::Request);
}

/// A plugin configuration: read without panicking, the same way twice; a refusal names where; one
/// that is accepted runs an exchange.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match Policies::from_json(text) {
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.is_empty());
            assert_eq!(Policies::from_json(text).unwrap_err().to_string(), msg, "not deterministic");
        }
        Ok(p) => {
            let _ = p.summary();
            let mut x = Exchange::new(Rc::new(p));
            let head = RequestHead { method: "POST", path: "/v1/chat/completions", ..Default::default() };
            let prompt = br#"{"model":"m","messages":[{"role":"user","content":"mail jane@x.io"}]}"#;
            if !matches!(x.on_request_head(&head, &Verified::tls("TLSv1.3"), false).then, Then::Reply(_)) {
                let _ = x.on_body(Side::Request, prompt.len(), true, &mut |s, n| prompt[s..s + n].to_vec());
            }
            let _ = x.audit().to_json();
        }
    }
}

/// `%XX` decoded (a bad escape left as it is), lossily as UTF-8: what a server reads of a target.
fn percent_decoded(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |j: usize| b.get(j).and_then(|c| (*c as char).to_digit(16));
        match (b[i], hex(i + 1), hex(i + 2)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A request target (path and query) from an untrusted client: what reaches the upstream and
/// what the access log prints hold no value the engine finds, in each path segment and each
/// query value as a server decodes them.
pub fn request_target(data: &[u8]) {
    let Ok(path) = std::str::from_utf8(data) else { return };
    let mut x = Exchange::new(HELD.with(Rc::clone));
    let step =
        x.on_request_head(&RequestHead { method: "GET", path, ..Default::default() }, &Verified::tls("TLSv1.3"), true);
    if matches!(step.then, Then::Reply(_)) {
        return;
    }
    let sent =
        step.headers.iter().find(|(h, _)| h == ":path").and_then(|(_, v)| v.clone()).unwrap_or_else(|| path.to_owned());
    for (what, target) in [("forwarded", sent.as_str()), ("logged", x.logged_path())] {
        let (p, q) = target.split_once('?').unwrap_or((target, ""));
        let pieces = p
            .split('/')
            .map(percent_decoded)
            .chain(q.split('&').flat_map(|kv| kv.split('=')).map(|v| percent_decoded(&v.replace('+', " "))));
        ENGINE.with(|e| {
            for piece in pieces {
                let left: Vec<_> = e.find_all(&piece).into_iter().filter(|f| f.action.rewrites()).collect();
                assert!(left.is_empty(), "{what} target {target:?}: {piece:?} holds {:?}", left[0].detector);
            }
        });
    }
}

/// The one JSON reader reads whatever a strict client (serde_json) reads, the same way: every
/// string and key a client keeps (the last of duplicate keys), decoded alike.
pub fn json_reader(data: &[u8]) {
    use inferguard::fuzzing::{Kind, Tape};
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    let mut want = Vec::new();
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::String(s) => out.push(format!("s:{s}")),
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            serde_json::Value::Object(m) => m.iter().for_each(|(k, v)| {
                out.push(format!("k:{k}"));
                walk(v, out)
            }),
            _ => {}
        }
    }
    walk(&v, &mut want);
    let mut tape = Tape::read(data).unwrap_or_else(|e| panic!("a document serde_json reads was refused: {e}"));
    tape.mark_shadowed();
    let mut got = Vec::new();
    for n in tape.nodes.iter().filter(|n| !n.shadowed) {
        if let Some(k) = &n.key {
            got.push(format!("k:{k}"));
        }
        if n.kind == Kind::Str {
            got.push(format!("s:{}", n.text));
        }
    }
    want.sort();
    got.sort();
    assert_eq!(got, want, "the reader and a client disagree");
}
