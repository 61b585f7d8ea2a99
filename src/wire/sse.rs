//! Server-sent events framing (WHATWG), incremental and byte-preserving.
//!
//! [`SseFramer`] cuts a byte stream into whole events, however the network split it: inside a
//! field name, between `\r` and `\n`, inside a UTF-8 sequence. Each [`SseEvent`] keeps its exact
//! bytes, so events the filter does not change are forwarded untouched.

/// One event: its exact bytes and its parsed fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The event's bytes, including the blank line that ends it.
    pub raw: Vec<u8>,
    /// The `event:` field, if any.
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`, if any.
    pub data: Option<String>,
}

impl SseEvent {
    /// Parses one complete event from its raw bytes. An event that is not UTF-8 has neither
    /// `event` nor `data` (the stream layer refuses to forward it).
    pub fn parse(raw: Vec<u8>) -> SseEvent {
        let Ok(text) = std::str::from_utf8(&raw) else {
            return SseEvent { raw, event: None, data: None };
        };
        let mut event = None;
        let mut data: Option<String> = None;
        for line in lines(text) {
            let (name, value) = field(line);
            match name {
                "event" => event = Some(value.to_owned()),
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
        SseEvent { raw, event, data }
    }

    /// The event's lines other than `data` (comments, `event`, `id`, `retry`, unknown fields),
    /// with their position among the event's lines and the text a reader may show: a field's
    /// value, or a comment's text. Every one of them is visible to some client.
    pub fn other_lines(&self) -> Vec<(usize, &str)> {
        let Ok(text) = std::str::from_utf8(&self.raw) else { return Vec::new() };
        lines(text)
            .enumerate()
            .filter(|(_, line)| field(line).0 != "data")
            .map(|(i, line)| (i, &line[shown_from(line)..]))
            .collect()
    }

    /// The event's bytes with its data replaced by `data` (when given) and the lines at the
    /// given positions replaced, their field name and separator kept: `(i, new)` makes line `i`
    /// say `new` where [`SseEvent::other_lines`] showed its text. Every other line is kept as
    /// it was, and the data lines keep their original `data:` / `data: ` spelling and line
    /// ending.
    pub fn rebuild(&self, data: Option<&str>, edits: &[(usize, String)]) -> Vec<u8> {
        let text = std::str::from_utf8(&self.raw).unwrap_or("");
        let eol = if text.contains("\r\n") {
            "\r\n"
        } else if text.contains('\n') {
            "\n"
        } else {
            "\r"
        };
        let mut out = String::with_capacity(self.raw.len() + data.map_or(0, str::len));
        let mut wrote_data = false;
        let mut prefix = "data: ";
        for (i, line) in lines(text).enumerate() {
            if field(line).0 == "data" {
                let Some(data) = data else {
                    out.push_str(line);
                    out.push_str(eol);
                    continue;
                };
                if !line.starts_with("data: ") {
                    prefix = "data:";
                }
                if !wrote_data {
                    wrote_data = true;
                    push_data(&mut out, prefix, data, eol);
                }
                continue;
            }
            match edits.iter().find(|(at, _)| *at == i) {
                Some((_, new)) => {
                    out.push_str(&line[..shown_from(line)]);
                    // A value cannot hold a line break: it would start a new field.
                    out.push_str(&new.replace(['\r', '\n'], " "));
                }
                None => out.push_str(line),
            }
            out.push_str(eol);
        }
        if let (Some(data), false) = (data, wrote_data) {
            push_data(&mut out, prefix, data, eol);
        }
        out.push_str(eol);
        out.into_bytes()
    }

    /// The event's bytes with its data replaced by `data`: [`SseEvent::rebuild`] with no line
    /// edits.
    pub fn with_data(&self, data: &str) -> Vec<u8> {
        self.rebuild(Some(data), &[])
    }
}

/// Where the text a reader may show starts in a line that is not `data`: after the colon of a
/// comment, after `name: ` of a known field, and at the start of an unknown one (a raw reader
/// shows it whole).
fn shown_from(line: &str) -> usize {
    let (name, value) = field(line);
    match name {
        "" => 1,
        "event" | "id" | "retry" => line.len() - value.len(),
        _ => 0,
    }
}

fn push_data(out: &mut String, prefix: &str, data: &str, eol: &str) {
    for l in data.split('\n') {
        out.push_str(prefix);
        out.push_str(l);
        out.push_str(eol);
    }
}

/// The non-empty lines of an event (its terminating blank line excluded).
fn lines(text: &str) -> impl Iterator<Item = &str> {
    text.split(['\n', '\r']).filter(|l| !l.is_empty())
}

/// Splits a line into field name and value (one leading space of the value dropped). Comment
/// lines (starting with `:`) have an empty name.
fn field(line: &str) -> (&str, &str) {
    match line.find(':') {
        Some(0) => ("", line),
        Some(i) => {
            let v = &line[i + 1..];
            (&line[..i], v.strip_prefix(' ').unwrap_or(v))
        }
        None => (line, ""),
    }
}

/// Cuts a byte stream into events.
///
/// # Examples
///
/// ```text
/// use inferguard::wire::sse::SseFramer;
///
/// let mut f = SseFramer::default();
/// assert!(f.push(b"data: {\"a\"").is_empty());
/// let events = f.push(b":1}\r\n\r\nda");
/// assert_eq!(events[0].data.as_deref(), Some("{\"a\":1}"));
/// assert_eq!(f.finish().unwrap().raw, b"da");
/// ```
#[derive(Debug, Clone, Default)]
pub struct SseFramer {
    buf: Vec<u8>,
    /// Bytes of `buf` already examined without finding the end of an event.
    scanned: usize,
    /// Whether the previous byte ended a line (so a line ending now means a blank line).
    at_line_start: bool,
}

