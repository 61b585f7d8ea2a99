//! One request/response pair under one policy: the sans-IO heart of the filter.
//!
//! The glue in `src/filter` owns the host calls; an [`Exchange`] owns the decisions. Call order:
//!
//! 1. [`Exchange::on_request_head`] with the request's method, path and headers: says whether the
//!    request body is buffered for scanning and which headers to drop.
//! 2. [`Exchange::on_request_body`] with the whole buffered body (when asked for), after checking
//!    sizes with [`Exchange::check_request_size`] on every chunk.
//! 3. [`Exchange::on_response_head`]: decides how the response body is handled.
//! 4. [`Exchange::on_response_body`] with the whole buffered body, after
//!    [`Exchange::check_response_size`] on every chunk.
//! 5. [`Exchange::audit`] at any time: the record so far.
//!
//! Every `on_*` may return a [`LocalReply`]: the glue sends it instead of forwarding anything.

use std::rc::Rc;

use crate::audit::{AuditRecord, Decision, DirectionAudit};
use crate::config::{DirectionConfig, Mode, Oversize};
use crate::detect::{Action, Engine};
use crate::policy::Policy;
use crate::stream::fields;
use crate::stream::{apply_spans, redact_spans, Framing, ResponseStream};
use crate::wire::encoding::{ContentEncoding, Decoder};
use crate::wire::json::{self, Container, Edit, Literal, Rewrite, Seg};
use crate::wire::{Api, BodyKind};

/// A response the filter sends itself, in the API's own error shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    /// HTTP status.
    pub status: u16,
    /// JSON body.
    pub body: String,
}

impl LocalReply {
    /// The content-type every local reply carries.
    pub const CONTENT_TYPE: &'static str = "application/json";
}

/// The parts of a request head the core needs.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestHead<'a> {
    /// `:method`.
    pub method: &'a str,
    /// `:path`.
    pub path: &'a str,
    /// `content-type`.
    pub content_type: Option<&'a str>,
    /// `content-encoding`.
    pub content_encoding: Option<&'a str>,
}

/// The parts of a response head the core needs.
#[derive(Debug, Clone, Copy, Default)]
pub struct ResponseHead<'a> {
    /// `:status`.
    pub status: u16,
    /// `content-type`.
    pub content_type: Option<&'a str>,
    /// `content-encoding`.
    pub content_encoding: Option<&'a str>,
}

/// How a body is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyPlan {
    /// Buffer the whole body, then hand it to `on_*_body`; headers wait for the outcome, and
    /// `content-length` is set only when the body is replaced.
    Buffer,
    /// Hand each chunk to [`Exchange::on_response_chunk`] and forward what it returns at once
    /// (SSE, NDJSON, plain text). `content-length` is removed.
    Stream,
    /// Forward as is (binary content, scanning off, or explicit pass-through).
    Pass,
}

/// What to do with response headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponsePlan {
    /// How the body is handled.
    pub body: BodyPlan,
    /// Headers to remove before forwarding (`content-length` of a stream whose text may change,
    /// `content-encoding` when the body is inflated).
    pub remove_headers: Vec<&'static str>,
}

/// What to do with request headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestPlan {
    /// How the body is handled.
    pub body: BodyPlan,
    /// Headers to remove before forwarding.
    pub remove_headers: &'static [&'static str],
}

/// What to do with a buffered body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyOutcome {
    /// Forward the original bytes.
    Unchanged,
    /// Forward these bytes instead (and fix `content-length`).
    Replace(Vec<u8>),
    /// Send this reply instead.
    Reject(LocalReply),
}

/// Verdict of a size check on a growing buffered body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SizeVerdict {
    /// Keep buffering.
    Fits,
    /// Too large, and the policy says to forward it unscanned from here on.
    PassUnscanned,
    /// Too large: send this reply.
    Reject(LocalReply),
}

