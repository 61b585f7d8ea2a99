//! A streamed response body (SSE, NDJSON or raw text), redacted event by event.

use serde_json::Value;

use super::fields::{self, Ends, Field, Key};
use super::text::{TextStream, Utf8Decoder};
use crate::audit::DirectionAudit;
use crate::config::Mode;
use crate::detect::{Action, Engine, Finding};
use crate::wire::json::{self, Edit, Seg};
use crate::wire::sse::{LineFramer, SseEvent, SseFramer};
use crate::wire::{Api, ErrorShape};

/// How a streamed body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `text/event-stream`.
    Sse,
    /// One JSON document per line.
    Ndjson,
    /// Plain text.
    Text,
}

/// Why a stream was cut off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamStop {
    /// A `block` rule fired; the detector or rule name.
    Blocked(String),
    /// More undecided text than `max_holdback_bytes` piled up.
    HoldbackExceeded,
    /// The bytes could not be read (not UTF-8).
    Unreadable,
}

impl StreamStop {
    /// The audit `reason`.
    pub fn reason(&self) -> String {
        match self {
            StreamStop::Blocked(rule) => format!("rule:{rule}"),
            StreamStop::HoldbackExceeded => "holdback_exceeded".into(),
            StreamStop::Unreadable => "malformed_response".into(),
        }
    }

    fn message(&self) -> String {
        match self {
            StreamStop::Blocked(rule) => {
                format!("response blocked by inferguard policy (rule {rule})")
            }
            StreamStop::HoldbackExceeded => "response stopped by inferguard: too much undecided text held back".into(),
            StreamStop::Unreadable => "response stopped by inferguard: the stream is not readable text".into(),
        }
    }
}

/// Holdback statistics, in characters of held text after each piece of text was fed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Holdback {
    /// Pieces of text fed.
    pub samples: u64,
    /// Sum of held characters over all samples.
    pub total: u64,
    /// The largest holdback seen.
    pub max: u64,
}

impl Holdback {
    /// Mean held characters per sample.
    pub fn mean(&self) -> f64 {
        if self.samples == 0 {
            0.0
        } else {
            self.total as f64 / self.samples as f64
        }
    }
}

struct Text {
    key: Key,
    stream: TextStream,
    /// The last event that carried this stream's text, as sent: the shape of the event that
    /// carries held text out when the stream ends without another delta.
    template: Option<Template>,
}

#[derive(Clone)]
struct Template {
    sse: Option<SseEvent>,
    json: Vec<u8>,
}

/// Redacts one streamed response body.
///
/// Call order: [`ResponseStream::push`] with each body chunk as it arrives, forwarding what it
/// returns; [`ResponseStream::finish`] at the end of the body, forwarding what it returns. After
/// [`ResponseStream::stopped`] turns `Some`, every further byte is dropped.
pub struct ResponseStream {
    framing: Framing,
    api: Api,
    max_holdback: usize,
    max_event: usize,
    mode: Mode,
    sse: SseFramer,
    lines: LineFramer,
    utf8: Utf8Decoder,
    texts: Vec<Text>,
    stop: Option<StreamStop>,
    holdback: Holdback,
    /// Events with a `sequence_number` (OpenAI Responses): the last number sent, and how many
    /// synthetic events this stream inserted, by which every later upstream number is raised.
    last_sequence: Option<u64>,
    inserted: u64,
}

impl ResponseStream {
    /// A stream of `framing` for `api`, holding at most `max_holdback` undecided bytes per
    /// logical text stream.
    pub fn new(framing: Framing, api: Api, max_holdback: usize) -> ResponseStream {
        ResponseStream::with_mode(framing, api, max_holdback, Mode::Redact)
    }

    /// Like [`ResponseStream::new`], with findings handled as `mode` says.
    pub fn with_mode(framing: Framing, api: Api, max_holdback: usize, mode: Mode) -> ResponseStream {
        ResponseStream {
            framing,
            api,
            max_holdback,
            max_event: 1 << 20,
            mode,
            sse: SseFramer::default(),
            lines: LineFramer::default(),
            utf8: Utf8Decoder::default(),
            texts: Vec::new(),
            stop: None,
            holdback: Holdback::default(),
            last_sequence: None,
            inserted: 0,
        }
    }

    /// Bounds the bytes of one event (or NDJSON line) that may be held while it is incomplete
    /// (default 1 MiB): past it the stream is stopped, so its memory stays bounded.
    pub fn max_event_bytes(mut self, n: usize) -> ResponseStream {
        self.max_event = n;
        self
    }

