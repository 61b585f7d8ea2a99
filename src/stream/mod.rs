//! A body read the way its client reads it, redacted as it passes: server-sent events, JSON
//! lines, plain text, or one whole JSON document.
//!
//! [`BodyStream`] cuts a body into events (SSE events, NDJSON lines, runs of text), reads each
//! JSON event with the one JSON reader ([`crate::wire::json::Tape`]), hands every string, key,
//! number, comment and field value to the [`Redactor`], and rebuilds the event with only the
//! changed text edited. Strings that the client joins across events (a choice's content, a
//! content block's text; see [`fields`]) are fed to one running [`TextStream`] each, so a value
//! split across events, chunks, escapes or UTF-8 sequences is still found; held text goes out in
//! the next event of its stream, or in an event shaped like its last one before the event that
//! ends it.
//!
//! Whatever cannot be read (JSON a client would read but this reader cannot, bytes that are not
//! UTF-8, an event past the size bound) stops the body: one error in the body's own format, and
//! nothing after it.

pub mod fields;

use std::borrow::Cow;

use fields::{Ends, Field, Key};

use crate::redact::{apply_spans, Redactor, Spans, TextStream, Utf8Decoder};
use crate::wire::json::{encode_string, Edit, JsonError, Kind, Patch, Tape};
use crate::wire::sniff::Shape;
use crate::wire::sse::{LineFramer, SseEvent, SseFramer};
use crate::wire::{error_event, Api};

/// Why a body was cut off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamStop {
    /// A `block` finding; the detector or rule name.
    Blocked(String),
    /// More undecided text than `max_holdback_bytes`, or an event larger than the body bound.
    HoldbackExceeded,
    /// The bytes could not be read the way the client reads them.
    Unreadable(String),
}

impl StreamStop {
    /// The audit `reason`.
    pub fn reason(&self) -> String {
        match self {
            StreamStop::Blocked(rule) => format!("rule:{rule}"),
            StreamStop::HoldbackExceeded => "holdback_exceeded".into(),
            StreamStop::Unreadable(_) => "malformed_response".into(),
        }
    }

    /// The stable error code clients see.
    pub fn code(&self) -> &'static str {
        match self {
            StreamStop::Blocked(_) => "content_blocked",
            StreamStop::HoldbackExceeded => "holdback_exceeded",
            StreamStop::Unreadable(_) => "malformed_response",
        }
    }

    /// The message clients see (never a value).
    pub fn message(&self) -> String {
        match self {
            StreamStop::Blocked(rule) => format!("blocked by inferguard policy (rule {rule})"),
            StreamStop::HoldbackExceeded => "stopped by inferguard: too much undecided text held back".into(),
            StreamStop::Unreadable(why) => format!("inferguard could not read the body: {why}"),
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

/// What an answer says and shows of its own length, gathered as it is read: for the output
/// allowance ([`crate::limits::output_cost`]) and the audit record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// The largest output token count the answer reports ([`fields::output_tokens`]). The
    /// largest, never the sum: Anthropic's counts in a stream are cumulative, and a count
    /// given twice is one count.
    pub reported_tokens: Option<u64>,
    /// UTF-8 bytes of generated text: in a stream, every fragment of a running text (what
    /// a client joins: content, reasoning, tool-call arguments, ...); in a whole document,
    /// every string. The full text a stream repeats in its closing events is not counted again.
    pub text_bytes: u64,
}

impl Usage {
    fn report(&mut self, tokens: u64) {
        self.reported_tokens = Some(self.reported_tokens.map_or(tokens, |t| t.max(tokens)));
    }
}

/// Numbers shorter than this cannot hold a value any detector finds (the shortest, a card or a
/// phone number, has more digits).
const MIN_NUMBER_CHARS: usize = 7;

/// How much of a guarded field's earlier fragments is kept to judge the next one: the longest
/// value a guard must see whole (an e-mail address is at most 254 bytes).
const GUARD_TAIL: usize = 512;

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

struct Guard {
    key: Key,
    /// The end of what was sent of this field so far.
    tail: String,
}

/// Limits of one body.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Undecided text one logical stream may hold back.
    pub max_holdback: usize,
    /// Bytes of one incomplete event (or line) that may be held.
    pub max_event: usize,
}