/// The state of one request/response pair.
pub struct Exchange {
    policy: Rc<Policy>,
    api: Api,
    audit: AuditRecord,
    response_kind: BodyKind,
    decoder: Option<Decoder>,
    stream: Option<ResponseStream>,
}

impl Exchange {
    /// Starts an exchange under `policy`.
    pub fn new(policy: Rc<Policy>) -> Exchange {
        Exchange {
            policy,
            api: Api::Other,
            audit: AuditRecord { api: Api::Other.as_str(), ..Default::default() },
            response_kind: BodyKind::Text,
            decoder: None,
            stream: None,
        }
    }

    /// The audit record so far.
    pub fn audit(&self) -> &AuditRecord {
        &self.audit
    }

    /// The API the request path belongs to.
    pub fn api(&self) -> Api {
        self.api
    }

    /// Handles the request head.
    pub fn on_request_head(&mut self, head: &RequestHead) -> Result<RequestPlan, LocalReply> {
        self.api = Api::from_path(head.path);
        self.audit.api = self.api.as_str();
        // Upstreams must answer in plain text so the response can be scanned.
        let remove_headers: &'static [&'static str] = &["accept-encoding"];
        let body = if !self.policy.request.enabled {
            self.audit.request.unscanned_reason = Some("disabled");
            BodyPlan::Pass
        } else if matches!(head.method, "GET" | "HEAD" | "OPTIONS" | "DELETE") {
            BodyPlan::Pass
        } else if is_encoded(head.content_encoding) {
            return Err(self.refuse(
                415,
                "unsupported_encoding",
                "inferguard cannot scan a compressed request body; send it uncompressed",
            ));
        } else if BodyKind::from_content_type(head.content_type) == BodyKind::Binary {
            self.audit.request.unscanned_reason = Some("binary");
            BodyPlan::Pass
        } else {
            BodyPlan::Buffer
        };
        Ok(RequestPlan { body, remove_headers })
    }

    /// Checks a growing request body against `request.max_body_bytes`.
    pub fn check_request_size(&mut self, size: usize) -> SizeVerdict {
        let policy = Rc::clone(&self.policy);
        self.check_size(&policy.request, size, 413, "request_too_large")
    }

    /// Checks a growing response body against `response.max_body_bytes`.
    pub fn check_response_size(&mut self, size: usize) -> SizeVerdict {
        let policy = Rc::clone(&self.policy);
        self.check_size(&policy.response, size, 502, "response_too_large")
    }

    fn check_size(&mut self, cfg: &DirectionConfig, size: usize, status: u16, kind: &'static str) -> SizeVerdict {
        if (size as u64) <= cfg.max_body_bytes.get() {
            return SizeVerdict::Fits;
        }
        match cfg.on_oversize {
            Oversize::PassUnscanned => {
                let d = if status == 413 { &mut self.audit.request } else { &mut self.audit.response };
                d.scanned = false;
                d.unscanned_reason = Some("oversize");
                SizeVerdict::PassUnscanned
            }
            Oversize::Reject => {
                let msg =
                    format!("body larger than the {} bytes inferguard is configured to scan", cfg.max_body_bytes.get());
                SizeVerdict::Reject(self.refuse(status, kind, &msg))
            }
        }
    }

    /// Handles the whole buffered request body.
    pub fn on_request_body(&mut self, body: &[u8]) -> BodyOutcome {
        self.audit.request.scanned = true;
        let kind = if body.first().is_some_and(|b| matches!(b, b'{' | b'[')) { BodyKind::Json } else { BodyKind::Text };
        let policy = Rc::clone(&self.policy);
        let mut meta = RequestMeta::default();
        let outcome = scan_body(
            &policy.engine,
            policy.request.mode,
            kind,
            body,
            &mut self.audit.request,
            Direction::Request(&mut meta),
        );
        if kind == BodyKind::Json && !matches!(outcome, Scanned::Unreadable(_)) {
            self.audit.model = meta.model;
            // Every API here defaults to a non-streamed answer.
            self.audit.stream = Some(meta.stream.unwrap_or(false));
        }
        self.settle(outcome, 400, "malformed_request", 403)
    }

    /// Handles the response head.
    pub fn on_response_head(&mut self, head: &ResponseHead) -> Result<ResponsePlan, LocalReply> {
        let cfg = &self.policy.response;
        if !cfg.enabled {
            self.audit.response.unscanned_reason = Some("disabled");
            return Ok(ResponsePlan { body: BodyPlan::Pass, remove_headers: Vec::new() });
        }
        self.response_kind = BodyKind::from_content_type(head.content_type);
        if self.response_kind == BodyKind::Binary {
            self.audit.response.unscanned_reason = Some("binary");
            return Ok(ResponsePlan { body: BodyPlan::Pass, remove_headers: Vec::new() });
        }
        let mut remove_headers = Vec::new();
        match ContentEncoding::from_header(head.content_encoding) {
            ContentEncoding::Identity => {}
            ContentEncoding::Unsupported => {
                return Err(self.refuse(
                    502,
                    "unsupported_encoding",
                    "the upstream answered with a content-encoding inferguard cannot scan",
                ));
            }
            enc => {
                // Inflated here, forwarded uncompressed. A buffered body loses its
                // content-encoding only once it is replaced (see `inflated`): one that turns out
                // too large to scan may still pass as it came.
                self.decoder = Some(Decoder::new(enc, cfg.max_body_bytes.get()));
                if self.response_kind != BodyKind::Json {
                    remove_headers.push("content-encoding");
                }
            }
        }
        self.audit.response.scanned = true;
        let framing = match self.response_kind {
            BodyKind::Json => return Ok(ResponsePlan { body: BodyPlan::Buffer, remove_headers }),
            BodyKind::Sse => Framing::Sse,
            BodyKind::Ndjson => Framing::Ndjson,
            _ => Framing::Text,
        };
        let max = usize::try_from(cfg.max_holdback_bytes.get()).unwrap_or(usize::MAX);
        let max_event = usize::try_from(cfg.max_body_bytes.get()).unwrap_or(usize::MAX);
        self.stream = Some(ResponseStream::with_mode(framing, self.api, max, cfg.mode).max_event_bytes(max_event));
        remove_headers.push("content-length");
        Ok(ResponsePlan { body: BodyPlan::Stream, remove_headers })
    }

    /// Whether the response body is inflated: a buffered one that is replaced goes out without
    /// its `content-encoding`.
    pub fn inflated(&self) -> bool {
        self.decoder.is_some()
    }

    /// Handles the whole buffered response body.
    pub fn on_response_body(&mut self, body: &[u8]) -> BodyOutcome {
        self.audit.response.scanned = true;
        let inflated;
        let body = match self.decoder.as_mut() {
            None => body,
            Some(d) => match d.push(body).and_then(|out| d.finish().map(|_| out)) {
                Ok(out) => {
                    inflated = out;
                    &inflated
                }
                Err(e) => {
                    return BodyOutcome::Reject(self.refuse(
                        502,
                        "malformed_response",
                        &format!("inferguard could not read the response: {e}"),
                    ))
                }
            },
        };
        let policy = Rc::clone(&self.policy);
        let outcome = scan_body(
            &policy.engine,
            policy.response.mode,
            self.response_kind,
            body,
            &mut self.audit.response,
            Direction::Response,
        );
        match self.settle(outcome, 502, "malformed_response", 403) {
            // An inflated body goes out inflated even when nothing in it changed.
            BodyOutcome::Unchanged if self.decoder.is_some() => BodyOutcome::Replace(body.to_vec()),
            o => o,
        }
    }

    /// Handles one chunk of a streamed response (after [`BodyPlan::Stream`]); returns the bytes
    /// to forward in its place. With `end`, everything still held is flushed.
    pub fn on_response_chunk(&mut self, chunk: &[u8], end: bool) -> Vec<u8> {
        let Some(stream) = self.stream.as_mut() else { return chunk.to_vec() };
        let engine = &self.policy.engine;
        let mut out = Vec::new();
        let mut decode_error = None;
        let plain = match self.decoder.as_mut() {
            None => Some(std::borrow::Cow::Borrowed(chunk)),
            Some(d) => match d.push(chunk).and_then(|o| if end { d.finish().map(|_| o) } else { Ok(o) }) {
                Ok(o) => Some(std::borrow::Cow::Owned(o)),
                Err(e) => {
                    decode_error = Some(e);
                    None
                }
            },
        };
        if let Some(plain) = plain {
            out = stream.push(engine, &plain, &mut self.audit.response);
        }
        if let Some(e) = decode_error {
            if stream.stopped().is_none() {
                let framing = match self.response_kind {
                    BodyKind::Sse => Framing::Sse,
                    BodyKind::Ndjson => Framing::Ndjson,
                    _ => Framing::Text,
                };
                out.extend(
                    crate::stream::error_event(
                        framing,
                        self.api,
                        "malformed_response",
                        &format!("inferguard could not read the response: {e}"),
                    )
                    .into_bytes(),
                );
                self.audit.block("malformed_response");
            }
            self.stream = None;
            return out;
        }
        if end {
            out.extend(stream.finish(engine, &mut self.audit.response));
        }
        if let Some(stop) = stream.stopped() {
            self.audit.block(stop.reason());
        } else if self.audit.response.redacted() {
            self.audit.decide(Decision::Redacted);
        }
        out
    }

    fn settle(&mut self, outcome: Scanned, bad_status: u16, bad_kind: &'static str, block_status: u16) -> BodyOutcome {
        match outcome {
            Scanned::Clean => BodyOutcome::Unchanged,
            Scanned::Changed(bytes) => {
                self.audit.decide(Decision::Redacted);
                BodyOutcome::Replace(bytes)
            }
            Scanned::Blocked(rule) => {
                let msg = format!("blocked by inferguard policy (rule {rule})");
                self.audit.block(format!("rule:{rule}"));
                let shape = self.api.error_shape();
                BodyOutcome::Reject(LocalReply {
                    status: block_status,
                    body: shape.body(block_status, "content_blocked", &msg),
                })
            }
            Scanned::Unreadable(why) => BodyOutcome::Reject(self.refuse(bad_status, bad_kind, &why)),
        }
    }

    fn refuse(&mut self, status: u16, kind: &'static str, message: &str) -> LocalReply {
        self.audit.block(kind);
        LocalReply { status, body: self.api.error_shape().body(status, kind, message) }
    }
}