    /// Why the stream was cut off, if it was.
    pub fn stopped(&self) -> Option<&StreamStop> {
        self.stop.as_ref()
    }

    /// Holdback statistics so far.
    pub fn holdback(&self) -> Holdback {
        self.holdback
    }

    /// Bytes currently held (framing and text).
    pub fn held_bytes(&self) -> usize {
        self.sse.held() + self.lines.held() + self.texts.iter().map(|t| t.stream.held()).sum::<usize>()
    }

    /// Feeds a chunk of the body; returns the bytes to forward now.
    pub fn push(&mut self, engine: &Engine, chunk: &[u8], audit: &mut DirectionAudit) -> Vec<u8> {
        let mut out = Vec::new();
        if self.stop.is_some() {
            return out;
        }
        match self.framing {
            Framing::Sse => {
                for ev in self.sse.push(chunk) {
                    self.sse_event(engine, ev, audit, &mut out);
                }
            }
            Framing::Ndjson => {
                for line in self.lines.push(chunk) {
                    self.line(engine, line, audit, &mut out);
                }
            }
            Framing::Text => match self.utf8.push(chunk) {
                Ok(text) => self.raw_text(engine, &text, audit, &mut out),
                Err(_) => self.halt(StreamStop::Unreadable, &mut out),
            },
        }
        if self.sse.held().max(self.lines.held()) > self.max_event {
            self.halt(StreamStop::HoldbackExceeded, &mut out);
        }
        out
    }

    /// Ends the body; returns the last bytes to forward (held text, flushed).
    pub fn finish(&mut self, engine: &Engine, audit: &mut DirectionAudit) -> Vec<u8> {
        let mut out = Vec::new();
        if self.stop.is_some() {
            return out;
        }
        match self.framing {
            Framing::Sse => {
                if let Some(ev) = self.sse.finish() {
                    self.sse_event(engine, ev, audit, &mut out);
                }
            }
            Framing::Ndjson => {
                if let Some(line) = self.lines.finish() {
                    self.line(engine, line, audit, &mut out);
                }
            }
            Framing::Text => {
                if self.utf8.finish().is_err() {
                    self.halt(StreamStop::Unreadable, &mut out);
                }
            }
        }
        if self.stop.is_none() {
            self.flush(engine, Ends::All, &[], audit, &mut out);
        }
        out
    }

    fn sse_event(&mut self, engine: &Engine, ev: SseEvent, audit: &mut DirectionAudit, out: &mut Vec<u8>) {
        if self.stop.is_some() {
            return;
        }
        let Some(data) = ev.data.as_deref() else {
            // Comments, keep-alives, id-only events: nothing to scan.
            if std::str::from_utf8(&ev.raw).is_err() {
                return self.halt(StreamStop::Unreadable, out);
            }
            out.extend_from_slice(&ev.raw);
            return;
        };
        if data.trim() == "[DONE]" {
            self.flush(engine, Ends::All, &[], audit, out);
            if self.stop.is_none() {
                out.extend_from_slice(&ev.raw);
            }
            return;
        }
        let Ok(doc) = serde_json::from_slice::<Value>(data.as_bytes()) else {
            // Not JSON: the data of such events is one running text.
            let key = Key { slot: u64::MAX, kind: "sse_data", sub: 0 };
            let mut released = String::new();
            if let Some(findings) = self.feed(engine, key, data, &mut released) {
                if self.note(&findings, audit, out) && !released.is_empty() {
                    out.extend_from_slice(&ev.with_data(&released));
                }
            } else {
                self.halt(StreamStop::HoldbackExceeded, out);
            }
            return;
        };
        let ends = fields::ends(&doc, ev.event.as_deref());
        if let Some(json) = self.json_event(engine, data.as_bytes(), &doc, &ends, Some(&ev), audit, out) {
            if json == data.as_bytes() {
                out.extend_from_slice(&ev.raw);
            } else {
                out.extend_from_slice(&ev.with_data(&String::from_utf8_lossy(&json)));
            }
        }
    }

    fn line(&mut self, engine: &Engine, line: Vec<u8>, audit: &mut DirectionAudit, out: &mut Vec<u8>) {
        let body_end = line.iter().rposition(|c| !matches!(c, b'\n' | b'\r')).map_or(0, |i| i + 1);
        let (body, eol) = line.split_at(body_end);
        if body.iter().all(u8::is_ascii_whitespace) {
            out.extend_from_slice(&line);
            return;
        }
        let Ok(doc) = serde_json::from_slice::<Value>(body) else {
            return self.halt(StreamStop::Unreadable, out);
        };
        let ends = fields::ends(&doc, None);
        if let Some(json) = self.json_event(engine, body, &doc, &ends, None, audit, out) {
            out.extend_from_slice(&json);
            out.extend_from_slice(eol);
        }
    }