/// Redacts one body read as `shape` (SSE, NDJSON or text; a whole JSON document goes through
/// [`whole_json`]).
///
/// Call order: [`BodyStream::push`] with each chunk as it arrives, forwarding what it returns;
/// [`BodyStream::finish`] at the end of the body, forwarding what it returns. Once
/// [`BodyStream::stopped`] is `Some`, everything returned so far ended with the error and every
/// further byte is dropped.
pub struct BodyStream {
    shape: Shape,
    api: Api,
    /// Token details are removed from answers only.
    response: bool,
    limits: Limits,
    sse: SseFramer,
    lines: LineFramer,
    utf8: Utf8Decoder,
    texts: Vec<Text>,
    guards: Vec<Guard>,
    stop: Option<StreamStop>,
    holdback: Holdback,
    /// Binary content: the tail of a text run held until the run ends.
    carry: Vec<u8>,
    /// The first bytes were seen (a leading byte-order mark is dropped).
    started: bool,
    /// Events with a `sequence_number` (OpenAI Responses): the last number sent, and how many
    /// synthetic events this stream inserted, by which every later upstream number is raised.
    last_sequence: Option<u64>,
    inserted: u64,
    /// An answer's length as it reports and shows it.
    usage: Usage,
}

impl BodyStream {
    /// A body of `shape` (`Sse`, `Ndjson`/`Json` read line by line, or `Text`) for `api`.
    pub fn new(shape: Shape, api: Api, response: bool, limits: Limits) -> BodyStream {
        BodyStream {
            shape,
            api,
            response,
            limits,
            sse: SseFramer::default(),
            lines: LineFramer::default(),
            utf8: Utf8Decoder::default(),
            texts: Vec::new(),
            guards: Vec::new(),
            stop: None,
            carry: Vec::new(),
            started: false,
            holdback: Holdback::default(),
            last_sequence: None,
            inserted: 0,
            usage: Usage::default(),
        }
    }

    /// How the body is read.
    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// Why the body was cut off, if it was.
    pub fn stopped(&self) -> Option<&StreamStop> {
        self.stop.as_ref()
    }

    /// Holdback statistics so far.
    pub fn holdback(&self) -> Holdback {
        self.holdback
    }

    /// The answer's length so far, as it reports and shows it (answers only: empty for a
    /// request).
    pub fn usage(&self) -> Usage {
        self.usage
    }

    /// Feeds a chunk of the body; returns the bytes to forward now.
    pub fn push(&mut self, r: &mut Redactor, chunk: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        if self.stop.is_some() {
            return out;
        }
        match self.shape {
            Shape::Sse => {
                // A stream may open with a byte-order mark, which event-stream readers drop.
                let chunk = if self.started { chunk } else { chunk.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(chunk) };
                self.started = true;
                for ev in self.sse.push(chunk) {
                    self.sse_event(r, ev, &mut out);
                }
            }
            Shape::Text => match self.utf8.push(chunk) {
                Ok(text) => self.raw_text(r, &text, &mut out),
                Err(_) => self.halt(StreamStop::Unreadable("it is not UTF-8 text".into()), &mut out),
            },
            Shape::Binary | Shape::Wide => self.binary(r, chunk, false, &mut out),
            _ => {
                for line in self.lines.push(chunk) {
                    self.line(r, line, &mut out);
                }
            }
        }
        if self.sse.held().max(self.lines.held()) > self.limits.max_event {
            self.halt(StreamStop::HoldbackExceeded, &mut out);
        }
        out
    }

