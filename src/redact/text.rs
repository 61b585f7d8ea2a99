//! Incremental redaction of one logical text stream, and UTF-8 that arrives in pieces.

use super::Mode;
use crate::detect::{End, Engine, Finding};

/// Redacts one logical stream of text (one choice, one content block) as it arrives, releasing
/// text as soon as no match can still begin in it.
///
/// Call order: [`TextStream::push`] for every piece of text, in order; [`TextStream::finish`]
/// once, when the logical stream ends. What the two append to `out`, concatenated, equals
/// [`Engine::redact`] on the whole text, however the text was split.
///
/// Memory: the stream keeps the text it cannot release yet (the holdback, bounded by
/// `max_holdback` bytes) and a short tail of released text that detectors need as left context
/// (labels such as `SSN:`, word boundaries).
#[derive(Debug, Clone)]
pub struct TextStream {
    /// Released original text kept as context, followed by the held text.
    buf: String,
    /// Where the held text starts in `buf`.
    from: usize,
    max_holdback: usize,
}

/// The held text grew past the configured bound: the stream cannot decide in bounded memory,
/// so it fails closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldbackExceeded {
    /// Bytes that were held.
    pub held: usize,
}

impl TextStream {
    /// A new stream that holds at most `max_holdback` bytes of undecided text.
    pub fn new(max_holdback: usize) -> TextStream {
        TextStream { buf: String::new(), from: 0, max_holdback }
    }

    /// Bytes received but not yet released.
    pub fn held(&self) -> usize {
        self.buf.len() - self.from
    }

    /// Feeds `text`; appends what can be released, redacted as `mode` says, to `out` and
    /// returns the findings in it.
    pub fn push(
        &mut self,
        engine: &Engine,
        mode: Mode,
        text: &str,
        out: &mut String,
    ) -> Result<Vec<Finding>, HoldbackExceeded> {
        self.buf.push_str(text);
        let scan = engine.scan(&self.buf, self.from, End::More);
        let findings = self.release(engine, mode, scan.settled, scan.findings, out);
        if self.held() > self.max_holdback {
            return Err(HoldbackExceeded { held: self.held() });
        }
        Ok(findings)
    }

    /// Ends the stream: appends everything still held, redacted, to `out`.
    pub fn finish(&mut self, engine: &Engine, mode: Mode, out: &mut String) -> Vec<Finding> {
        let scan = engine.scan(&self.buf, self.from, End::Final);
        let findings = self.release(engine, mode, scan.settled, scan.findings, out);
        self.buf.clear();
        self.from = 0;
        findings
    }

    fn release(
        &mut self,
        engine: &Engine,
        mode: Mode,
        settled: usize,
        mut findings: Vec<Finding>,
        out: &mut String,
    ) -> Vec<Finding> {
        let settled = settled.clamp(self.from, self.buf.len());
        if settled == self.from {
            return Vec::new();
        }
        for f in &mut findings {
            f.start -= self.from;
            f.end -= self.from;
        }
        mode.apply(&mut findings);
        engine.render(&self.buf[self.from..settled], &findings, out);
        // Keep only the context the next scan needs, cut on a character boundary.
        let mut cut = settled.saturating_sub(engine.max_left_context());
        while !self.buf.is_char_boundary(cut) {
            cut -= 1;
        }
        self.buf.drain(..cut);
        self.from = settled - cut;
        findings
    }
}

/// Decodes UTF-8 that arrives in pieces, carrying a sequence split between pieces over to the
/// next one instead of mangling it.
#[derive(Debug, Clone, Default)]
pub struct Utf8Decoder {
    carry: Vec<u8>,
}

/// The bytes are not UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidUtf8;

impl Utf8Decoder {
    /// Decodes `bytes`, returning the complete characters; an incomplete trailing sequence is kept.
    pub fn push(&mut self, bytes: &[u8]) -> Result<String, InvalidUtf8> {
        self.carry.extend_from_slice(bytes);
        match std::str::from_utf8(&self.carry) {
            Ok(s) => {
                let s = s.to_owned();
                self.carry.clear();
                Ok(s)
            }
            Err(e) if e.error_len().is_none() => {
                let valid = e.valid_up_to();
                let s = String::from_utf8_lossy(&self.carry[..valid]).into_owned();
                self.carry.drain(..valid);
                Ok(s)
            }
            Err(_) => Err(InvalidUtf8),
        }
    }

    /// Ends the input: an incomplete sequence left over is an error.
    pub fn finish(&mut self) -> Result<(), InvalidUtf8> {
        if self.carry.is_empty() {
            Ok(())
        } else {
            Err(InvalidUtf8)
        }
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
    fn any_split_gives_the_whole_text_redaction() {
        let e = engine();
        let text = "To: ann@x.io, bob.smith@corp.example.com; cc ünï@ü.de and plain words.";
        let whole = e.redact(text).text;
        for size in 1..text.len() {
            let mut s = TextStream::new(1 << 16);
            let mut out = String::new();
            let mut rest = text;
            while !rest.is_empty() {
                let mut n = size.min(rest.len());
                while !rest.is_char_boundary(n) {
                    n += 1;
                }
                s.push(&e, Mode::Redact, &rest[..n], &mut out).unwrap();
                assert!(!out.contains("ann@") && !out.contains("smith@"), "{out}");
                rest = &rest[n..];
            }
            s.finish(&e, Mode::Redact, &mut out);
            assert_eq!(out, whole, "split size {size}");
        }
    }

    #[test]
    fn fails_closed_when_the_holdback_bound_is_exceeded() {
        let e = engine();
        let mut s = TextStream::new(8);
        let mut out = String::new();
        assert_eq!(s.push(&e, Mode::Redact, "abc", &mut out), Ok(vec![]));
        assert_eq!(s.push(&e, Mode::Redact, "defghijkl", &mut out), Err(HoldbackExceeded { held: 12 }));
    }

    #[test]
    fn utf8_sequences_split_anywhere_are_carried_over() {
        let bytes = "añ€😀z".as_bytes();
        for i in 0..bytes.len() {
            let mut d = Utf8Decoder::default();
            let mut s = d.push(&bytes[..i]).unwrap();
            s += &d.push(&bytes[i..]).unwrap();
            assert_eq!(s, "añ€😀z");
            assert_eq!(d.finish(), Ok(()));
        }
        let mut d = Utf8Decoder::default();
        assert_eq!(d.push(b"a\xff"), Err(InvalidUtf8));
        let mut d = Utf8Decoder::default();
        d.push(b"\xe2\x82").unwrap();
        assert_eq!(d.finish(), Err(InvalidUtf8));
    }
}