/// What the audit record takes from a request body: its top-level `model` and `stream`.
#[derive(Default)]
struct RequestMeta {
    model: Option<String>,
    stream: Option<bool>,
}

impl RequestMeta {
    /// The longest model name recorded.
    const MAX_MODEL_CHARS: usize = 128;

    fn top_level<'p>(path: &'p [Seg]) -> Option<&'p str> {
        match path {
            [Seg::Key(k)] => Some(k),
            _ => None,
        }
    }

    fn see_string(&mut self, path: &[Seg], s: &str) {
        if Self::top_level(path) == Some("model") {
            self.model = Some(s.chars().take(Self::MAX_MODEL_CHARS).collect());
        }
    }

    fn see_literal(&mut self, path: &[Seg], lit: Literal) {
        if Self::top_level(path) == Some("stream") {
            self.stream = match lit {
                Literal::True => Some(true),
                Literal::False => Some(false),
                Literal::Null => None,
            };
        }
    }
}

fn is_encoded(ce: Option<&str>) -> bool {
    ce.is_some_and(|v| !v.trim().is_empty() && !v.trim().eq_ignore_ascii_case("identity"))
}

/// The result of scanning one whole body.
enum Scanned {
    Clean,
    Changed(Vec<u8>),
    Blocked(String),
    Unreadable(String),
}

