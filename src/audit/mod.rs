//! The audit record: one per request, describing every decision the filter took.
//!
//! The record is what operators read in Envoy's access log (the glue stores it as filter state
//! `wasm.inferguard.audit`). It holds names, counts and reasons, never a matched value: it is
//! safe to ship to any log pipeline.

mod capture;

use std::collections::BTreeMap;

pub use capture::{Capture, DirectionCapture, Withheld};

use crate::detect::{Action, Finding};
use crate::policy::CaptureTo;
use crate::wire::json::encode_string_into;

/// The overall outcome of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum Decision {
    /// Nothing was found, or only `report` findings.
    #[default]
    Allowed,
    /// Some bytes went out unscanned (binary content, an explicit pass-through): the direction
    /// says which and why.
    Unscanned,
    /// Some text was changed.
    Redacted,
    /// The request or response was refused for its content.
    Blocked,
    /// Admission refused the request (channel, identity, scope, endpoint or model): nothing of
    /// it was forwarded.
    Denied,
    /// The caller's allowance was spent (429): nothing of it was forwarded.
    RateLimited,
}

impl Decision {
    /// The name in the record.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allowed => "allowed",
            Decision::Unscanned => "unscanned",
            Decision::Redacted => "redacted",
            Decision::Blocked => "blocked",
            Decision::Denied => "denied",
            Decision::RateLimited => "rate_limited",
        }
    }
}

/// What happened in one direction (request or response).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirectionAudit {
    /// Findings per detector or rule name.
    pub findings: BTreeMap<String, u32>,
    /// Findings per action taken.
    pub actions: BTreeMap<&'static str, u32>,
    /// Findings per detector and action: exact where `findings` and `actions` alone are not (a
    /// detector whose findings took more than one action).
    pub detector_actions: BTreeMap<String, BTreeMap<&'static str, u32>>,
    /// Parts of the body removed whole rather than scanned (`token_details`: logprobs and
    /// token lists, which spell the text one token at a time), with how many.
    pub removed: BTreeMap<&'static str, u32>,
    /// Parts passed without a scan because they carry no text (`binary_parts` of a multipart
    /// upload), with how many.
    pub passed: BTreeMap<&'static str, u32>,
    /// Why some bytes of this direction went out unscanned. `scanned` in the record is exactly
    /// "this is `None`", so the two can never disagree.
    pub unscanned_reason: Option<&'static str>,
    /// The first detector or rule whose finding blocks the message (not written: the record's
    /// `reason` says it).
    pub blocked_by: Option<String>,
    /// Body bytes of this direction as Envoy counted them (set by the glue when the stream is
    /// logged; absent before).
    pub bytes: Option<u64>,
    /// The HTTP status sent to the client, a local reply's included (response side only, set by
    /// the glue when the stream is logged).
    pub status: Option<u16>,
    /// The keyed prompt digest, `hmac-sha256:<hex>` (request side, with `audit.prompt_digest`).
    pub digest: Option<String>,
    /// The answer's output tokens as the output allowance counts them (response side, when the
    /// answer reports a count: see [`crate::limits::output_cost`]).
    pub output_tokens: Option<u64>,
}

impl DirectionAudit {
    /// Counts findings.
    pub fn count<'a>(&mut self, findings: impl IntoIterator<Item = &'a Finding>) {
        for f in findings {
            // The name is copied only the first time it is counted.
            match self.findings.get_mut(f.detector.as_ref()) {
                Some(n) => *n += 1,
                None => {
                    self.findings.insert(f.detector.to_string(), 1);
                }
            }
            let action = f.action.as_str();
            *self.actions.entry(action).or_default() += 1;
            match self.detector_actions.get_mut(f.detector.as_ref()) {
                Some(per_action) => *per_action.entry(action).or_default() += 1,
                None => {
                    self.detector_actions.insert(f.detector.to_string(), BTreeMap::from([(action, 1)]));
                }
            }
        }
    }

    fn write(&self, out: &mut Json) {
        out.open();
        if let Some(s) = self.status {
            out.num("status", u64::from(s));
        }
        if let Some(b) = self.bytes {
            out.num("bytes", b);
        }
        if let Some(d) = &self.digest {
            out.str("digest", d);
        }
        if let Some(n) = self.output_tokens {
            out.num("output_tokens", n);
        }
        out.bool("scanned", self.scanned());
        if !self.findings.is_empty() {
            out.counts("findings", self.findings.iter().map(|(k, v)| (k.as_str(), *v)));
        }
        if !self.actions.is_empty() {
            out.counts("actions", self.actions.iter().map(|(k, v)| (*k, *v)));
        }
        if !self.detector_actions.is_empty() {
            out.key("detector_actions");
            out.open();
            for (detector, per_action) in &self.detector_actions {
                out.counts(detector, per_action.iter().map(|(k, v)| (*k, *v)));
            }
            out.close();
        }
        if !self.removed.is_empty() {
            out.counts("removed", self.removed.iter().map(|(k, v)| (*k, *v)));
        }
        if !self.passed.is_empty() {
            out.counts("passed", self.passed.iter().map(|(k, v)| (*k, *v)));
        }
        if let Some(r) = self.unscanned_reason {
            out.str("unscanned_reason", r);
        }
        out.close();
    }

    /// Whether every byte of this direction that went out was scanned (a direction with no body
    /// counts as scanned).
    pub fn scanned(&self) -> bool {
        self.unscanned_reason.is_none()
    }

    /// Counts a part of the body removed whole.
    pub fn remove(&mut self, what: &'static str) {
        *self.removed.entry(what).or_default() += 1;
    }

    /// Whether any finding changed text, or a part of the body was removed.
    pub fn redacted(&self) -> bool {
        !self.removed.is_empty()
            || self.actions.keys().any(|a| *a != Action::Report.as_str() && *a != Action::Block.as_str())
    }
}

