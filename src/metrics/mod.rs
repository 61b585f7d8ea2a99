//! Metrics: what one finished request adds to Envoy's stats, derived from its audit record.
//!
//! proxy-wasm metrics carry no tags, so the labels are encoded in the name, one `;key=value` per
//! label after the metric's own name:
//!
//! ```text
//! inferguard_findings_total;detector=email;direction=response;action=mask
//! ```
//!
//! Envoy puts the metric in its `wasmcustom` namespace, and the `stats_tags` of `envoy/envoy.yaml`
//! (one regex per key, `(;key=([^;]*))`) cut each label out of the name into a tag, so
//! `/stats/prometheus` shows `inferguard_findings_total{detector="email",...}`. Label values
//! come from the configuration (policy, detector and rule names) or fixed sets (decisions,
//! directions, actions, reasons), never from traffic; any character outside
//! `[A-Za-z0-9_.:-]` is written as `_` so a value cannot end its label or start another.
//!
//! Sans-IO: [`on_log`] returns the increments; the glue defines each name once and applies them.

use crate::audit::{AuditRecord, Decision};

/// Requests, by policy and decision.
pub const REQUESTS: &str = "inferguard_requests_total";
/// Findings, by detector, direction and action.
pub const FINDINGS: &str = "inferguard_findings_total";
/// Refused requests (blocked or denied), by reason.
pub const REFUSALS: &str = "inferguard_refusals_total";
/// Body bytes of scanned directions, by direction: the request's as forwarded (Envoy's
/// `request.size`), the answer's as sent (`response.size`); not counted for a denied request, nor
/// for the filter's own error after a refusal.
pub const SCANNED_BYTES: &str = "inferguard_scanned_bytes_total";
/// Responses redacted as they streamed, by policy.
pub const STREAMED: &str = "inferguard_streamed_responses_total";
/// Gauge: responses streaming now.
pub const ACTIVE_STREAMS: &str = "inferguard_active_streams";
/// Histogram: the most characters one streamed response held back at once.
pub const HOLDBACK: &str = "inferguard_holdback_max_chars";
/// Requests refused by an abuse limit (429), per policy.
pub const RATE_LIMITED: &str = "inferguard_rate_limited_total";
/// Requests marked `extraction_suspected` (a caller near its allowance), per policy.
pub const EXTRACTION_SUSPECTED: &str = "inferguard_extraction_suspected_total";
/// Gauge: limit bucket keys the process holds in shared data, per policy (up when a key is
/// created; never down: proxy-wasm cannot delete a key). At most `max_callers` per allowance.
pub const LIMIT_BUCKETS: &str = "inferguard_limit_buckets";

/// Gauge: HTTP streams this filter holds state for now, over every worker (up when Envoy creates
/// the stream's context, down when it deletes it): back to 0 once all streams have ended.
pub const LIVE_EXCHANGES: &str = "inferguard_live_exchanges";
/// Gauge: the filter's linear memory, in bytes, over every worker's VM. Wasm memory never shrinks,
/// so this is the high-water mark of the filter's heap: flat under steady load.
pub const MEMORY_BYTES: &str = "inferguard_memory_bytes";

/// The label keys, in the order they may appear; each has a `stats_tags` regex in `envoy/`.
pub const LABELS: &[&str] = &["policy", "decision", "detector", "direction", "action", "reason"];

/// How a value is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Added to a counter.
    Counter,
    /// Added to a gauge.
    Gauge,
    /// Recorded as one sample of a histogram.
    Histogram,
}

/// One change to one metric.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Increment {
    /// Counter or histogram.
    pub kind: Kind,
    /// The metric name with its labels encoded.
    pub name: String,
    /// What is added or recorded.
    pub value: u64,
}

/// What the glue knows of a finished request besides its record.
#[derive(Debug, Clone, Copy, Default)]
pub struct Observed {
    /// The response was redacted as it streamed.
    pub streamed: bool,
    /// The most characters the stream held back at once (streamed responses).
    pub holdback_max: Option<u64>,
    /// Body bytes: request as received, response as sent.
    pub bytes: [u64; 2],
    /// Limit bucket keys the request created ([`crate::exchange::Exchange::new_limit_keys`]).
    pub new_limit_keys: u32,
}