    fn raw_text(&mut self, engine: &Engine, text: &str, audit: &mut DirectionAudit, out: &mut Vec<u8>) {
        let key = Key { slot: 0, kind: "text", sub: 0 };
        let mut released = String::new();
        match self.feed(engine, key, text, &mut released) {
            Some(findings) => {
                if self.note(&findings, audit, out) {
                    out.extend_from_slice(released.as_bytes());
                }
            }
            None => self.halt(StreamStop::HoldbackExceeded, out),
        }
    }

    /// Redacts one JSON event. Streams that end with it are flushed: those with a fragment in it
    /// finish inside it, the others in synthetic events emitted before it. Returns the event's
    /// JSON to send, or `None` when the stream was stopped.
    #[allow(clippy::too_many_arguments)]
    fn json_event(
        &mut self,
        engine: &Engine,
        data: &[u8],
        doc: &Value,
        ends: &[Ends],
        sse: Option<&SseEvent>,
        audit: &mut DirectionAudit,
        out: &mut Vec<u8>,
    ) -> Option<Vec<u8>> {
        let ending = |key: &Key| ends.iter().any(|e| matches!(e, Ends::All) || *e == Ends::Slot(key.slot));
        let mut carried: Vec<Key> = Vec::new();
        let mut findings: Vec<Finding> = Vec::new();
        let mut overflow = false;
        let mut removed = 0;
        let token_details = |path: &[Seg], kind| {
            fields::token_details(path).then(|| {
                removed += 1;
                fields::emptied(kind)
            })
        };
        let rewritten = json::rewrite_strings_replacing(
            data,
            |path, s| match fields::classify(path, doc) {
                Field::Opaque => None,
                Field::Whole => {
                    let (found, spans) = redact_spans(engine, self.mode, path.iter().rev().find_map(Seg::key), s)?;
                    findings.extend(found);
                    Some(Edit::Spans(spans))
                }
                Field::Delta(key) => {
                    let mut released = String::new();
                    match self.feed(engine, key, s, &mut released) {
                        Some(f) => findings.extend(f),
                        None => overflow = true,
                    }
                    if ending(&key) {
                        if let Some(i) = self.texts.iter().position(|t| t.key == key) {
                            let mut t = self.texts.remove(i);
                            findings.extend(t.stream.finish(engine, &mut released));
                        }
                    }
                    carried.push(key);
                    Some(Edit::Whole(released))
                }
            },
            token_details,
        );
        for _ in 0..removed {
            audit.remove("token_details");
        }
        let json = match rewritten {
            Ok(j) => j.unwrap_or_else(|| data.to_vec()),
            Err(_) => {
                self.halt(StreamStop::Unreadable, out);
                return None;
            }
        };
        if overflow {
            self.halt(StreamStop::HoldbackExceeded, out);
            return None;
        }
        for e in ends {
            self.flush(engine, *e, &carried, audit, out);
        }
        if !self.note(&findings, audit, out) {
            return None;
        }
        let json = match doc.get("sequence_number").and_then(Value::as_u64) {
            // Nothing inserted yet: the upstream's number stands.
            Some(n) if self.inserted == 0 => {
                self.last_sequence = Some(n);
                json
            }
            Some(n) => self.renumber(json, n + self.inserted),
            None => json,
        };
        for key in carried {
            if let Some(t) = self.texts.iter_mut().find(|t| t.key == key) {
                t.template = Some(Template { sse: sse.cloned(), json: json.clone() });
            }
        }
        Some(json)
    }

    /// Feeds text to the logical stream `key`; `None` if its holdback bound was exceeded.
    fn feed(&mut self, engine: &Engine, key: Key, text: &str, out: &mut String) -> Option<Vec<Finding>> {
        let max = self.max_holdback;
        let i = match self.texts.iter().position(|t| t.key == key) {
            Some(i) => i,
            None => {
                self.texts.push(Text { key, stream: TextStream::new(max), template: None });
                self.texts.len() - 1
            }
        };
        let t = &mut self.texts[i];
        let r = t.stream.push(engine, text, out).ok();
        let held = t.stream.held() as u64;
        self.holdback.samples += 1;
        self.holdback.total += held;
        self.holdback.max = self.holdback.max.max(held);
        r
    }