impl SseFramer {
    /// Bytes held, waiting for the end of an event.
    pub fn held(&self) -> usize {
        self.buf.len()
    }

    /// Feeds bytes; returns every event they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        self.buf.extend_from_slice(bytes);
        let mut events = Vec::new();
        let mut start = 0;
        let mut i = self.scanned;
        let mut at_line_start = if i == 0 { true } else { self.at_line_start };
        while i < self.buf.len() {
            // Bytes up to the next line ending only say that a line has begun.
            let Some(eol) = super::bytes::find_either(&self.buf, i, b'\n', b'\r') else {
                at_line_start = false;
                i = self.buf.len();
                break;
            };
            if eol > i {
                at_line_start = false;
                i = eol;
            }
            // A `\r` at the end of the buffer may be the first half of `\r\n`: wait.
            let len = if self.buf[i] == b'\r' {
                match self.buf.get(i + 1) {
                    Some(b'\n') => 2,
                    Some(_) => 1,
                    None => break,
                }
            } else {
                1
            };
            i += len;
            if at_line_start {
                let raw = self.buf[start..i].to_vec();
                start = i;
                events.push(SseEvent::parse(raw));
            }
            at_line_start = true;
        }
        self.buf.drain(..start);
        self.scanned = i - start;
        self.at_line_start = at_line_start;
        events
    }

    /// Ends the stream: returns a last event that was not terminated by a blank line, if any.
    pub fn finish(&mut self) -> Option<SseEvent> {
        if self.buf.is_empty() {
            return None;
        }
        let raw = std::mem::take(&mut self.buf);
        self.scanned = 0;
        Some(SseEvent::parse(raw))
    }
}

/// Cuts a byte stream into lines (NDJSON), each with its `\n`.
#[derive(Debug, Clone, Default)]
pub struct LineFramer {
    buf: Vec<u8>,
}

impl LineFramer {
    /// Bytes held, waiting for the end of a line.
    pub fn held(&self) -> usize {
        self.buf.len()
    }