    /// Ends the body; returns the last bytes to forward (held text, flushed).
    pub fn finish(&mut self, r: &mut Redactor) -> Vec<u8> {
        let mut out = Vec::new();
        if self.stop.is_some() {
            return out;
        }
        match self.shape {
            Shape::Sse => {
                if let Some(ev) = self.sse.finish() {
                    self.sse_event(r, ev, &mut out);
                }
            }
            Shape::Text => {
                if self.utf8.finish().is_err() {
                    self.halt(StreamStop::Unreadable("it ends inside a UTF-8 sequence".into()), &mut out);
                }
            }
            Shape::Binary | Shape::Wide => self.binary(r, &[], true, &mut out),
            _ => {
                if let Some(line) = self.lines.finish() {
                    self.line(r, line, &mut out);
                }
            }
        }
        if self.stop.is_none() {
            self.flush(r, Ends::All, &[], &mut out);
        }
        out
    }

    fn sse_event(&mut self, r: &mut Redactor, ev: SseEvent, out: &mut Vec<u8>) {
        if self.stop.is_some() {
            return;
        }
        if std::str::from_utf8(&ev.raw).is_err() {
            return self.halt(StreamStop::Unreadable("an event is not UTF-8 text".into()), out);
        }
        // Comments, `id`, `event`, `retry` and unknown lines: each a complete value.
        let mut line_edits = Vec::new();
        for (i, shown) in ev.other_lines() {
            if let Some(spans) = r.value(None, shown) {
                line_edits.push((i, apply_spans(shown, &spans)));
            }
        }
        if self.check_blocked(r, out) {
            return;
        }
        // From here on the event is the one sent: a template copied later carries its lines
        // as they went out.
        let ev = if line_edits.is_empty() { ev } else { SseEvent::parse(ev.rebuild(None, &line_edits)) };
        let Some(data) = ev.data.as_deref() else {
            out.extend_from_slice(&ev.raw);
            return;
        };
        let trimmed = data.trim_start();
        if data.trim() == "[DONE]" {
            self.flush(r, Ends::All, &[], out);
        } else if trimmed.starts_with(['{', '[', '"']) {
            let tape = match Tape::read(data.as_bytes()) {
                Ok(mut t) => {
                    t.mark_shadowed();
                    t
                }
                Err(e) => return self.halt(StreamStop::Unreadable(format!("an event's JSON: {e}")), out),
            };
            let Some(json) = self.json_event(r, &tape, ev.event.as_deref(), Some(&ev), false, out) else { return };
            if let Cow::Owned(json) = json {
                out.extend(ev.with_data(&String::from_utf8_lossy(&json)));
                return;
            }
        } else {
            // Not JSON: the data of such events is one running text.
            self.count_text(data);
            let key = Key { slot: u64::MAX, kind: 0, sub: 0 };
            let mut released = String::new();
            if self.feed(r, key, data, &mut released).is_err() {
                return self.halt(StreamStop::HoldbackExceeded, out);
            }
            if self.check_blocked(r, out) {
                return;
            }
            if !r.rewrites() {
                out.extend_from_slice(&ev.raw);
            } else if !released.is_empty() {
                out.extend(ev.with_data(&released));
            }
            return;
        }
        if self.stop.is_none() {
            out.extend_from_slice(&ev.raw);
        }
    }

    fn line(&mut self, r: &mut Redactor, line: Vec<u8>, out: &mut Vec<u8>) {
        if self.stop.is_some() {
            return;
        }
        let body_end = line.iter().rposition(|c| !matches!(c, b'\n' | b'\r')).map_or(0, |i| i + 1);
        let (body, eol) = line.split_at(body_end);
        if body.iter().all(u8::is_ascii_whitespace) {
            out.extend_from_slice(&line);
            return;
        }
        let tape = match Tape::read(body) {
            Ok(mut t) => {
                t.mark_shadowed();
                t
            }
            Err(e) => return self.halt(StreamStop::Unreadable(format!("a line's JSON: {e}")), out),
        };
        if let Some(json) = self.json_event(r, &tape, None, None, false, out) {
            out.extend_from_slice(&json);
            out.extend_from_slice(eol);
        }
    }