/// Which direction a whole body travels: a request body also yields its `model` and `stream`;
/// a response body loses its token details (see [`fields::token_details`]).
enum Direction<'m> {
    Request(&'m mut RequestMeta),
    Response,
}

/// Scans one whole body.
fn scan_body(
    engine: &Engine,
    mode: Mode,
    kind: BodyKind,
    body: &[u8],
    audit: &mut DirectionAudit,
    direction: Direction,
) -> Scanned {
    let mut scan = BodyScan { engine, mode, audit, blocked: None, direction };
    let changed = match kind {
        BodyKind::Json => match json::rewrite(body, &mut scan) {
            Ok(v) => v,
            Err(e) => return Scanned::Unreadable(format!("inferguard could not read the JSON body: {e}")),
        },
        _ => {
            let Ok(text) = std::str::from_utf8(body) else {
                return Scanned::Unreadable("inferguard could not read the body: it is not UTF-8 text".into());
            };
            match scan.string(&[], text) {
                Some(Edit::Spans(spans)) if !spans.is_empty() => Some(apply_spans(text, &spans).into_bytes()),
                _ => None,
            }
        }
    };
    if let Some(rule) = scan.blocked {
        return Scanned::Blocked(rule);
    }
    match changed {
        Some(b) => Scanned::Changed(b),
        None => Scanned::Clean,
    }
}