    /// Ends the streams selected by `which` (except those in `skip`, which ended inside the
    /// current event), sending their held text in events shaped like their last one.
    /// `json` with its top-level `sequence_number` set to `n`, which becomes the last one sent.
    fn renumber(&mut self, json: Vec<u8>, n: u64) -> Vec<u8> {
        self.last_sequence = Some(n);
        json::set_top_level_number(&json, "sequence_number", n).unwrap_or(json)
    }

    fn flush(&mut self, engine: &Engine, which: Ends, skip: &[Key], audit: &mut DirectionAudit, out: &mut Vec<u8>) {
        let mut i = 0;
        while i < self.texts.len() {
            let k = self.texts[i].key;
            let selected = match which {
                Ends::All => true,
                Ends::Slot(s) => k.slot == s,
            };
            if !selected || skip.contains(&k) {
                i += 1;
                continue;
            }
            let mut t = self.texts.remove(i);
            let mut held = String::new();
            let findings = t.stream.finish(engine, &mut held);
            if !self.note(&findings, audit, out) {
                return;
            }
            if held.is_empty() {
                continue;
            }
            match (&t.template, self.framing) {
                (_, Framing::Text) => out.extend_from_slice(held.as_bytes()),
                (Some(tpl), _) => {
                    // Parsed once per flush, not once per string of the template.
                    let doc: Value = serde_json::from_slice(&tpl.json).unwrap_or(Value::Null);
                    let synthetic = json::rewrite_strings(&tpl.json, |path, _| match fields::classify(path, &doc) {
                        Field::Delta(key) if key == k => Some(held.clone()),
                        Field::Delta(_) => Some(String::new()),
                        _ => None,
                    });
                    let mut json = synthetic.ok().flatten().unwrap_or_else(|| tpl.json.clone());
                    if doc.get("sequence_number").is_some() {
                        // An inserted event takes the next number; later ones move up by one.
                        let next = self.last_sequence.map_or(0, |n| n + 1);
                        self.inserted += 1;
                        json = self.renumber(json, next);
                    }
                    match &tpl.sse {
                        Some(ev) => out.extend_from_slice(&ev.with_data(&String::from_utf8_lossy(&json))),
                        None => {
                            out.extend_from_slice(&json);
                            out.push(b'\n');
                        }
                    }
                }
                (None, _) => {
                    // Raw SSE data without a JSON template.
                    if self.framing == Framing::Sse {
                        out.extend_from_slice(b"data: ");
                        out.extend_from_slice(held.as_bytes());
                        out.extend_from_slice(b"\n\n");
                    }
                }
            }
        }
    }

    /// Counts findings; on a `block` finding, stops the stream. Returns whether it goes on.
    fn note(&mut self, findings: &[Finding], audit: &mut DirectionAudit, out: &mut Vec<u8>) -> bool {
        audit.count(findings);
        if let Some(f) = findings.iter().find(|f| f.action == Action::Block) {
            self.halt(StreamStop::Blocked(f.detector.to_string()), out);
            return false;
        }
        true
    }

    /// Stops the stream: one error in the stream's own format, then nothing more.
    fn halt(&mut self, stop: StreamStop, out: &mut Vec<u8>) {
        if self.stop.is_some() {
            return;
        }
        let msg = stop.message();
        let code = match &stop {
            StreamStop::Blocked(_) => "content_blocked",
            StreamStop::HoldbackExceeded => "holdback_exceeded",
            StreamStop::Unreadable => "malformed_response",
        };
        out.extend_from_slice(error_event(self.framing, self.api, code, &msg).as_bytes());
        self.stop = Some(stop);
        // Nothing more is forwarded: free what was held.
        self.texts.clear();
        self.sse = SseFramer::default();
        self.lines = LineFramer::default();
    }
}

/// What redacting one complete string value under `mode` finds and changes: the findings, and
/// the spans of `text` to replace with their replacements. `None` when nothing was found.
pub fn redact_spans(engine: &Engine, mode: Mode, key: Option<&str>, text: &str) -> Option<(Vec<Finding>, Spans)> {
    let mut findings = engine.find_field(key, text);
    if findings.is_empty() {
        return None;
    }
    mode.apply(&mut findings);
    let spans = findings.iter().filter_map(|f| Some((f.start..f.end, engine.replacement(text, f)?))).collect();
    Some((findings, spans))
}

/// Byte ranges of a text and what replaces each, in order.
pub type Spans = Vec<(std::ops::Range<usize>, String)>;

/// `text` with `spans` replaced.
pub fn apply_spans(text: &str, spans: &[(std::ops::Range<usize>, String)]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for (r, new) in spans {
        out.push_str(&text[last..r.start]);
        out.push_str(new);
        last = r.end;
    }
    out.push_str(&text[last..]);
    out
}