    /// Binary content passes, but the text runs in it do not pass unjudged: a value hidden in
    /// media (or after a media signature) blocks the body. A run that reaches the end of a
    /// chunk is held until it ends.
    fn binary(&mut self, r: &mut Redactor, chunk: &[u8], end: bool, out: &mut Vec<u8>) {
        let mut buf = std::mem::take(&mut self.carry);
        buf.extend_from_slice(chunk);
        let hold = if end { buf.len() } else { buf.iter().rposition(|&c| !is_run_byte(c)).map_or(0, |i| i + 1) };
        if buf.len() - hold > self.limits.max_holdback {
            return self.halt(StreamStop::HoldbackExceeded, out);
        }
        // Run by run, so that a stop cuts the content where the offending run begins: what came
        // before it was judged and goes out whole.
        let mut at = 0;
        for run in buf[..hold].split(|&c| !is_run_byte(c)) {
            let start = at;
            at += run.len() + 1;
            if run.len() < MIN_RUN {
                continue;
            }
            text_runs(r, run);
            if r.blocked().is_some() {
                out.extend_from_slice(&buf[..start]);
                self.check_blocked(r, out);
                return;
            }
        }
        self.carry = buf.split_off(hold);
        out.extend_from_slice(&buf);
    }

    fn raw_text(&mut self, r: &mut Redactor, text: &str, out: &mut Vec<u8>) {
        self.count_text(text);
        let key = Key { slot: 0, kind: 0, sub: 0 };
        let mut released = String::new();
        if self.feed(r, key, text, &mut released).is_err() {
            return self.halt(StreamStop::HoldbackExceeded, out);
        }
        if !self.check_blocked(r, out) {
            out.extend_from_slice(if r.rewrites() { released.as_bytes() } else { text.as_bytes() });
        }
    }

