//! The one redactor: every piece of text the filter lets through, in either direction, whole or
//! streamed, is judged here, under the direction's mode, with its findings counted.
//!
//! A [`Redactor`] is a short-lived view over the engine, the direction's [`Mode`] and its audit
//! counts. Callers hand it text in one of three ways, and it says what to put out:
//!
//! - [`Redactor::value`]: a complete value (a JSON string, a key, a number's spelling, an SSE
//!   comment, a whole text body);
//! - [`Redactor::push`] / [`Redactor::finish`]: a piece of a running text (a choice's content
//!   arriving token by token), through a [`TextStream`] that holds back only what could still
//!   become a match;
//! - [`Redactor::opaque`]: a token that must pass intact or not at all (a signature over the
//!   content): any finding that would change it blocks the message instead.
//!
//! A `block` finding (a detector's action, or any finding under `mode: block`) is remembered in
//! the audit, and the caller stops the message.

mod text;

pub use text::{HoldbackExceeded, TextStream, Utf8Decoder};

use crate::audit::DirectionAudit;
use crate::detect::{Action, Engine, Finding};

/// What findings do in one direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Apply each detector's or rule's own action.
    #[default]
    Redact,
    /// Any finding that would change text refuses the whole message instead.
    Block,
    /// Change nothing; findings are only counted in the audit record.
    Report,
}

impl Mode {
    /// The names of the modes in configuration.
    pub(crate) const NAMES: &'static [(&'static str, Mode)] =
        &[("redact", Mode::Redact), ("block", Mode::Block), ("report", Mode::Report)];

    /// Rewrites the actions of `findings` as this mode dictates.
    pub fn apply(self, findings: &mut [Finding]) {
        match self {
            Mode::Redact => {}
            Mode::Block => {
                findings.iter_mut().filter(|f| f.action != Action::Report).for_each(|f| f.action = Action::Block)
            }
            Mode::Report => findings.iter_mut().for_each(|f| f.action = Action::Report),
        }
    }
}

/// Byte ranges of a text and what replaces each, in order.
pub type Spans = Vec<(std::ops::Range<usize>, String)>;

/// Judges text for one direction: engine, mode and finding counts.
pub struct Redactor<'a> {
    engine: &'a Engine,
    mode: Mode,
    audit: &'a mut DirectionAudit,
}

impl<'a> Redactor<'a> {
    /// A redactor that counts into `audit`.
    pub fn new(engine: &'a Engine, mode: Mode, audit: &'a mut DirectionAudit) -> Redactor<'a> {
        Redactor { engine, mode, audit }
    }

    /// Whether findings change text (every mode but `report`, a dry run that changes nothing:
    /// not even where streamed text is released).
    pub fn rewrites(&self) -> bool {
        self.mode != Mode::Report
    }

    /// The first detector or rule that blocks the message, if any has fired.
    pub fn blocked(&self) -> Option<&str> {
        self.audit.blocked_by.as_deref()
    }

    /// A complete value under object key `key` (field rules apply to it): the spans to replace,
    /// or `None` when nothing changes.
    pub fn value(&mut self, key: Option<&str>, text: &str) -> Option<Spans> {
        let mut findings = self.engine.find_field(key, text);
        if findings.is_empty() {
            return None;
        }
        self.mode.apply(&mut findings);
        self.note(&findings);
        let spans: Spans =
            findings.iter().filter_map(|f| Some((f.start..f.end, self.engine.replacement(text, f)?))).collect();
        (!spans.is_empty()).then_some(spans)
    }

    /// `text` as it may be recorded (a model name, a request path in the access log), without
    /// counting anything: every finding replaced, whatever its action or the mode, since a log
    /// must never hold a value (a `report` finding is masked, a `block` one too).
    pub fn masked(&self, key: Option<&str>, text: &str) -> Option<Spans> {
        let findings = self.engine.find_field(key, text);
        if findings.is_empty() {
            return None;
        }
        let spans: Spans = findings
            .iter()
            .map(|f| {
                let new = self.engine.replacement(text, f);
                (f.start..f.end, new.unwrap_or_else(|| format!("[REDACTED:{}]", f.detector.to_ascii_uppercase())))
            })
            .collect();
        Some(spans)
    }

    /// An opaque token: scanned like any value, but a finding that would change it blocks the
    /// message (a real signature never holds one, and editing it would break it anyway).
    pub fn opaque(&mut self, text: &str) {
        let mut findings = self.engine.find_all(text);
        self.mode.apply(&mut findings);
        for f in &mut findings {
            if f.action != Action::Report {
                f.action = Action::Block;
            }
        }
        self.note(&findings);
    }

    /// Feeds a piece of the running text `stream`; what can be released is appended to `out`.
    pub fn push(&mut self, stream: &mut TextStream, text: &str, out: &mut String) -> Result<(), HoldbackExceeded> {
        let findings = stream.push(self.engine, self.mode, text, out)?;
        self.note(&findings);
        Ok(())
    }

    /// Ends the running text `stream`: everything held is appended to `out`.
    pub fn finish(&mut self, stream: &mut TextStream, out: &mut String) {
        let findings = stream.finish(self.engine, self.mode, out);
        self.note(&findings);
    }

    /// Counts a part of the message removed whole (`token_details`, ...).
    pub fn remove(&mut self, what: &'static str) {
        self.audit.remove(what);
    }

    /// The findings of `text` as the mode rewrites them, without counting them.
    pub fn findings(&self, text: &str) -> Vec<Finding> {
        let mut f = self.engine.find_all(text);
        self.mode.apply(&mut f);
        f
    }

    /// What replaces finding `f` of `text`, if its action rewrites.
    pub fn replacement(&self, text: &str, f: &Finding) -> Option<String> {
        self.engine.replacement(text, f)
    }

    /// Counts findings; the first `block` one is remembered.
    pub fn note(&mut self, findings: &[Finding]) {
        self.audit.count(findings);
        if self.audit.blocked_by.is_none() {
            if let Some(f) = findings.iter().find(|f| f.action == Action::Block) {
                self.audit.blocked_by = Some(f.detector.to_string());
            }
        }
    }
}

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
