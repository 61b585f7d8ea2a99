//! The detection engine: finds sensitive values in text and decides what replaces them.
//!
//! An [`Engine`] is compiled once per configuration and shared by every request. It is plain
//! Rust: no IO, no host calls, so the filter, the CLI and the tests drive the same code.

pub mod config;

use serde::Deserialize;
use std::sync::Arc;

use crate::config::ConfigError;
pub use config::DetectConfig;

/// What happens to a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Replace with `[REDACTED:NAME]`.
    Mask,
    /// Refuse the whole message.
    Block,
    /// Record in the audit only; the text is left alone.
    Report,
}

impl Action {
    /// The stable snake_case name used in config and audit records.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Mask => "mask",
            Action::Block => "block",
            Action::Report => "report",
        }
    }
}

/// One confirmed match: byte offsets into the scanned text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The detector or rule name (`email`, or a custom rule's name).
    pub detector: Arc<str>,
    /// Start byte offset.
    pub start: usize,
    /// End byte offset (exclusive).
    pub end: usize,
    /// What the policy does with it.
    pub action: Action,
}

/// The result of [`Engine::redact`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redaction {
    /// The text with every finding's action applied.
    pub text: String,
    /// Every finding, in order of position (including `report` and `block` ones).
    pub findings: Vec<Finding>,
}

impl Redaction {
    /// The first finding whose action is `block`, if any.
    pub fn blocked_by(&self) -> Option<&Finding> {
        self.findings.iter().find(|f| f.action == Action::Block)
    }
}

/// Whether more text may follow what is scanned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// More text may follow: matches touching the end are not settled yet.
    More,
    /// The text is complete.
    Final,
}

/// The result of [`Engine::scan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    /// Settled findings, in order.
    pub findings: Vec<Finding>,
    /// Text before this offset is final: no continuation can change its findings.
    pub settled: usize,
}

/// A compiled set of detectors.
#[derive(Debug, Clone)]
pub struct Engine {
    email: Option<(Arc<str>, Action)>,
}

impl Engine {
    /// Compiles a configuration.
    pub fn new(cfg: &DetectConfig) -> Result<Engine, ConfigError> {
        let mut email = Some((Arc::from("email"), Action::Mask));
        for (name, setting) in &cfg.detectors {
            if name != "email" {
                return Err(ConfigError::new(format!("detect.detectors.{name}"), "unknown detector"));
            }
            if setting.enabled == Some(false) {
                email = None;
            } else if let (Some(a), Some(e)) = (setting.action, email.as_mut()) {
                e.1 = a;
            }
        }
        Ok(Engine { email })
    }

    /// Finds every confirmed match, non-overlapping, in order of position.
    pub fn find_all(&self, text: &str) -> Vec<Finding> {
        let mut out = Vec::new();
        let Some((name, action)) = &self.email else {
            return out;
        };
        let b = text.as_bytes();
        let mut from = 0;
        while let Some(at) = text[from..].find('@').map(|i| i + from) {
            let mut s = at;
            while s > 0 && is_local(b[s - 1]) {
                s -= 1;
            }
            let mut e = at + 1;
            while e < b.len() && (b[e].is_ascii_alphanumeric() || b[e] == b'.' || b[e] == b'-') {
                e += 1;
            }
            while e > at + 1 && b[e - 1] == b'.' {
                e -= 1;
            }
            let domain = &text[at + 1..e];
            if s < at && domain.contains('.') && !domain.starts_with('.') {
                out.push(Finding { detector: name.clone(), start: s, end: e, action: *action });
                from = e;
            } else {
                from = at + 1;
            }
        }
        out
    }

    /// A short description, such as `1 detectors enabled`.
    pub fn summary(&self) -> String {
        format!("{} detectors enabled", usize::from(self.email.is_some()))
    }

    /// Like [`Engine::redact`], for a JSON string value under object key `key`: field rules
    /// (values of keys such as `password`) apply on top of the detectors.
    pub fn redact_field(&self, _key: Option<&str>, text: &str) -> Redaction {
        self.redact(text)
    }

    /// Scans `text` where `text[..from]` is released context and `end` says whether more may follow.
    pub fn scan(&self, text: &str, from: usize, end: End) -> Scan {
        let settled = match end {
            End::Final => text.len(),
            End::More => text[from..].rfind(|c: char| c.is_whitespace()).map(|i| from + i + 1).unwrap_or(from),
        };
        let findings = self.find_all(&text[..settled]).into_iter().filter(|f| f.start >= from).collect();
        Scan { findings, settled }
    }

    /// Bytes of released text a scan needs before `from`.
    pub fn max_left_context(&self) -> usize {
        64
    }

    /// Appends `text` with `findings` applied to `out`.
    pub fn render(&self, text: &str, findings: &[Finding], out: &mut String) {
        let mut last = 0;
        for f in findings {
            if f.action == Action::Mask {
                out.push_str(&text[last..f.start]);
                out.push_str("[REDACTED:");
                out.push_str(&f.detector.to_ascii_uppercase());
                out.push(']');
                last = f.end;
            }
        }
        out.push_str(&text[last..]);
    }

    /// Applies the policy to `text`.
    pub fn redact(&self, text: &str) -> Redaction {
        let findings = self.find_all(text);
        let mut out = String::with_capacity(text.len());
        self.render(text, &findings, &mut out);
        Redaction { text: out, findings }
    }
}

fn is_local(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'%' | b'+' | b'-')
}