    /// Redacts one JSON event. Streams that end with it are flushed: those with a fragment in it
    /// finish inside it, the others in synthetic events emitted before it. Returns the event's
    /// JSON to send, or `None` when the body was stopped.
    ///
    /// With `whole`, the event is a complete document: every string is a complete value and
    /// nothing is joined or ended.
    fn json_event<'t>(
        &mut self,
        r: &mut Redactor,
        tape: &Tape<'t>,
        event: Option<&str>,
        sse: Option<&SseEvent>,
        whole: bool,
        out: &mut Vec<u8>,
    ) -> Option<Cow<'t, [u8]>> {
        let ty = fields::event_type(tape, event);
        let ends = if whole { Vec::new() } else { fields::ends(tape, ty) };
        let ending = |key: &Key| ends.iter().any(|e| matches!(e, Ends::All) || *e == Ends::Slot(key.slot));
        let mut edits: Edits = Vec::new();
        let mut carried: Vec<Key> = Vec::new();
        let mut overflow = false;
        let mut lineage = Vec::new();
        // A synthetic event earlier in this body moved the numbering up.
        let sequence = tape.get(0, "sequence_number").filter(|&s| !whole && tape.nodes[s].kind == Kind::Num);
        // Every key is scanned too, all of an event's keys in one pass (they are many and short).
        let mut keys = Keys { joined: String::with_capacity(256), at: Vec::with_capacity(32) };
        let mut i = 0;
        while i < tape.nodes.len() {
            let n = &tape.nodes[i];
            if let Some(k) = n.key.as_deref() {
                keys.add(i, k);
            }
            if self.response && n.kind == Kind::Num {
                if let Some(t) = fields::output_tokens(tape, i) {
                    self.usage.report(t);
                }
            }
            match n.kind {
                Kind::Object | Kind::Array if self.response && fields::token_details(tape, i) => {
                    r.remove("token_details");
                    edits.push((n.span.clone(), Patch::Raw(fields::emptied(tape, i).as_bytes().to_vec())));
                    i = n.end;
                    continue;
                }
                Kind::Str => {
                    // (Buffered documents are not marked: every string there is whole anyway.)
                    let field = if n.shadowed || whole {
                        // Clients keep the last of duplicate keys: this one is never joined.
                        if fields::opaque(tape, i) {
                            Field::Opaque
                        } else {
                            Field::Whole
                        }
                    } else {
                        fields::classify(tape, i, ty, &mut lineage)
                    };
                    if whole || matches!(field, Field::Delta(_)) {
                        self.count_text(&n.text);
                    }
                    match field {
                        Field::Opaque => r.opaque(&n.text),
                        Field::Whole => {
                            if let Some(spans) = r.value(nearest_key(tape, i), &n.text) {
                                edits.push((n.span.clone(), Patch::Value(i, Edit::Spans(spans))));
                            }
                        }
                        Field::Guard(key) => {
                            if let Some(spans) = self.guard(r, key, &n.text) {
                                edits.push((n.span.clone(), Patch::Value(i, Edit::Spans(spans))));
                            }
                        }
                        Field::Delta(key) => {
                            let mut released = String::new();
                            overflow |= self.feed(r, key, &n.text, &mut released).is_err();
                            if ending(&key) {
                                if let Some(t) = self.texts.iter().position(|t| t.key == key) {
                                    let mut t = self.texts.remove(t);
                                    r.finish(&mut t.stream, &mut released);
                                }
                            }
                            carried.push(key);
                            if r.rewrites() && released != n.text {
                                edits.push((n.span.clone(), Patch::Value(i, Edit::Whole(released))));
                            }
                        }
                    }
                }
                Kind::Num if n.text.len() >= MIN_NUMBER_CHARS && Some(i) != sequence => {
                    // A number is text a client shows too (a card number written as a number).
                    if let Some(spans) = r.value(nearest_key(tape, i), &n.text) {
                        edits.push((
                            n.span.clone(),
                            Patch::Raw(encode_string(&apply_spans(&n.text, &spans)).into_bytes()),
                        ));
                    }
                }
                _ => {}
            }
            i += 1;
        }
        let mut edits = keys.redact(r, tape, edits);
        if overflow {
            self.halt(StreamStop::HoldbackExceeded, out);
            return None;
        }
        if self.check_blocked(r, out) {
            return None;
        }
        for e in &ends {
            self.flush(r, *e, &carried, out);
        }
        if self.stop.is_some() {
            return None;
        }
        // After the flush: synthetic events sent before this one took the numbers before it.
        if let (Some(s), Some(n)) = (sequence, tape.u64_at(0, "sequence_number")) {
            let n = n + self.inserted;
            self.last_sequence = Some(n);
            if self.inserted > 0 {
                // Every other edit was made in document order: this one goes in its place.
                let at = edits.partition_point(|(r, _)| r.start < tape.nodes[s].span.start);
                edits.insert(at, (tape.nodes[s].span.clone(), Patch::Raw(n.to_string().into_bytes())));
            }
        }
        let json = match tape.render(&edits) {
            Some(new) => Cow::Owned(new),
            None => Cow::Borrowed(tape.input),
        };
        for key in carried {
            if let Some(t) = self.texts.iter_mut().find(|t| t.key == key) {
                t.template = Some(Template { sse: sse.cloned(), json: json.to_vec() });
            }
        }
        Some(json)
    }

    fn count_text(&mut self, text: &str) {
        if self.response {
            self.usage.text_bytes += text.len() as u64;
        }
    }

    /// Feeds text to the logical stream `key`.
    fn feed(&mut self, r: &mut Redactor, key: Key, text: &str, out: &mut String) -> Result<(), ()> {
        let i = match self.texts.iter().position(|t| t.key == key) {
            Some(i) => i,
            None => {
                self.texts.push(Text { key, stream: TextStream::new(self.limits.max_holdback), template: None });
                self.texts.len() - 1
            }
        };
        let t = &mut self.texts[i];
        let res = r.push(&mut t.stream, text, out).map_err(|_| ());
        let held = t.stream.held() as u64;
        self.holdback.samples += 1;
        self.holdback.total += held;
        self.holdback.max = self.holdback.max.max(held);
        res
    }

    /// Judges a fragment of a guarded field: findings inside it are redacted; one that reaches
    /// back into fragments already sent blocks the message.
    fn guard(&mut self, r: &mut Redactor, key: Key, text: &str) -> Option<Spans> {
        let i = match self.guards.iter().position(|g| g.key == key) {
            Some(i) => i,
            None => {
                self.guards.push(Guard { key, tail: String::new() });
                self.guards.len() - 1
            }
        };
        let base = self.guards[i].tail.len();
        let joined = format!("{}{text}", self.guards[i].tail);
        let mut spans = Vec::new();
        let mut counted = Vec::new();
        for mut f in r.findings(&joined) {
            if f.end <= base {
                continue; // judged with an earlier fragment
            }
            if f.start < base {
                f.action = crate::detect::Action::Block;
            } else if let Some(new) = r.replacement(&joined, &f) {
                spans.push((f.start - base..f.end - base, new));
            }
            counted.push(f);
        }
        r.note(&counted);
        let mut cut = joined.len().saturating_sub(GUARD_TAIL);
        while !joined.is_char_boundary(cut) {
            cut += 1;
        }
        self.guards[i].tail = joined[cut..].to_owned();
        (!spans.is_empty()).then_some(spans)
    }

    /// Ends the streams selected by `which` (except those in `skip`, which ended inside the
    /// current event), sending their held text in events shaped like their last one.
    fn flush(&mut self, r: &mut Redactor, which: Ends, skip: &[Key], out: &mut Vec<u8>) {
        let mut ending: Vec<(Text, String)> = Vec::new();
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
            r.finish(&mut t.stream, &mut held);
            ending.push((t, held));
        }
        // Under `report` every fragment already went out as it came.
        if self.check_blocked(r, out) || !r.rewrites() {
            return;
        }
        ending.retain(|(_, held)| !held.is_empty());
        while !ending.is_empty() {
            let (t, held) = ending.remove(0);
            match (&t.template, self.shape) {
                (_, Shape::Text) => out.extend_from_slice(held.as_bytes()),
                (Some(tpl), _) => {
                    // Streams whose last event was the same go out together, in one copy of it.
                    let mut group = vec![(t.key, held)];
                    let mut j = 0;
                    while j < ending.len() {
                        if ending[j].0.template.as_ref().is_some_and(|o| o.json == tpl.json) {
                            let (other, h) = ending.remove(j);
                            group.push((other.key, h));
                        } else {
                            j += 1;
                        }
                    }
                    let json = self.synthetic(tpl, &group);
                    match &tpl.sse {
                        Some(ev) => out.extend(ev.with_data(&String::from_utf8_lossy(&json))),
                        None => {
                            out.extend_from_slice(&json);
                            out.push(b'\n');
                        }
                    }
                }
                (None, _) => {
                    // Raw SSE data without a JSON template.
                    out.extend_from_slice(b"data: ");
                    out.extend_from_slice(held.as_bytes());
                    out.extend_from_slice(b"\n\n");
                }
            }
        }
    }

    /// The template event with each stream's held text in its field, every other joined field
    /// empty, and the next sequence number.
    fn synthetic(&mut self, tpl: &Template, held: &[(Key, String)]) -> Vec<u8> {
        // The template is JSON this filter sent: it reads.
        let Ok(mut tape) = Tape::read(&tpl.json) else { return tpl.json.clone() };
        tape.mark_shadowed();
        let ty = fields::event_type(&tape, tpl.sse.as_ref().and_then(|e| e.event.as_deref()));
        let mut lineage = Vec::new();
        let mut edits = Vec::new();
        for (i, n) in tape.nodes.iter().enumerate() {
            if n.kind != Kind::Str || n.shadowed {
                continue;
            }
            let new = match fields::classify(&tape, i, ty, &mut lineage) {
                Field::Delta(k) => held.iter().find(|(key, _)| *key == k).map_or("", |(_, h)| h.as_str()),
                Field::Guard(_) => "",
                _ => continue,
            };
            edits.push((n.span.clone(), Patch::Value(i, Edit::Whole(new.to_owned()))));
        }
        if let Some(s) = tape.get(0, "sequence_number").filter(|&s| tape.nodes[s].kind == Kind::Num) {
            // An inserted event takes the next number; later ones move up by one.
            let next = self.last_sequence.map_or(0, |n| n + 1);
            self.inserted += 1;
            self.last_sequence = Some(next);
            let at = edits.partition_point(|(r, _)| r.start < tape.nodes[s].span.start);
            edits.insert(at, (tape.nodes[s].span.clone(), Patch::Raw(next.to_string().into_bytes())));
        }
        tape.render(&edits).unwrap_or_else(|| tpl.json.clone())
    }

    /// Stops the body if a `block` finding fired; returns whether it did.
    fn check_blocked(&mut self, r: &Redactor, out: &mut Vec<u8>) -> bool {
        if let Some(rule) = r.blocked() {
            let rule = rule.to_owned();
            self.halt(StreamStop::Blocked(rule), out);
        }
        self.stop.is_some()
    }

    /// Stops the body: one error in the body's own format, then nothing more.
    fn halt(&mut self, stop: StreamStop, out: &mut Vec<u8>) {
        if self.stop.is_some() {
            return;
        }
        out.extend_from_slice(error_event(self.shape, self.api, stop.code(), &stop.message()).as_bytes());
        self.stop = Some(stop);
        // Nothing more is forwarded: free what was held.
        self.texts.clear();
        self.guards.clear();
        self.sse = SseFramer::default();
        self.lines = LineFramer::default();
    }
}

