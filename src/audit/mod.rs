//! The audit record: one per request, describing every decision the filter took.
//!
//! The record is what operators read in Envoy's access log (the glue stores it as filter state
//! `wasm.inferguard.audit`). It holds names, counts and reasons, never a matched value: it is
//! safe to ship to any log pipeline.

use serde::Serialize;
use std::collections::BTreeMap;

use crate::detect::{Action, Finding};

/// The overall outcome of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Nothing was found, or only `report` findings.
    #[default]
    Allowed,
    /// Some text was changed.
    Redacted,
    /// The request or response was refused.
    Blocked,
}

/// What happened in one direction (request or response).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DirectionAudit {
    /// Whether the body was scanned (false for binary bodies and explicit pass-through).
    pub scanned: bool,
    /// Findings per detector or rule name.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub findings: BTreeMap<String, u32>,
    /// Findings per action taken.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub actions: BTreeMap<&'static str, u32>,
    /// Why the body was not scanned, when it was not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unscanned_reason: Option<&'static str>,
}

impl DirectionAudit {
    /// Counts findings.
    pub fn count<'a>(&mut self, findings: impl IntoIterator<Item = &'a Finding>) {
        for f in findings {
            *self.findings.entry(f.detector.to_string()).or_default() += 1;
            *self.actions.entry(f.action.as_str()).or_default() += 1;
        }
    }

    /// Whether any finding changed text.
    pub fn redacted(&self) -> bool {
        self.actions.keys().any(|a| *a != Action::Report.as_str() && *a != Action::Block.as_str())
    }
}

/// One request's audit record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AuditRecord {
    /// The overall outcome.
    pub decision: Decision,
    /// The API the path belongs to (`openai.chat_completions`, ...).
    pub api: &'static str,
    /// The `model` field of the request, when present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Whether the request asked for a stream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Prompt side.
    pub request: DirectionAudit,
    /// Response side.
    pub response: DirectionAudit,
    /// Why the request was blocked: `rule:<name>`, `request_too_large`, `response_too_large`,
    /// `malformed_response`, `unsupported_encoding`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl AuditRecord {
    /// Raises the decision (it never goes down: blocked stays blocked).
    pub fn decide(&mut self, d: Decision) {
        self.decision = self.decision.max(d);
    }

    /// Marks the request blocked for `reason`.
    pub fn block(&mut self, reason: impl Into<String>) {
        self.decide(Decision::Blocked);
        if self.reason.is_none() {
            self.reason = Some(reason.into());
        }
    }

    /// The record as one line of JSON.
    pub fn to_json(&self) -> String {
        // Serialising plain structs of strings and integers cannot fail.
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn records_counts_and_never_values() {
        let mut a = AuditRecord { api: "openai.chat_completions", ..Default::default() };
        a.response.scanned = true;
        let f = Finding { detector: Arc::from("email"), start: 0, end: 9, action: Action::Mask };
        a.response.count([&f, &f]);
        a.decide(Decision::Redacted);
        a.decide(Decision::Allowed);
        assert_eq!(
            a.to_json(),
            r#"{"decision":"redacted","api":"openai.chat_completions","request":{"scanned":false},"response":{"scanned":true,"findings":{"email":2},"actions":{"mask":2}}}"#
        );
    }
}