/// One pass over a whole body: every string value is redacted on its own.
struct BodyScan<'a, 'm> {
    engine: &'a Engine,
    mode: Mode,
    audit: &'a mut DirectionAudit,
    /// The first rule that blocks the body.
    blocked: Option<String>,
    direction: Direction<'m>,
}

impl json::Rewrite for BodyScan<'_, '_> {
    fn string(&mut self, path: &[Seg], s: &str) -> Option<Edit> {
        if let Direction::Request(meta) = &mut self.direction {
            meta.see_string(path, s);
        }
        let key = path.iter().rev().find_map(Seg::key);
        let (findings, spans) = redact_spans(self.engine, self.mode, key, s)?;
        self.audit.count(&findings);
        if self.blocked.is_none() {
            self.blocked = findings.iter().find(|f| f.action == Action::Block).map(|f| f.detector.to_string());
        }
        Some(Edit::Spans(spans))
    }

    fn literal(&mut self, path: &[Seg], lit: Literal) {
        if let Direction::Request(meta) = &mut self.direction {
            meta.see_literal(path, lit);
        }
    }

    fn replace(&mut self, path: &[Seg], kind: Container) -> Option<&'static str> {
        if !matches!(self.direction, Direction::Response) || !fields::token_details(path) {
            return None;
        }
        self.audit.remove("token_details");
        Some(fields::emptied(kind))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange(cfg: &str, path: &str) -> Exchange {
        let mut x = Exchange::new(Rc::new(Policy::from_json(cfg).unwrap()));
        x.on_request_head(&RequestHead { method: "POST", path, ..Default::default() }).unwrap();
        x
    }