/// Bytes that make up a text run inside binary content: printable ASCII and whitespace.
fn is_run_byte(c: u8) -> bool {
    c.is_ascii_graphic() || matches!(c, b' ' | b'\t' | b'\n' | b'\r')
}

/// Shorter runs of text inside binary content hold no value any detector finds.
const MIN_RUN: usize = 6;

/// Judges the text runs of binary content (media metadata, or text an upstream put after a media
/// signature): each is opaque, binary cannot be edited, so a finding blocks.
pub fn text_runs(r: &mut Redactor, bytes: &[u8]) {
    for run in bytes.split(|&c| !is_run_byte(c)).filter(|run| run.len() >= MIN_RUN) {
        // Only ASCII is in a run.
        r.opaque(std::str::from_utf8(run).unwrap_or(""));
    }
}

/// Raw byte ranges of a document and what replaces each, in document order.
type Edits = Vec<(std::ops::Range<usize>, Patch)>;

/// The keys of one document, joined by line breaks so that one scan judges them all.
struct Keys {
    joined: String,
    /// Each key's node and where its text starts in `joined`.
    at: Vec<(usize, usize)>,
}

impl Keys {
    fn add(&mut self, node: usize, key: &str) {
        if !self.joined.is_empty() {
            self.joined.push('\n');
        }
        self.at.push((node, self.joined.len()));
        self.joined.push_str(key);
    }