/// The version of the record's schema, written as `schema` (README, "The audit record"). Fields
/// are only ever added within a version; a renamed or removed field makes a new one.
pub const SCHEMA_VERSION: u32 = 1;

/// One request's audit record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditRecord {
    /// Envoy's `x-request-id` of the stream (set by the glue).
    pub request_id: Option<String>,
    /// When the filter saw the request head, in milliseconds since the Unix epoch (the host's
    /// clock, read by the glue and passed in: the core reads no clock). Written as `start_time`.
    pub start_ms: Option<u64>,
    /// From `start_ms` to when the stream was logged, in milliseconds.
    pub duration_ms: Option<u64>,
    /// The downstream peer's address, `ip:port` (Envoy's `source.address`, set by the glue).
    pub client_address: Option<String>,
    /// The verified token's `groups` claim (empty without one).
    pub groups: Vec<String>,
    /// The overall outcome.
    pub decision: Decision,
    /// The policy that decided (`default`, or a named policy).
    pub policy: String,
    /// Where the caller's identity came from: `jwt`, `mtls` or `anonymous` (empty before the
    /// request head was read).
    pub identity: &'static str,
    /// The verified subject (a JWT's `sub`, else the SPIFFE id), never a header's claim.
    pub subject: Option<String>,
    /// Envoy's route name.
    pub route: Option<String>,
    /// A mark short of a refusal: `extraction_suspected` when the caller has nearly spent an
    /// allowance.
    pub warning: Option<&'static str>,
    /// The API the path belongs to (`openai.chat_completions`, ...).
    pub api: &'static str,
    /// What CORS made of a request with an `Origin` of another site: `preflight` (a preflight,
    /// answered by the filter), `allowed`, `refused` (403) or `withheld` (served without CORS
    /// headers). Absent for a request that is not cross-origin.
    pub cors: Option<&'static str>,
    /// The `model` field of the request, when present.
    pub model: Option<String>,
    /// Whether the request asked for a stream.
    pub stream: Option<bool>,
    /// Prompt side.
    pub request: DirectionAudit,
    /// Response side.
    pub response: DirectionAudit,
    /// The redacted prompt and answer, with `audit.capture` (see [`Capture`]).
    pub capture: Option<Capture>,
    /// Why the request was blocked or denied: `rule:<name>`, `request_too_large`,
    /// `response_too_large`, `malformed_response`, `unsupported_encoding`; for admission,
    /// `tls_required`, `invalid_token`, `identity_required`, `insufficient_scope`,
    /// `client_certificate_required`, `admin_endpoint`, `endpoint_not_allowed`,
    /// `model_not_allowed`, `upstream_not_encrypted`, `malformed_path`; for CORS, `cors_origin`,
    /// `cors_method`, `cors_headers`.
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

    /// Marks the request denied by admission for `reason`: nothing of it was forwarded.
    pub fn deny(&mut self, reason: &str) {
        self.decision = Decision::Denied;
        self.reason = Some(reason.to_owned());
    }

    /// The record as one line of JSON; absent fields are left out.
    pub fn to_json(&self) -> String {
        let mut out = Json { buf: Vec::with_capacity(256), first: true };
        out.open();
        out.num("schema", u64::from(SCHEMA_VERSION));
        if let Some(id) = &self.request_id {
            out.str("request_id", id);
        }
        if let Some(ms) = self.start_ms {
            out.str("start_time", &rfc3339_ms(ms));
        }
        if let Some(ms) = self.duration_ms {
            out.num("duration_ms", ms);
        }
        out.str("decision", self.decision.as_str());
        if !self.policy.is_empty() {
            out.str("policy", &self.policy);
        }
        if !self.identity.is_empty() {
            out.key("identity");
            out.open();
            out.str("source", self.identity);
            if let Some(s) = &self.subject {
                out.str("subject", s);
            }
            if !self.groups.is_empty() {
                out.key("groups");
                out.buf.push(b'[');
                for (i, g) in self.groups.iter().enumerate() {
                    if i > 0 {
                        out.buf.push(b',');
                    }
                    encode_string_into(g, &mut out.buf);
                }
                out.buf.push(b']');
            }
            out.close();
        }
        if let Some(a) = &self.client_address {
            out.str("client_address", a);
        }
        if let Some(r) = &self.route {
            out.str("route", r);
        }
        out.str("api", self.api);
        if let Some(c) = self.cors {
            out.str("cors", c);
        }
        if let Some(m) = &self.model {
            out.str("model", m);
        }
        if let Some(s) = self.stream {
            out.bool("stream", s);
        }
        out.key("request");
        self.request.write(&mut out);
        out.key("response");
        self.response.write(&mut out);
        if let Some(c) = self.capture.as_ref().filter(|c| c.to == CaptureTo::AccessLog && !c.is_empty()) {
            out.key("capture");
            c.write(&mut out);
        }
        if let Some(r) = &self.reason {
            out.str("reason", r);
        }
        if let Some(w) = self.warning {
            out.str("warning", w);
        }
        out.close();
        // Only whole UTF-8 strings and ASCII were written.
        String::from_utf8(out.buf).unwrap_or_default()
    }

    /// The line of the capture log, when the capture goes there and has something to say:
    /// `{"schema":1,"request_id":...,"start_time":...,"policy":...,"capture":{...}}` (the request
    /// id and start time join it to the record in the access log).
    pub fn capture_log_line(&self) -> Option<String> {
        let c = self.capture.as_ref().filter(|c| c.to == CaptureTo::CaptureLog && !c.is_empty())?;
        let mut out = Json { buf: Vec::with_capacity(256), first: true };
        out.open();
        out.num("schema", u64::from(SCHEMA_VERSION));
        if let Some(id) = &self.request_id {
            out.str("request_id", id);
        }
        if let Some(ms) = self.start_ms {
            out.str("start_time", &rfc3339_ms(ms));
        }
        if !self.policy.is_empty() {
            out.str("policy", &self.policy);
        }
        out.key("capture");
        c.write(&mut out);
        out.close();
        String::from_utf8(out.buf).ok()
    }
}