    fn json_head() -> ResponseHead<'static> {
        ResponseHead { status: 200, content_type: Some("application/json"), content_encoding: None }
    }

    const CHAT: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"Mail jane.doe@corp.example or \u0062ob@x.io."},"finish_reason":"stop"}]}"#;

    #[test]
    fn redacts_emails_in_a_chat_completion_and_counts_them() {
        let mut x = Exchange::new(Rc::new(Policy::from_json("").unwrap()));
        let plan = x
            .on_request_head(&RequestHead { method: "POST", path: "/v1/chat/completions", ..Default::default() })
            .unwrap();
        assert_eq!(plan.body, BodyPlan::Buffer);
        assert_eq!(plan.remove_headers, &["accept-encoding"]);
        assert_eq!(
            x.on_request_body(br#"{"model":"m","stream":false,"messages":[{"role":"user","content":"hi"}]}"#),
            BodyOutcome::Unchanged
        );
        let plan = x.on_response_head(&json_head()).unwrap();
        assert_eq!(plan, ResponsePlan { body: BodyPlan::Buffer, remove_headers: vec![] });
        let BodyOutcome::Replace(out) = x.on_response_body(CHAT.as_bytes()) else { panic!("not replaced") };
        assert_eq!(
            String::from_utf8(out).unwrap(),
            CHAT.replace(r"jane.doe@corp.example or \u0062ob@x.io", "[REDACTED:EMAIL] or [REDACTED:EMAIL]")
        );
        assert_eq!(
            x.audit().to_json(),
            r#"{"decision":"redacted","api":"openai.chat_completions","model":"m","stream":false,"request":{"scanned":true},"response":{"scanned":true,"findings":{"email":2},"actions":{"mask":2}}}"#
        );
    }

    #[test]
    fn refuses_malformed_json_responses_and_unknown_encodings() {
        let mut x = exchange("", "/v1/messages");
        x.on_response_head(&json_head()).unwrap();
        let BodyOutcome::Reject(r) = x.on_response_body(b"{\"a\":") else { panic!() };
        assert_eq!(r.status, 502);
        assert!(r.body.starts_with(r#"{"type":"error","error":{"type":"api_error","message":"inferguard could not read the JSON body: malformed JSON at byte 5"#), "{}", r.body);
        assert_eq!(x.audit().reason.as_deref(), Some("malformed_response"));
        let mut x = exchange("", "/v1/messages");
        let r = x
            .on_response_head(&ResponseHead {
                status: 200,
                content_type: Some("application/json"),
                content_encoding: Some("br"),
            })
            .unwrap_err();
        assert_eq!(r.status, 502);
        assert_eq!(x.audit().decision, Decision::Blocked);
        assert_eq!(x.audit().reason.as_deref(), Some("unsupported_encoding"));
    }

    #[test]
    fn token_lists_are_emptied_in_a_buffered_answer_and_counted() {
        let mut x = exchange("", "/generate");
        x.on_response_head(&json_head()).unwrap();
        let body = br#"{"generated_text":"mail a@b.io","details":{"finish_reason":"eos_token","generated_tokens":3,"prefill":[],"tokens":[{"id":1,"text":"mail a","logprob":-0.1,"special":false},{"id":2,"text":"@b.io","logprob":-0.2,"special":false}]}}"#;
        let BodyOutcome::Replace(out) = x.on_response_body(body) else { panic!("not replaced") };
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"generated_text":"mail [REDACTED:EMAIL]","details":{"finish_reason":"eos_token","generated_tokens":3,"prefill":[],"tokens":[]}}"#
        );
        let audit = x.audit().to_json();
        assert!(audit.contains(r#""response":{"scanned":true,"findings":{"email":1},"actions":{"mask":1},"removed":{"token_details":2}}"#), "{audit}");
    }

    #[test]
    fn inflates_a_deflate_encoded_response_and_forwards_it_plain() {
        let mut x = exchange("", "/v1/chat/completions");
        let plan = x
            .on_response_head(&ResponseHead {
                status: 200,
                content_type: Some("application/json"),
                content_encoding: Some("deflate"),
            })
            .unwrap();
        // Removed only when the body is replaced (an oversized one may pass as it came).
        assert_eq!(plan.remove_headers, Vec::<&str>::new());
        assert!(x.inflated());
        // A raw deflate "stored" block around the JSON.
        let body = br#"{"t":"a@b.io"}"#;
        let mut z = vec![1u8];
        z.extend_from_slice(&(body.len() as u16).to_le_bytes());
        z.extend_from_slice(&(!(body.len() as u16)).to_le_bytes());
        z.extend_from_slice(body);
        assert_eq!(x.on_response_body(&z), BodyOutcome::Replace(br#"{"t":"[REDACTED:EMAIL]"}"#.to_vec()));
    }

    #[test]
    fn enforces_body_limits_per_direction() {
        let mut x = exchange(
            r#"{"request":{"max_body_bytes":10},"response":{"max_body_bytes":10,"on_oversize":"pass_unscanned"}}"#,
            "/v1/chat/completions",
        );
        assert_eq!(x.check_request_size(10), SizeVerdict::Fits);
        let SizeVerdict::Reject(r) = x.check_request_size(11) else { panic!() };
        assert_eq!(r.status, 413);
        assert_eq!(x.check_response_size(11), SizeVerdict::PassUnscanned);
        assert_eq!(x.audit().response.unscanned_reason, Some("oversize"));
        assert_eq!(x.audit().reason.as_deref(), Some("request_too_large"));
    }

    #[test]
    fn blocks_when_a_block_rule_fires() {
        let mut x = exchange(r#"{"detect":{"detectors":{"email":{"action":"block"}}}}"#, "/v1/chat/completions");
        x.on_response_head(&json_head()).unwrap();
        let BodyOutcome::Reject(r) = x.on_response_body(CHAT.as_bytes()) else { panic!() };
        assert_eq!(r.status, 403);
        assert!(!r.body.contains("jane"));
        assert_eq!(x.audit().reason.as_deref(), Some("rule:email"));
    }

    #[test]
    fn request_mode_block_refuses_a_prompt_and_report_changes_nothing() {
        let prompt = br#"{"model":"m","messages":[{"role":"user","content":"I am a@b.io"}]}"#;
        let mut x = exchange(r#"{"request":{"mode":"block"}}"#, "/v1/messages");
        let BodyOutcome::Reject(r) = x.on_request_body(prompt) else { panic!() };
        assert_eq!(r.status, 403);
        assert!(r.body.contains("permission_error"));
        let mut x = exchange(r#"{"request":{"mode":"report"}}"#, "/v1/messages");
        assert_eq!(x.on_request_body(prompt), BodyOutcome::Unchanged);
        assert_eq!(x.audit().request.actions.get("report"), Some(&1));
        assert_eq!(x.audit().decision, Decision::Allowed);
    }

    #[test]
    fn streams_sse_and_audits_the_redaction() {
        let mut x = exchange("", "/v1/chat/completions");
        let plan = x
            .on_response_head(&ResponseHead {
                status: 200,
                content_type: Some("text/event-stream"),
                content_encoding: None,
            })
            .unwrap();
        assert_eq!(plan.body, BodyPlan::Stream);
        let mut out = x.on_response_chunk(
            b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"mail a@b.i\"}}]}\n\n",
            false,
        );
        out.extend(x.on_response_chunk(
            b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"o now\"}}]}\n\ndata: [DONE]\n\n",
            true,
        ));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"mail \"}}]}\n\n\
             data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"[REDACTED:EMAIL] \"}}]}\n\n\
             data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"now\"}}]}\n\n\
             data: [DONE]\n\n"
        );
        assert_eq!(x.audit().decision, Decision::Redacted);
        assert_eq!(x.audit().response.findings.get("email"), Some(&1));
    }

    #[test]
    fn a_block_rule_mid_stream_ends_it_with_one_error_event() {
        let mut x = exchange(r#"{"detect":{"detectors":{"email":{"action":"block"}}}}"#, "/v1/messages");
        x.on_response_head(&ResponseHead {
            status: 200,
            content_type: Some("text/event-stream"),
            content_encoding: None,
        })
        .unwrap();
        let ev = |t: &str| {
            format!("event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"{t}\"}}}}\n\n")
        };
        let mut out = x.on_response_chunk(ev("hi x@").as_bytes(), false);
        out.extend(x.on_response_chunk(ev("y.io more").as_bytes(), false));
        out.extend(x.on_response_chunk(ev("after").as_bytes(), true));
        let out = String::from_utf8(out).unwrap();
        assert!(out.ends_with("event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"permission_error\",\"message\":\"response blocked by inferguard policy (rule email)\"}}\n\n"), "{out}");
        assert!(!out.contains("x@") && !out.contains("after"), "{out}");
        assert_eq!(out.matches("event: error").count(), 1);
        assert_eq!(x.audit().reason.as_deref(), Some("rule:email"));
        assert_eq!(x.audit().decision, Decision::Blocked);
    }
}