    /// Redacts the keys and merges their edits into `edits` (both in document order). A value
    /// that runs across keys replaces the part of each key it covers.
    fn redact(self, r: &mut Redactor, tape: &Tape, edits: Edits) -> Edits {
        let Some(spans) = r.value(None, &self.joined) else { return edits };
        let mut key_edits: Edits = Vec::new();
        for (k, &(node, start)) in self.at.iter().enumerate() {
            let end = self.at.get(k + 1).map_or(self.joined.len(), |&(_, next)| next - 1);
            let local: Spans = spans
                .iter()
                .filter(|(s, _)| s.start < end && s.end > start)
                .map(|(s, new)| {
                    let first = s.start >= start;
                    (
                        s.start.max(start) - start..s.end.min(end) - start,
                        if first { new.clone() } else { String::new() },
                    )
                })
                .collect();
            if !local.is_empty() {
                key_edits.push((tape.nodes[node].key_span.clone(), Patch::Key(node, Edit::Spans(local))));
            }
        }
        let mut merged = Vec::with_capacity(edits.len() + key_edits.len());
        let (mut a, mut b) = (edits.into_iter().peekable(), key_edits.into_iter().peekable());
        loop {
            let take_a = match (a.peek(), b.peek()) {
                (Some(x), Some(y)) => x.0.start < y.0.start,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            merged.extend(if take_a { a.next() } else { b.next() });
        }
        merged
    }
}

/// The key of the nearest enclosing object member (what field rules such as `password` match).
fn nearest_key<'t>(tape: &'t Tape, node: usize) -> Option<&'t str> {
    let mut i = node;
    while let Some(n) = tape.nodes.get(i) {
        if let Some(k) = &n.key {
            return Some(k);
        }
        i = n.parent;
    }
    None
}