/// The metric `name` with `labels` encoded.
pub fn name(metric: &str, labels: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(metric.len() + 16 * labels.len());
    out.push_str(metric);
    for (k, v) in labels {
        out.push(';');
        out.push_str(k);
        out.push('=');
        if v.is_empty() {
            out.push('_');
        }
        out.extend(v.chars().map(|c| if c.is_ascii_alphanumeric() || "_.:-".contains(c) { c } else { '_' }));
    }
    out
}

/// The increments of one finished request, from its record (findings per detector and action
/// pair, exactly as the record counts them).
pub fn on_log(audit: &AuditRecord, seen: &Observed) -> Vec<Increment> {
    let counter = |name: String, value: u64| Increment { kind: Kind::Counter, name, value };
    let policy = if audit.policy.is_empty() { "default" } else { audit.policy.as_str() };
    let mut out = vec![counter(name(REQUESTS, &[("policy", policy), ("decision", audit.decision.as_str())]), 1)];
    for (direction, d) in [("request", &audit.request), ("response", &audit.response)] {
        // Exact per pair: the record counts each finding under the action it was given.
        for (detector, actions) in &d.detector_actions {
            for (action, n) in actions {
                let labels = [("detector", detector.as_str()), ("direction", direction), ("action", *action)];
                out.push(counter(name(FINDINGS, &labels), u64::from(*n)));
            }
        }
    }
    let refused = matches!(audit.decision, Decision::Blocked | Decision::Denied | Decision::RateLimited);
    if refused {
        let reason = audit.reason.as_deref().unwrap_or("unknown");
        out.push(counter(name(REFUSALS, &[("reason", reason)]), 1));
    }
    if audit.decision == Decision::RateLimited {
        out.push(counter(name(RATE_LIMITED, &[("policy", policy)]), 1));
    }
    if audit.warning.is_some() {
        out.push(counter(name(EXTRACTION_SUSPECTED, &[("policy", policy)]), 1));
    }
    if seen.new_limit_keys > 0 {
        let value = u64::from(seen.new_limit_keys);
        out.push(Increment { kind: Kind::Gauge, name: name(LIMIT_BUCKETS, &[("policy", policy)]), value });
    }
    // A denied or rate-limited request was judged on its head: its body, if any, was never
    // scanned. After a refusal, what went out to the client is the filter's own error, not a
    // scanned answer.
    let judged_on_head = matches!(audit.decision, Decision::Denied | Decision::RateLimited);
    let scanned = [!judged_on_head && audit.request.scanned(), !refused && audit.response.scanned()];
    for (i, direction) in ["request", "response"].into_iter().enumerate() {
        if scanned[i] && seen.bytes[i] > 0 {
            out.push(counter(name(SCANNED_BYTES, &[("direction", direction)]), seen.bytes[i]));
        }
    }
    if seen.streamed {
        out.push(counter(name(STREAMED, &[("policy", policy)]), 1));
        if let Some(h) = seen.holdback_max {
            out.push(Increment { kind: Kind::Histogram, name: HOLDBACK.to_owned(), value: h });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use crate::detect::{Action, Finding};

    fn finding(detector: &str, action: Action) -> Finding {
        Finding { detector: Arc::from(detector), start: 0, end: 1, action }
    }

    fn names(incs: &[Increment]) -> Vec<(String, u64)> {
        incs.iter().map(|i| (i.name.clone(), i.value)).collect()
    }

    #[test]
    fn a_redacted_answer() {
        let mut a = AuditRecord { policy: "default".into(), ..Default::default() };
        a.response.count([&finding("email", Action::Mask), &finding("email", Action::Mask)]);
        a.decide(Decision::Redacted);
        let seen = Observed { bytes: [120, 300], ..Default::default() };
        assert_eq!(
            names(&on_log(&a, &seen)),
            [
                ("inferguard_requests_total;policy=default;decision=redacted".to_owned(), 1),
                ("inferguard_findings_total;detector=email;direction=response;action=mask".to_owned(), 2),
                ("inferguard_scanned_bytes_total;direction=request".to_owned(), 120),
                ("inferguard_scanned_bytes_total;direction=response".to_owned(), 300),
            ]
        );
    }

    #[test]
    fn mixed_actions_are_counted_per_pair() {
        let mut a = AuditRecord::default();
        // One detector with two actions (a value in an opaque field blocks, elsewhere it masks).
        a.request.count([
            &finding("credit_card", Action::Block),
            &finding("email", Action::Mask),
            &finding("email", Action::Block),
        ]);
        a.block("rule:x");
        let seen = Observed { bytes: [50, 137], ..Default::default() };
        let incs = on_log(&a, &seen);
        assert_eq!(
            names(&incs),
            [
                ("inferguard_requests_total;policy=default;decision=blocked".to_owned(), 1),
                ("inferguard_findings_total;detector=credit_card;direction=request;action=block".to_owned(), 1),
                ("inferguard_findings_total;detector=email;direction=request;action=block".to_owned(), 1),
                ("inferguard_findings_total;detector=email;direction=request;action=mask".to_owned(), 1),
                ("inferguard_refusals_total;reason=rule:x".to_owned(), 1),
                ("inferguard_scanned_bytes_total;direction=request".to_owned(), 50),
            ]
        );
    }

    #[test]
    fn a_denied_request_counts_no_scanned_bytes() {
        let mut a = AuditRecord { policy: "partners".into(), ..Default::default() };
        a.deny("admin_endpoint");
        let seen = Observed { bytes: [10, 80], ..Default::default() };
        assert_eq!(
            names(&on_log(&a, &seen)),
            [
                ("inferguard_requests_total;policy=partners;decision=denied".to_owned(), 1),
                ("inferguard_refusals_total;reason=admin_endpoint".to_owned(), 1),
            ]
        );
    }

    #[test]
    fn rate_limited_and_suspected_requests_are_counted_per_policy() {
        let mut a = AuditRecord { policy: "public".into(), ..Default::default() };
        a.warning = Some("extraction_suspected");
        let seen = Observed { bytes: [10, 80], ..Default::default() };
        assert_eq!(
            names(&on_log(&a, &seen)),
            [
                ("inferguard_requests_total;policy=public;decision=allowed".to_owned(), 1),
                ("inferguard_extraction_suspected_total;policy=public".to_owned(), 1),
                ("inferguard_scanned_bytes_total;direction=request".to_owned(), 10),
                ("inferguard_scanned_bytes_total;direction=response".to_owned(), 80),
            ]
        );
        // A request that created its caller's two buckets.
        let created = Observed { new_limit_keys: 2, ..seen };
        assert_eq!(
            on_log(&a, &created)[2],
            Increment { kind: Kind::Gauge, name: "inferguard_limit_buckets;policy=public".into(), value: 2 }
        );
        a.deny("rate_limited");
        a.decision = Decision::RateLimited;
        assert_eq!(
            names(&on_log(&a, &seen)),
            [
                ("inferguard_requests_total;policy=public;decision=rate_limited".to_owned(), 1),
                ("inferguard_refusals_total;reason=rate_limited".to_owned(), 1),
                ("inferguard_rate_limited_total;policy=public".to_owned(), 1),
                ("inferguard_extraction_suspected_total;policy=public".to_owned(), 1),
            ]
        );
    }

    #[test]
    fn streams_record_their_holdback() {
        let a = AuditRecord::default();
        let seen = Observed { streamed: true, holdback_max: Some(42), ..Default::default() };
        let incs = on_log(&a, &seen);
        assert_eq!(incs[1].name, "inferguard_streamed_responses_total;policy=default");
        assert_eq!(incs[2], Increment { kind: Kind::Histogram, name: HOLDBACK.into(), value: 42 });
    }

    #[test]
    fn label_values_cannot_forge_labels() {
        assert_eq!(
            name(FINDINGS, &[("detector", "a;b=c d\u{e9}"), ("direction", "")]),
            "inferguard_findings_total;detector=a_b_c_d_;direction=_"
        );
    }
}
