//! The opt-in capture of the redacted prompt and answer (`audit.capture`), for replay.
//!
//! What is kept is exactly what was forwarded: the request body as it went upstream and the
//! answer as the client received it (a stream as the bytes that went out, joined), never the
//! bytes as they arrived. At most `max_bytes` are held per direction, as they pass: a stream is
//! never buffered for it. A direction whose bytes could hold a value the policy found but left in
//! place is withheld instead of kept (see [`Withheld`]), so the capture is as safe to log as the
//! record.

use std::borrow::Cow;

use crate::policy::{CaptureConfig, CaptureTo};

/// Why a direction was not captured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Withheld {
    /// It did not all go out as scanned: refused, or stopped by an error (mid-stream: what went
    /// out before is dropped from the capture too).
    Stopped,
    /// Some of it went out unscanned (binary content, `pass_unscanned`, `enabled: false`).
    Unscanned,
    /// A finding was reported and left in place (a `report` action or `mode: report`).
    Report,
}

impl Withheld {
    /// The name in the record.
    pub fn as_str(self) -> &'static str {
        match self {
            Withheld::Stopped => "stopped",
            Withheld::Unscanned => "unscanned",
            Withheld::Report => "report",
        }
    }
}

/// One direction's capture: the first bytes forwarded, at most `max` of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirectionCapture {
    kept: Vec<u8>,
    max: usize,
    /// Bytes were forwarded at all (an empty body keeps nothing and says nothing).
    forwarded: bool,
    /// More was forwarded than kept.
    truncated: bool,
    withheld: Option<Withheld>,
}

impl DirectionCapture {
    fn new(max: usize) -> DirectionCapture {
        DirectionCapture { max, ..Default::default() }
    }

    /// Notes `len` bytes forwarded; `read(n)` gives their first `n`, and is asked only for what
    /// is kept.
    pub fn forwarded(&mut self, len: usize, read: impl FnOnce(usize) -> Vec<u8>) {
        if self.withheld.is_some() || len == 0 {
            return;
        }
        self.forwarded = true;
        let room = self.max - self.kept.len();
        if len > room {
            self.truncated = true;
        }
        let n = len.min(room);
        if n > 0 {
            let bytes = read(n);
            self.kept.extend_from_slice(&bytes[..n.min(bytes.len())]);
        }
    }

    /// Drops what was kept, and keeps nothing more: the direction is not captured.
    pub fn withhold(&mut self, why: Withheld) {
        if self.withheld.is_none() {
            self.withheld = Some(why);
            self.kept = Vec::new();
            self.truncated = false;
        }
    }

    /// Why the direction is not captured, if it is not.
    pub fn withheld(&self) -> Option<Withheld> {
        self.withheld
    }

    /// What was kept, cut on a UTF-8 boundary (what was forwarded is text, so only a cut at
    /// `max_bytes` can fall inside a character), or `None` when nothing is captured.
    pub fn text(&self) -> Option<Cow<'_, str>> {
        if self.withheld.is_some() || !self.forwarded {
            return None;
        }
        Some(match std::str::from_utf8(&self.kept) {
            Ok(s) => Cow::Borrowed(s),
            // A character cut at the end: it is left out.
            Err(e) if e.error_len().is_none() => {
                Cow::Borrowed(std::str::from_utf8(&self.kept[..e.valid_up_to()]).unwrap_or_default())
            }
            Err(_) => String::from_utf8_lossy(&self.kept),
        })
    }

    /// More was forwarded than is captured.
    pub fn truncated(&self) -> bool {
        self.truncated
    }
}

/// The capture of one exchange: both directions, and where it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capture {
    /// Where it is written.
    pub to: CaptureTo,
    /// The prompt as forwarded upstream.
    pub request: DirectionCapture,
    /// The answer as the client received it.
    pub response: DirectionCapture,
}

impl Capture {
    /// An empty capture under `cfg`.
    pub fn new(cfg: CaptureConfig) -> Capture {
        let max = usize::try_from(cfg.max_bytes).unwrap_or(usize::MAX);
        Capture { to: cfg.to, request: DirectionCapture::new(max), response: DirectionCapture::new(max) }
    }

    /// Nothing forwarded, nothing withheld: there is nothing to write.
    pub fn is_empty(&self) -> bool {
        [&self.request, &self.response].iter().all(|d| d.text().is_none() && d.withheld.is_none())
    }

    /// The two directions with their names.
    fn directions(&self) -> [(&'static str, &DirectionCapture); 2] {
        [("request", &self.request), ("response", &self.response)]
    }

    /// `{"request": "...", "response": "...", "truncated": [...], "withheld": {...}}`, each member
    /// only when it has something to say.
    pub(super) fn write(&self, out: &mut super::Json) {
        out.open();
        for (name, d) in self.directions() {
            if let Some(text) = d.text() {
                out.str(name, &text);
            }
        }
        if self.directions().iter().any(|(_, d)| d.truncated) {
            out.key("truncated");
            out.buf.push(b'[');
            let names = self.directions().into_iter().filter(|(_, d)| d.truncated).map(|(n, _)| n);
            for (i, name) in names.enumerate() {
                if i > 0 {
                    out.buf.push(b',');
                }
                crate::wire::json::encode_string_into(name, &mut out.buf);
            }
            out.buf.push(b']');
        }
        if self.directions().iter().any(|(_, d)| d.withheld.is_some()) {
            out.key("withheld");
            out.open();
            for (name, d) in self.directions() {
                if let Some(w) = d.withheld {
                    out.str(name, w.as_str());
                }
            }
            out.close();
        }
        out.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_at_most_max_bytes_and_reads_no_more() {
        let mut d = DirectionCapture::new(8);
        for _ in 0..1000 {
            d.forwarded(1 << 20, |n| {
                assert!(n <= 8, "asked for {n}");
                vec![b'a'; n]
            });
        }
        assert_eq!(d.kept.len(), 8);
        assert_eq!((d.text().as_deref(), d.truncated()), (Some("aaaaaaaa"), true));
    }

    #[test]
    fn cuts_on_a_character_and_withholds_for_good() {
        let mut d = DirectionCapture::new(5);
        let text = "ab\u{20ac}cd".as_bytes(); // the euro sign is bytes 2..5
        d.forwarded(3, |n| text[..n].to_vec());
        assert_eq!((d.text().as_deref(), d.truncated()), (Some("ab"), false));
        d.forwarded(3, |n| text[3..3 + n].to_vec());
        assert_eq!((d.text().as_deref(), d.truncated()), (Some("ab\u{20ac}"), true));
        d.withhold(Withheld::Report);
        d.forwarded(3, |_| panic!("a withheld direction reads nothing"));
        assert_eq!((d.text(), d.truncated(), d.withheld()), (None, false, Some(Withheld::Report)));
        // Nothing forwarded: nothing to say.
        let d = DirectionCapture::new(5);
        assert_eq!(d.text(), None);
    }
}