/// `unix_ms` as RFC 3339 in UTC with milliseconds, as Envoy's access log writes `start_time`
/// (`%Y-%m-%dT%H:%M:%S.%3fZ`): `2026-12-03T14:41:58.654Z`.
pub fn rfc3339_ms(unix_ms: u64) -> String {
    let (days, ms_of_day) = (unix_ms / 86_400_000, unix_ms % 86_400_000);
    // Howard Hinnant's civil_from_days, for days since 1970-01-01 (never negative here).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    let (h, m, s, ms) = (ms_of_day / 3_600_000, ms_of_day / 60_000 % 60, ms_of_day / 1000 % 60, ms_of_day % 1000);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{ms:03}Z")
}

/// A minimal writer for the record's JSON: objects of strings, booleans and counts.
struct Json {
    buf: Vec<u8>,
    /// No member has been written in the innermost open object yet.
    first: bool,
}

impl Json {
    fn open(&mut self) {
        self.buf.push(b'{');
        self.first = true;
    }

    fn close(&mut self) {
        self.buf.push(b'}');
        self.first = false;
    }

    fn key(&mut self, k: &str) {
        if !self.first {
            self.buf.push(b',');
        }
        self.first = false;
        encode_string_into(k, &mut self.buf);
        self.buf.push(b':');
    }

    fn str(&mut self, k: &str, v: &str) {
        self.key(k);
        encode_string_into(v, &mut self.buf);
    }

    fn num(&mut self, k: &str, v: u64) {
        self.key(k);
        self.buf.extend_from_slice(v.to_string().as_bytes());
    }

    fn bool(&mut self, k: &str, v: bool) {
        self.key(k);
        self.buf.extend_from_slice(if v { b"true" } else { b"false" });
    }