/// The error a client of `api` understands, framed for the stream.
pub fn error_event(framing: Framing, api: Api, code: &str, message: &str) -> String {
    let m = json::encode_string(message);
    let c = json::encode_string(code);
    match (framing, api) {
        (Framing::Sse, Api::AnthropicMessages) => {
            format!("event: error\ndata: {}\n\n", ErrorShape::Anthropic.body(403, code, message))
        }
        (Framing::Sse, Api::OpenAiResponses) => format!(
            "event: error\ndata: {{\"type\":\"error\",\"code\":{c},\"message\":{m},\"param\":null,\"error\":{{\"type\":\"invalid_request_error\",\"code\":{c},\"message\":{m}}}}}\n\n"
        ),
        (Framing::Sse, Api::Tgi) => format!("data: {{\"error\":{m},\"error_type\":{c}}}\n\n"),
        (Framing::Sse, _) => format!("data: {}\n\n", ErrorShape::OpenAi.body(403, code, message)),
        (Framing::Ndjson, _) => format!("{{\"error\":{m}}}\n"),
        (Framing::Text, _) => format!("\n[inferguard: {message}]\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::DetectConfig;

    fn engine() -> Engine {
        Engine::new(&DetectConfig::default()).unwrap()
    }

    #[test]
    fn an_event_that_never_ends_is_cut_off_in_bounded_memory() {
        let e = engine();
        let mut s = ResponseStream::new(Framing::Sse, Api::OpenAiChat, 1024).max_event_bytes(100);
        let mut audit = DirectionAudit::default();
        assert!(s.push(&e, b"data: {\"choices\":[", &mut audit).is_empty());
        let out = s.push(&e, &[b' '; 200], &mut audit);
        assert_eq!(s.stopped(), Some(&StreamStop::HoldbackExceeded));
        assert!(String::from_utf8(out)
            .unwrap()
            .starts_with("data: {\"error\":{\"message\":\"response stopped by inferguard"));
        assert_eq!(s.held_bytes(), 0);
        assert!(s.push(&e, b"\n\ndata: more\n\n", &mut audit).is_empty());
        assert!(s.finish(&e, &mut audit).is_empty());
    }

    #[test]
    fn undecidable_text_past_the_holdback_bound_fails_closed() {
        let e = engine();
        let mut s = ResponseStream::new(Framing::Ndjson, Api::OllamaChat, 16);
        let mut audit = DirectionAudit::default();
        let line = format!("{{\"message\":{{\"content\":\"{}\"}},\"done\":false}}\n", "a".repeat(40));
        let out = String::from_utf8(s.push(&e, line.as_bytes(), &mut audit)).unwrap();
        assert_eq!(out, "{\"error\":\"response stopped by inferguard: too much undecided text held back\"}\n");
        assert_eq!(s.stopped().map(StreamStop::reason).as_deref(), Some("holdback_exceeded"));
    }

    #[test]
    fn bytes_that_are_not_utf8_stop_the_stream_in_its_own_format() {
        let e = engine();
        for (framing, api, want) in [
            (
                Framing::Text,
                Api::Other,
                "\n[inferguard: response stopped by inferguard: the stream is not readable text]\n",
            ),
            (
                Framing::Ndjson,
                Api::OllamaGenerate,
                "{\"error\":\"response stopped by inferguard: the stream is not readable text\"}\n",
            ),
        ] {
            let mut s = ResponseStream::new(framing, api, 1024);
            let mut audit = DirectionAudit::default();
            let out = s.push(&e, b"ok \xff\xfe\n", &mut audit);
            assert_eq!(String::from_utf8(out).unwrap(), want);
            assert_eq!(s.stopped(), Some(&StreamStop::Unreadable));
        }
    }

    #[test]
    fn raw_text_streams_are_redacted_across_chunks() {
        let e = engine();
        let mut s = ResponseStream::new(Framing::Text, Api::Other, 1024);
        let mut audit = DirectionAudit::default();
        let mut out = Vec::new();
        for chunk in [&b"write a"[..], b"@b.io or \xc3", b"\xa9 c@d.io done"] {
            out.extend(s.push(&e, chunk, &mut audit));
        }
        out.extend(s.finish(&e, &mut audit));
        assert_eq!(String::from_utf8(out).unwrap(), "write [REDACTED:EMAIL] or é [REDACTED:EMAIL] done");
        assert_eq!(audit.findings.get("email"), Some(&2));
    }
}