/// The result of redacting a whole buffered JSON body.
pub enum Whole {
    /// Nothing changed.
    Unchanged,
    /// The body to forward instead.
    Changed(Vec<u8>),
    /// It cannot be read: why.
    Unreadable(String),
    /// A `block` finding (the detector or rule is in the redactor's audit).
    Blocked,
}

/// Redacts a whole JSON body: one document, or documents one per line (what
/// [`crate::wire::sniff::Shape::Json`] may turn out to be once complete). Every value is a
/// complete value; token details are removed from answers. `doc` is `Tape::read(body)`, which
/// a caller that also needs the document's facts (a prompt's `model`) reads once. An answer's
/// [`Usage`] comes with the result.
pub fn whole_json<'b>(
    r: &mut Redactor,
    api: Api,
    response: bool,
    body: &'b [u8],
    doc: Result<Tape<'b>, JsonError>,
) -> (Whole, Usage) {
    let unbounded = Limits { max_holdback: usize::MAX, max_event: usize::MAX };
    let doc = match doc {
        Ok(t) => t,
        Err(e) => {
            let lines = body.split(|&c| c == b'\n').filter(|l| !l.trim_ascii().is_empty()).count();
            if lines < 2 {
                return (Whole::Unreadable(format!("the JSON body: {e}")), Usage::default());
            }
            // Documents one per line: every line must read.
            let mut s = BodyStream::new(Shape::Ndjson, api, response, unbounded);
            let mut out = s.push(r, body);
            out.extend(s.finish(r));
            let whole = match s.stopped() {
                Some(StreamStop::Blocked(_)) => Whole::Blocked,
                Some(stop) => Whole::Unreadable(stop.message()),
                None if out == body => Whole::Unchanged,
                None => Whole::Changed(out),
            };
            return (whole, s.usage());
        }
    };
    let mut s = BodyStream::new(Shape::Json, api, response, unbounded);
    let mut sink = Vec::new();
    let whole = match (s.json_event(r, &doc, None, None, true, &mut sink), s.stopped()) {
        (_, Some(StreamStop::Blocked(_))) => Whole::Blocked,
        (_, Some(stop)) => Whole::Unreadable(stop.message()),
        (Some(Cow::Owned(bytes)), None) => Whole::Changed(bytes),
        _ => Whole::Unchanged,
    };
    (whole, s.usage())
}