    fn counts<'a>(&mut self, k: &str, counts: impl Iterator<Item = (&'a str, u32)>) {
        self.key(k);
        self.open();
        for (name, n) in counts {
            self.key(name);
            self.buf.extend_from_slice(n.to_string().as_bytes());
        }
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn records_counts_and_never_values() {
        let mut a = AuditRecord { api: "openai.chat_completions", ..Default::default() };
        let f = Finding { detector: Arc::from("email"), start: 0, end: 9, action: Action::Mask };
        a.response.count([&f, &f]);
        a.decide(Decision::Redacted);
        a.decide(Decision::Allowed);
        assert_eq!(
            a.to_json(),
            r#"{"schema":1,"decision":"redacted","api":"openai.chat_completions","request":{"scanned":true},"response":{"scanned":true,"findings":{"email":2},"actions":{"mask":2},"detector_actions":{"email":{"mask":2}}}}"#
        );
    }

    #[test]
    fn a_detector_with_mixed_actions_is_counted_per_action() {
        let mut d = DirectionAudit::default();
        let f = |detector: &str, action| Finding { detector: Arc::from(detector), start: 0, end: 1, action };
        let (card_block, email_mask) = (f("credit_card", Action::Block), f("email", Action::Mask));
        // A card number in a signature blocks while another one is masked: `findings` and `actions`
        // alone cannot say which card finding took which action.
        d.count([&f("credit_card", Action::Mask), &email_mask, &card_block, &email_mask, &f("email", Action::Hash)]);
        assert_eq!(d.findings, BTreeMap::from([("credit_card".to_owned(), 2), ("email".to_owned(), 3)]));
        assert_eq!(d.actions, BTreeMap::from([("block", 1), ("hash", 1), ("mask", 3)]));
        let mut out = Json { buf: Vec::new(), first: true };
        d.write(&mut out);
        assert_eq!(
            String::from_utf8(out.buf).unwrap(),
            r#"{"scanned":true,"findings":{"credit_card":2,"email":3},"actions":{"block":1,"hash":1,"mask":3},"detector_actions":{"credit_card":{"block":1,"mask":1},"email":{"hash":1,"mask":2}}}"#
        );
    }

    #[test]
    fn every_field_is_written_as_valid_json() {
        let mut a = AuditRecord {
            api: "anthropic.messages",
            model: Some("claude \"x\"\n".into()),
            stream: Some(true),
            ..Default::default()
        };
        a.request.unscanned_reason = Some("oversize");
        let f = Finding { detector: Arc::from("rule:t\u{e9}"), start: 0, end: 1, action: Action::Block };
        a.response.count([&f]);
        a.block("rule:t\u{e9}");
        let json = a.to_json();
        assert_eq!(
            json,
            r#"{"schema":1,"decision":"blocked","api":"anthropic.messages","model":"claude \"x\"\n","stream":true,"request":{"scanned":false,"unscanned_reason":"oversize"},"response":{"scanned":true,"findings":{"rule:té":1},"actions":{"block":1},"detector_actions":{"rule:té":{"block":1}}},"reason":"rule:té"}"#
        );
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["model"], "claude \"x\"\n");
    }

    #[test]
    fn times_are_rfc3339_utc_with_milliseconds() {
        for (ms, want) in [
            (0, "1970-01-01T00:00:00.000Z"),
            (951_782_400_000, "2000-02-29T00:00:00.000Z"),
            (951_868_799_999, "2000-02-29T23:59:59.999Z"),
            (1_709_251_199_001, "2024-02-29T23:59:59.001Z"),
            (1_796_308_918_654, "2026-12-03T14:41:58.654Z"),
            (4_102_444_800_000, "2100-01-01T00:00:00.000Z"),
            (4_107_456_000_000, "2100-02-28T00:00:00.000Z"),
            (4_107_542_400_000, "2100-03-01T00:00:00.000Z"),
        ] {
            assert_eq!(rfc3339_ms(ms), want, "{ms}");
        }
        let a =
            AuditRecord { start_ms: Some(1_796_308_918_654), duration_ms: Some(4), api: "other", ..Default::default() };
        assert_eq!(
            a.to_json(),
            r#"{"schema":1,"start_time":"2026-12-03T14:41:58.654Z","duration_ms":4,"decision":"allowed","api":"other","request":{"scanned":true},"response":{"scanned":true}}"#
        );
    }

    #[test]
    fn log_time_facts_and_groups_are_written() {
        let mut a = AuditRecord {
            identity: "jwt",
            subject: Some("alice".into()),
            groups: vec!["eng".into(), "on\"call".into()],
            request_id: Some("r-1".into()),
            client_address: Some("127.0.0.1:5000".into()),
            api: "other",
            ..Default::default()
        };
        a.request.bytes = Some(12);
        a.response.bytes = Some(0);
        a.response.status = Some(426);
        a.deny("tls_required");
        assert_eq!(
            a.to_json(),
            r#"{"schema":1,"request_id":"r-1","decision":"denied","identity":{"source":"jwt","subject":"alice","groups":["eng","on\"call"]},"client_address":"127.0.0.1:5000","api":"other","request":{"bytes":12,"scanned":true},"response":{"status":426,"bytes":0,"scanned":true},"reason":"tls_required"}"#
        );
    }
}