    /// Feeds bytes; returns every complete line, newline included.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut start = 0;
        self.buf.extend_from_slice(bytes);
        let old = self.buf.len() - bytes.len();
        for (i, &c) in self.buf.iter().enumerate().skip(old) {
            if c == b'\n' {
                out.push(self.buf[start..=i].to_vec());
                start = i + 1;
            }
        }
        self.buf.drain(..start);
        out
    }

    /// Ends the stream: the last line, if it had no newline.
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        (!self.buf.is_empty()).then(|| std::mem::take(&mut self.buf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &[u8] = b"event: message_start\r\ndata: {\"a\":1}\r\n\r\n: ping\n\ndata:x\ndata: y\r\rid: 7\n\n";

    fn frame_all(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut f = SseFramer::default();
        let mut ev = Vec::new();
        for c in chunks {
            ev.extend(f.push(c));
        }
        ev.extend(f.finish());
        ev
    }

    #[test]
    fn frames_events_with_every_line_ending() {
        let ev = frame_all(&[STREAM]);
        assert_eq!(ev.len(), 4);
        assert_eq!(ev[0].event.as_deref(), Some("message_start"));
        assert_eq!(ev[0].data.as_deref(), Some("{\"a\":1}"));
        assert_eq!(ev[1].data, None);
        assert_eq!(ev[1].raw, b": ping\n\n");
        assert_eq!(ev[2].data.as_deref(), Some("x\ny"));
        assert_eq!(ev[3].raw, b"id: 7\n\n");
        assert_eq!(ev.iter().flat_map(|e| e.raw.clone()).collect::<Vec<_>>(), STREAM);
    }

    #[test]
    fn every_split_point_gives_the_same_events() {
        let whole = frame_all(&[STREAM]);
        for i in 0..=STREAM.len() {
            for j in i..=STREAM.len() {
                assert_eq!(frame_all(&[&STREAM[..i], &STREAM[i..j], &STREAM[j..]]), whole, "{i} {j}");
            }
        }
        let bytes: Vec<&[u8]> = STREAM.chunks(1).collect();
        assert_eq!(frame_all(&bytes), whole);
    }

    #[test]
    fn with_data_keeps_the_other_lines_and_the_spelling() {
        let ev = frame_all(&[b"event: e\r\ndata:{\"t\":1}\r\n\r\n"]);
        assert_eq!(ev[0].with_data("{\"t\":2}\nz"), b"event: e\r\ndata:{\"t\":2}\r\ndata:z\r\n\r\n");
        let ev = frame_all(&[b"data: a\n\n"]);
        assert_eq!(ev[0].with_data("b"), b"data: b\n\n");
    }

    #[test]
    fn other_lines_can_be_rewritten_in_place() {
        let ev = frame_all(&[b": hi a@b.io\r\nid: 7\r\nevent: x\r\ndata: d\r\nweird\r\n\r\n"]);
        assert_eq!(ev[0].other_lines(), vec![(0, " hi a@b.io"), (1, "7"), (2, "x"), (4, "weird")]);
        assert_eq!(
            ev[0].rebuild(None, &[(0, " hi [X]".into()), (1, "8\nid: 9".into())]),
            b": hi [X]\r\nid: 8 id: 9\r\nevent: x\r\ndata: d\r\nweird\r\n\r\n"
        );
    }

    #[test]
    fn lines_are_framed_across_chunks() {
        let mut f = LineFramer::default();
        assert!(f.push(b"{\"a\":").is_empty());
        assert_eq!(f.push(b"1}\n{\"b\"\n{"), vec![b"{\"a\":1}\n".to_vec(), b"{\"b\"\n".to_vec()]);
        assert_eq!(f.finish(), Some(b"{".to_vec()));
    }
}

/// The examples in this module's docs, run.
#[cfg(test)]
mod doc_examples {
    use super::*;

    #[test]
    fn sseframer_example() {
        let mut f = SseFramer::default();
        assert!(f.push(b"data: {\"a\"").is_empty());
        let events = f.push(b":1}\r\n\r\nda");
        assert_eq!(events[0].data.as_deref(), Some("{\"a\":1}"));
        assert_eq!(f.finish().unwrap().raw, b"da");
    }
}
