//! One request/response pair under one policy: the sans-IO heart of the filter.
//!
//! An [`Exchange`] is an event machine in the manner of rustls' `ConnectionState`: the glue in
//! `src/filter` feeds it what Envoy hands over and carries out the [`Step`] it returns, and
//! decides nothing itself. Call order:
//!
//! 1. [`Exchange::set_start_time`] with the host's clock, then [`Exchange::on_request_head`] when
//!    the request headers arrive;
//! 2. [`Exchange::on_body`] for every request body callback (with `end` on the last one, or from
//!    the trailers callback);
//! 3. [`Exchange::on_response_head`], then [`Exchange::on_body`] for the response the same way;
//! 4. [`Exchange::on_log`] with what Envoy knows when the stream is logged (the clock again);
//! 5. [`Exchange::audit`] at any time: the record so far.
//!
//! What goes out is decided by the bytes, never by their labels: a body's first bytes show what
//! it is (`wire::sniff`); a JSON answer is then read whole, an event stream, JSON lines or text
//! are redacted as they pass, and every request body is read whole, whatever its method. After
//! any error nothing more passes. The headers of a direction wait for that with `hold_headers`
//! ([`Policies::holds_headers`]); without it they go at once, and the bodies are held alone.
//!
//! # Examples
//!
//! A streamed answer whose e-mail address is split across two events and two chunks:
//!
//! ```
//! use std::rc::Rc;
//! use inferguard::exchange::{Exchange, RequestHead, ResponseHead, Side, Then};
//! use inferguard::policy::{Policies, Verified};
//!
//! let mut x = Exchange::new(Rc::new(Policies::from_json("").unwrap()));
//! let head = RequestHead { method: "POST", path: "/v1/chat/completions", ..Default::default() };
//! let tls = Verified { tls_version: Some("TLSv1.3"), ..Default::default() };
//! // The headers go at once (no `hold_headers`); the body is still read whole before it goes.
//! assert_eq!(x.on_request_head(&head, &tls, false).then, Then::Forward);
//! let prompt = br#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
//! let step = x.on_body(Side::Request, prompt.len(), true, &mut |s, n| prompt[s..s + n].to_vec());
//! assert_eq!((step.body, step.then), (None, Then::Forward));
//!
//! x.on_response_head(&ResponseHead { status: 200, ..Default::default() }, false);
//! let mut got = Vec::new();
//! let chunks: [&[u8]; 2] = [
//!     b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"mail jane@ac\"}}]}\n\n",
//!     b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"me.io now\"}}]}\n\ndata: [DONE]\n\n",
//! ];
//! for (i, chunk) in chunks.iter().enumerate() {
//!     let step = x.on_body(Side::Response, chunk.len(), i == 1, &mut |s, n| chunk[s..s + n].to_vec());
//!     assert_eq!(step.then, Then::Forward);
//!     got.extend(step.body.unwrap_or_else(|| chunk.to_vec()));
//! }
//! let got = String::from_utf8(got).unwrap();
//! assert!(got.contains("[REDACTED:EMAIL]") && !got.contains("jane"));
//! assert_eq!(x.audit().decision.as_str(), "redacted");
//! ```

use std::rc::Rc;

use crate::audit::{AuditRecord, Capture, Decision, DirectionAudit, Withheld};
use crate::detect::Action;
use crate::limits::{output_cost, Allowance, BucketKey, Limiter, OutputCost, Rate, Store};
use crate::policy::browser::{HeaderEdit, HeaderName};
use crate::policy::{
    Cors, CorsRequest, Denial, DirectionConfig, Identity, Model, OnRefusedOrigin, Oversize, Policies, Policy, Request,
    Selected, Verified,
};
use crate::redact::{apply_spans, Redactor};
use crate::stream::{text_runs, whole_json, BodyStream, Limits, StreamStop, Usage, Whole};
use crate::wire::encoding::{ContentEncoding, DecodeError, Decoder};
use crate::wire::endpoint::{self, Endpoint, Target};
use crate::wire::json::{Kind, Tape};
use crate::wire::multipart;
use crate::wire::sniff::{sniff, Shape, Sniff, FIRST_VALUE_WINDOW};
use crate::wire::url::redact_target;
use crate::wire::{error_event, Api};

/// A response the filter sends itself, in the API's own error shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    /// HTTP status.
    pub status: u16,
    /// JSON body.
    pub body: String,
    /// Every header it carries: `content-type` (when there is a body), the security and CORS
    /// headers of the policy ([`crate::policy::Browser::response_headers`]), a `WWW-Authenticate`
    /// challenge. Complete when the exchange hands the reply out: the glue adds nothing.
    pub headers: Vec<(HeaderName, String)>,
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
    /// `:authority`.
    pub authority: Option<&'a str>,
    /// `content-type`.
    pub content_type: Option<&'a str>,
    /// `content-encoding`.
    pub content_encoding: Option<&'a str>,
    /// `origin`: what the browser says the calling page is (not identity: any client can write it).
    pub origin: Option<&'a str>,
    /// `access-control-request-method` (a preflight's).
    pub access_control_request_method: Option<&'a str>,
    /// `access-control-request-headers` (a preflight's).
    pub access_control_request_headers: Option<&'a str>,
    /// `x-request-id`, as Envoy set or vetted it before any filter ran (Envoy's `request.id`).
    pub request_id: Option<&'a str>,
}

/// What Envoy knows of a stream when it is logged, for the audit record: read by the glue from
/// Envoy's attributes, never from the client's headers (except `x-request-id`, which Envoy
/// itself generates or vets).
#[derive(Debug, Clone, Copy, Default)]
pub struct LogFacts<'a> {
    /// `request.id`: the stream's `x-request-id` (needed only when the request head was never
    /// handled, [`Exchange::knows_peer`]).
    pub request_id: Option<&'a str>,
    /// `source.address`: the downstream peer, `ip:port` (needed only when the request head was
    /// never handled, [`Exchange::knows_log_facts`]).
    pub client_address: Option<&'a str>,
    /// `request.size`: the request body's size.
    pub request_bytes: Option<u64>,
    /// `response.size`: the response body's size.
    pub response_bytes: Option<u64>,
    /// `response.code`: the status sent to the client (a local reply's included).
    pub status: Option<u16>,
    /// The host's clock now, in milliseconds since the Unix epoch: the end of `duration_ms`.
    pub now_ms: Option<u64>,
}

/// The parts of a response head the core needs.
#[derive(Debug, Clone, Copy, Default)]
pub struct ResponseHead<'a> {
    /// `:status`.
    pub status: u16,
    /// `content-type` (read only for a UTF-16/32 charset: the bytes decide the rest).
    pub content_type: Option<&'a str>,
    /// `content-encoding`.
    pub content_encoding: Option<&'a str>,
    /// Every header, as the upstream (or Envoy) sent them: which ones to remove is decided from
    /// their names ([`crate::policy::Browser::response_headers`]).
    pub headers: &'a [(&'a str, &'a str)],
}

/// Which direction a body travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The prompt.
    Request,
    /// The answer.
    Response,
}

/// What the glue does after a callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Headers of the current direction to set (`Some`) or remove (`None`), first, in order. Only
    /// given while that direction's headers are still held.
    pub headers: Vec<HeaderEdit>,
    /// The bytes that replace everything the host holds of this body (since it last forwarded).
    pub body: Option<Vec<u8>>,
    /// Then what.
    pub then: Then,
}

/// The last part of a [`Step`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Then {
    /// Forward what the host holds (after the edits).
    Forward,
    /// Keep holding it (headers and body so far); more is needed to decide.
    Hold,
    /// Send this instead; nothing more of this exchange is forwarded.
    Reply(LocalReply),
}

impl Step {
    fn forward() -> Step {
        Step { headers: Vec::new(), body: None, then: Then::Forward }
    }

    fn hold() -> Step {
        Step { headers: Vec::new(), body: None, then: Then::Hold }
    }

    fn reply(r: LocalReply) -> Step {
        Step { headers: Vec::new(), body: None, then: Then::Reply(r) }
    }

    fn replace(body: Vec<u8>) -> Step {
        Step { headers: Vec::new(), body: Some(body), then: Then::Forward }
    }
}

/// Where one direction's body is.
enum Body {
    /// Nothing decided yet: the headers are held and the first bytes are read as they come.
    Sniffing { plain: Vec<u8>, raw_seen: usize },
    /// Held whole, to be read at its end.
    Buffering { shape: Shape },
    /// Redacted as it passes.
    Streaming(Box<BodyStream>),
    /// Forwarded without a scan (the audit says why).
    Passing,
    /// Stopped after an error or a refusal: nothing more passes.
    Stopped,
}

/// What the request head showed, kept until the policy is chosen (when that waits for the body's
/// `model`).
struct Head {
    target: Target,
    authority: Option<String>,
    route: Option<String>,
    tls_version: Option<String>,
    client_certificate: bool,
    upstream_tls: Option<bool>,
    /// The client's IP address (`source.address`, without the port).
    client_address: Option<String>,
    /// The raw `:path` (what the request line said).
    raw_path: String,
}

/// The shared buckets and the request's time, for abuse limits.
struct LimitEnv {
    store: Box<dyn Store>,
    now_ms: u64,
}

/// `map` (a header map as read) with `edits` applied as a [`Step`]'s `headers` are, in order:
/// every header an edit names is dropped, then each set is added, a later edit of the same name
/// winning. For a glue that writes a whole map in one host call instead of one call per edit.
pub fn edited_headers<'a>(map: &'a [(String, String)], edits: &'a [HeaderEdit]) -> Vec<(&'a str, &'a str)> {
    let edited = |k: &str| edits.iter().any(|(n, _)| n.as_ref() == k);
    let mut out: Vec<(&str, &str)> =
        map.iter().filter(|(k, _)| !edited(k)).map(|(k, v)| (k.as_str(), v.as_str())).collect();
    for (i, (name, value)) in edits.iter().enumerate() {
        if let (Some(v), false) = (value, edits[i + 1..].iter().any(|(n, _)| n == name)) {
            out.push((name.as_ref(), v.as_str()));
        }
    }
    out
}

/// The state of one request/response pair.
pub struct Exchange {
    limit_env: Option<LimitEnv>,
    /// The answer's output was charged to the caller's allowance.
    charged: bool,
    /// Body bytes forwarded per side (the response's are the output a caller is charged), whether
    /// each side ended by forwarding (no local reply, no error, no trailers), and the status
    /// forwarded: what the record needs, known without asking the host when the exchange ran its
    /// normal course.
    forwarded: [u64; 2],
    ended: [bool; 2],
    status_forwarded: Option<u16>,
    /// Each direction's headers went out (after that, a step carries no header edits, and a
    /// refusal of the answer is written as its body: [`Policies::holds_headers`]).
    head_sent: [bool; 2],
    /// The request target with every value masked, when that differs from the target: what is
    /// forwarded while the policy still waits for the body's model and the headers cannot wait.
    masked_path: Option<String>,
    /// The answer's length as it reports and shows it.
    usage: Usage,
    /// Bucket keys this exchange created in the shared store (each counted by one exchange).
    new_limit_keys: u32,
    policies: Rc<Policies>,
    /// The policy that applies (the default until one is chosen).
    policy: Rc<Policy>,
    /// The policy still waits for the body's `model`.
    pending: bool,
    identity: Identity,
    head: Option<Head>,
    api: Api,
    audit: AuditRecord,
    request_type: Option<String>,
    response_type: Option<String>,
    request: Body,
    response: Body,
    decoder: Option<Decoder>,
    encoding: ContentEncoding,
    /// The request target as it may be logged: redacted.
    logged_path: String,
    /// The request came over TLS (`Strict-Transport-Security` goes out only then).
    tls: bool,
    /// What the request said about CORS, kept for the choice of the policy.
    cors_request: CorsRequestOwned,
    /// The CORS outcome, which decides the response's CORS headers.
    cors: Cors,
    /// The request is a CORS preflight (answered by the filter).
    preflight: bool,
}

/// [`CorsRequest`] without the borrow (kept while the policy waits for the body's model).
#[derive(Default)]
struct CorsRequestOwned {
    method: String,
    origin: Option<String>,
    authority: Option<String>,
}

impl Exchange {
    /// Starts an exchange under a configuration's policies.
    pub fn new(policies: Rc<Policies>) -> Exchange {
        Exchange {
            limit_env: None,
            charged: false,
            forwarded: [0, 0],
            ended: [false, false],
            status_forwarded: None,
            head_sent: [false, false],
            masked_path: None,
            usage: Usage::default(),
            new_limit_keys: 0,
            policy: Rc::clone(policies.default_policy()),
            policies,
            pending: false,
            identity: Identity::default(),
            head: None,
            api: Api::Other,
            audit: AuditRecord { api: Api::Other.as_str(), ..Default::default() },
            request_type: None,
            response_type: None,
            request: Body::Passing,
            response: Body::Passing,
            decoder: None,
            encoding: ContentEncoding::Identity,
            logged_path: String::new(),
            tls: false,
            cors_request: CorsRequestOwned::default(),
            cors: Cors::NotCors,
            preflight: false,
        }
    }

    /// The configuration's policies.
    pub fn policies(&self) -> &Policies {
        &self.policies
    }

    /// The audit record so far.
    pub fn audit(&self) -> &AuditRecord {
        &self.audit
    }

    /// Completes the audit record with what Envoy knows when the stream is logged.
    pub fn on_log(&mut self, facts: &LogFacts) {
        if let Some(id) = facts.request_id {
            self.audit.request_id = Some(self.loggable_id(id));
        }
        let a = &mut self.audit;
        if let Some(peer) = facts.client_address {
            a.client_address = Some(peer.to_owned());
        }
        let own = self.ended == [true, true];
        a.request.bytes = facts.request_bytes.or(own.then_some(self.forwarded[0]));
        a.response.bytes = facts.response_bytes.or(own.then_some(self.forwarded[1]));
        a.response.status = facts.status.or(if own { self.status_forwarded } else { None }).filter(|s| *s != 0);
        if let (Some(start), Some(now)) = (a.start_ms, facts.now_ms) {
            a.duration_ms = Some(now.saturating_sub(start));
        }
    }

    /// The time the request head arrived, in milliseconds since the Unix epoch, from the host's
    /// clock (the core reads none): the record's `start_time`. Set by the glue before
    /// [`Exchange::on_request_head`].
    pub fn set_start_time(&mut self, unix_ms: u64) {
        self.audit.start_ms = Some(unix_ms);
    }

    /// The request id as the record may show it. Envoy keeps a client's `x-request-id` unless it
    /// is an edge proxy (`use_remote_address`), so the id is client text, and a bare token or a
    /// `user:password` cannot be told from an id by its look. Only the UUID form Envoy itself
    /// generates is logged (and scanned like any value); anything else is replaced whole.
    fn loggable_id(&self, id: &str) -> String {
        let b = id.as_bytes();
        let uuid = b.len() == 36
            && b.iter()
                .enumerate()
                .all(|(i, c)| if matches!(i, 8 | 13 | 18 | 23) { *c == b'-' } else { c.is_ascii_hexdigit() });
        if !uuid {
            return "[REDACTED:REQUEST_ID]".to_owned();
        }
        let mut scratch = DirectionAudit::default();
        let r = Redactor::new(&self.policies.default_policy().engine, crate::policy::Mode::Redact, &mut scratch);
        r.masked(Some("x-request-id"), id).map_or_else(|| id.to_owned(), |spans| apply_spans(id, &spans))
    }

    /// Whether the exchange knows everything [`LogFacts`] would carry: the request id and the
    /// peer (from the request head), and the bytes and status that went out, because both
    /// directions ended by forwarding. Then the glue need not ask the host (each read is a host
    /// call); otherwise (a local reply, an error, trailers, a stream cut short) it reads them
    /// all, as Envoy counted them.
    pub fn knows_log_facts(&self) -> bool {
        self.audit.client_address.is_some()
            && self.audit.request_id.is_some()
            && self.ended == [true, true]
            && self.status_forwarded.is_some()
    }

    /// The API the request path belongs to.
    pub fn api(&self) -> Api {
        self.api
    }

    /// Holdback statistics of a streamed answer, while it streams.
    pub fn holdback(&self) -> Option<crate::stream::Holdback> {
        match &self.response {
            Body::Streaming(s) => Some(s.holdback()),
            _ => None,
        }
    }

    /// The request target as it may be logged and forwarded: with every value redacted.
    pub fn logged_path(&self) -> &str {
        &self.logged_path
    }

    /// Handles the request head (`end`: the request has no body). `verified` is what Envoy
    /// established about the connection, the route and the caller; never read from headers.
    pub fn on_request_head(&mut self, head: &RequestHead, verified: &Verified, end: bool) -> Step {
        let mut step = self.request_head(head, verified, end);
        if step.then == Then::Hold && !self.policies.holds_headers() {
            // The headers go now; the body is still read whole before any of it is forwarded.
            step.then = Then::Forward;
            step.headers.push(("content-length".into(), None));
            if self.pending {
                // The policy waits for the model, and so would its redaction of the target: the
                // target goes with every value any policy finds masked, the strictest any
                // policy sends (a policy that would block on one still refuses at the body).
                if let Some(h) = &self.head {
                    let path = self.masked_path.as_ref().unwrap_or(&h.target.forward_path);
                    if h.target.rewritten || *path != h.raw_path {
                        step.headers.push((":path".into(), Some(path.clone())));
                    }
                }
                if self.masked_path.is_some() {
                    self.audit.decide(Decision::Redacted);
                }
            }
        }
        self.head_sent[Side::Request as usize] = step.then == Then::Forward;
        self.ended[Side::Request as usize] = end && step.then == Then::Forward;
        self.finish(step)
    }

    fn request_head(&mut self, head: &RequestHead, verified: &Verified, end: bool) -> Step {
        self.tls = verified.tls_version.is_some_and(|t| !t.is_empty());
        self.cors_request = CorsRequestOwned {
            method: head.method.to_owned(),
            origin: head.origin.map(str::to_owned),
            authority: head.authority.map(str::to_owned),
        };
        self.identity = Identity::from_verified(verified);
        self.audit.identity = self.identity.source.as_str();
        self.audit.subject = self.identity.subject.clone();
        self.audit.groups = self.identity.groups.clone();
        self.audit.route = verified.route.map(str::to_owned);
        self.request_type = head.content_type.map(str::to_owned);
        let target = match endpoint::classify(head.path) {
            Ok(t) => t,
            Err(e) => {
                self.logged_path = "-".to_owned();
                self.audit.policy = self.policy.name.clone();
                // No path, no policy choice: the default's CORS decides who may read the 400.
                let r = CorsRequest {
                    method: head.method,
                    origin: head.origin,
                    authority: head.authority,
                    https: self.tls,
                    ..Default::default()
                };
                self.cors = self.policy.browser.actual(&r);
                return Step::reply(self.deny(&Denial {
                    status: 400,
                    reason: "malformed_path",
                    message: format!("the request path cannot be read: {e}"),
                    www_authenticate: None,
                    retry_after: None,
                }));
            }
        };
        self.api = match target.endpoint {
            Endpoint::Inference(api) => api,
            _ => Api::Other,
        };
        self.audit.api = self.api.as_str();
        // What the access log may show: every value masked that any policy's engine finds (the
        // policy may not be known yet; the mask must not depend on it).
        let (logged, lost) = if target.literal {
            (None, false)
        } else {
            let mut scratch = DirectionAudit::default();
            let mut logged: Option<String> = None;
            let mut lost = false;
            for engine in self.policies.engines() {
                let r = Redactor::new(engine, crate::policy::Mode::Redact, &mut scratch);
                let mut found = 0;
                let masked = redact_target(logged.as_deref().unwrap_or(&target.forward_path), |key, text| {
                    let spans = r.masked(key, text);
                    found += spans.as_ref().map_or(0, Vec::len);
                    spans
                });
                // The normal form can take a value apart (`%2F%2F` merged into one `/`): one the
                // target as sent holds but the forwarded one no longer shows cannot be redacted
                // in place, so the request is refused.
                if target.rewritten {
                    let count = |path: &str| {
                        let mut n = 0;
                        redact_target(path, |key, text| {
                            let spans = r.masked(key, text);
                            n += spans.as_ref().map_or(0, Vec::len);
                            spans
                        });
                        n
                    };
                    let found = if logged.is_some() { count(&target.forward_path) } else { found };
                    lost |= count(head.path) > found;
                }
                logged = masked.or(logged);
            }
            (logged, lost)
        };
        self.masked_path = logged.clone();
        self.logged_path = json_safe(logged.unwrap_or_else(|| target.forward_path.clone()));
        if lost {
            self.logged_path = "-".to_owned();
            self.audit.policy = self.policy.name.clone();
            return Step::reply(self.deny(&Denial {
                status: 400,
                reason: "malformed_path",
                message: "the request path holds a value its normal form would take apart; percent-encode it as one segment".to_owned(),
                www_authenticate: None,
                retry_after: None,
            }));
        }
        // The record's request id and peer (`ip:port`); `on_log` need not ask the host again.
        self.audit.request_id = head.request_id.map(|id| self.loggable_id(id));
        self.audit.client_address = verified.client_address.map(str::to_owned);
        self.head = Some(Head {
            target,
            authority: head.authority.map(str::to_owned),
            route: verified.route.map(str::to_owned),
            tls_version: verified.tls_version.map(str::to_owned),
            client_certificate: verified.client_certificate,
            upstream_tls: verified.upstream_tls,
            client_address: verified.client_address.map(|a| strip_port(a).to_owned()),
            raw_path: head.path.to_owned(),
        });
        let cors = CorsRequest {
            method: head.method,
            origin: head.origin,
            request_method: head.access_control_request_method,
            request_headers: head.access_control_request_headers,
            authority: head.authority,
            https: self.tls,
        };
        if cors.is_preflight() {
            // A preflight carries no body, so no model: the policy is the head's.
            self.preflight = true;
            self.choose(Model::Absent);
            self.request = Body::Stopped;
            return Step::reply(self.answer_preflight(&cors));
        }
        let mut step = Step::forward();
        // Upstreams must answer in plain text so the response can be scanned.
        step.headers.push(("accept-encoding".into(), None));
        // Who is asking, as Envoy verified it, for filters after this one (Envoy's global rate
        // limit filter keys its descriptors on it). Set on every request, so a client's own
        // header of that name never survives.
        let caller = match (&self.identity.subject, &self.head) {
            (Some(s), _) => format!("{}:{s}", self.identity.source.as_str()),
            (None, Some(Head { client_address: Some(a), .. })) => format!("anonymous:{a}"),
            _ => "anonymous:".to_owned(),
        };
        // A header value carries visible ASCII only: anything else is percent-encoded.
        step.headers.push((IDENTITY_HEADER.into(), Some(visible_ascii(caller))));
        let model = if end { Model::Absent } else { Model::Unread };
        if self.choose(model) {
            if let Err(d) = self.admit() {
                return Step::reply(self.deny(&d));
            }
            // Without a body there is no model to read: a model rule decides on none.
            if end {
                if let Err(d) = self.policy.admission.check_model(&self.identity, None) {
                    return Step::reply(self.deny(&d));
                }
            }
            match self.path_edits() {
                Ok(edits) => step.headers.extend(edits),
                Err(reply) => return Step::reply(reply),
            }
        }
        if end {
            self.request = Body::Passing;
            return step;
        }
        let policy = Rc::clone(&self.policy);
        let read_for_model = self.pending || policy.admission.checks_models();
        if !self.pending && !policy.request.enabled && !read_for_model {
            self.pass(Side::Request, "disabled");
            return step;
        }
        if ContentEncoding::from_header(head.content_encoding) != ContentEncoding::Identity {
            return Step::reply(self.refuse(
                415,
                "unsupported_encoding",
                "inferguard cannot scan a compressed request body; send it uncompressed",
            ));
        }
        // Every request body is read whole before it is forwarded, whatever the method.
        self.request = Body::Buffering { shape: Shape::Json };
        step.then = Then::Hold;
        step
    }

    /// Chooses the policy for what is known; false while it waits for the model.
    fn choose(&mut self, model: Model) -> bool {
        let Some(h) = &self.head else { return true };
        let r = Request {
            authority: h.authority.as_deref(),
            path: &h.target.canonical,
            route: h.route.as_deref(),
            identity: &self.identity,
        };
        match self.policies.select(&r, model) {
            Selected::Policy(p) => {
                self.policy = p;
                self.pending = false;
            }
            Selected::AwaitModel => self.pending = true,
        }
        self.audit.policy = self.policy.name.clone();
        !self.pending
    }

    /// A preflight, answered here: 204 with the policy's CORS headers when the origin, the method
    /// and every requested header are allowed, else 403 without any. It never reaches the model.
    fn answer_preflight(&mut self, r: &CorsRequest) -> LocalReply {
        self.audit.cors = Some("preflight");
        match self.policy.browser.preflight(r) {
            Ok(cors) => {
                self.cors = cors;
                LocalReply { status: 204, body: String::new(), headers: Vec::new() }
            }
            Err(why) => {
                self.cors = Cors::Refused;
                self.deny(&Denial {
                    status: 403,
                    reason: why.reason(),
                    message: "this origin may not call this API with that method and those headers (CORS)".to_owned(),
                    www_authenticate: None,
                    retry_after: None,
                })
            }
        }
    }

    /// Everything the chosen policy checks at the head: the caller's origin (CORS), then
    /// admission.
    fn admit(&mut self) -> Result<(), Denial> {
        let c = &self.cors_request;
        let r = CorsRequest {
            method: &c.method,
            origin: c.origin.as_deref(),
            authority: c.authority.as_deref(),
            https: self.tls,
            ..Default::default()
        };
        self.cors = self.policy.browser.actual(&r);
        self.audit.cors = match self.cors {
            Cors::NotCors => None,
            Cors::Allowed(_) => Some("allowed"),
            Cors::Refused if self.policy.browser.cors.on_refused_origin == OnRefusedOrigin::OmitHeaders => {
                Some("withheld")
            }
            Cors::Refused => {
                self.audit.cors = Some("refused");
                return Err(Denial {
                    status: 403,
                    reason: "cors_origin",
                    message: "pages of this origin may not call this API (CORS)".to_owned(),
                    www_authenticate: None,
                    retry_after: None,
                });
            }
        };
        self.admit_head()?;
        self.rate_limit()
    }

    /// The caller's request allowance under the chosen policy (and that its output allowance is
    /// not overdrawn): 429 with `Retry-After` when spent; marked `extraction_suspected` when
    /// nearly spent.
    fn rate_limit(&mut self) -> Result<(), Denial> {
        let limits = self.policy.limits.clone();
        if !limits.any() || self.limit_env.is_none() {
            return Ok(());
        }
        let (output, requests) = (self.bucket(Allowance::Output), self.bucket(Allowance::Requests));
        let Some(env) = self.limit_env.as_mut() else { return Ok(()) };
        let limiter = Limiter { warn_below: 1.0 - limits.warn_at };
        let mut warn = false;
        let mut refused = None;
        if let Some(out) = limits.output_per_minute {
            let rate = Rate { per_minute: out as f64 };
            match limiter.take(env.store.as_mut(), &output, rate, 0.0, env.now_ms) {
                Ok(t) => {
                    warn |= t.warn;
                    self.new_limit_keys += u32::from(t.new_key);
                }
                Err(l) => refused = Some(l),
            }
        }
        if let (None, Some(n)) = (refused, limits.requests_per_minute) {
            let rate = Rate { per_minute: n as f64 };
            match limiter.take(env.store.as_mut(), &requests, rate, 1.0, env.now_ms) {
                Ok(t) => {
                    warn |= t.warn;
                    self.new_limit_keys += u32::from(t.new_key);
                }
                Err(l) => refused = Some(l),
            }
        }
        if warn {
            self.audit.warning = Some("extraction_suspected");
        }
        match refused {
            None => Ok(()),
            Some(l) => Err(Denial {
                status: 429,
                reason: "rate_limited",
                message: format!("too many requests: retry in {} s", l.retry_after_s),
                www_authenticate: None,
                retry_after: Some(l.retry_after_s),
            }),
        }
    }

    /// The caller's bucket of `allowance` under the chosen policy: the verified subject's, else
    /// the client address's.
    fn bucket(&self, allowance: Allowance) -> BucketKey {
        let address = self.head.as_ref().and_then(|h| h.client_address.as_deref());
        let caller = self.identity.subject.as_deref().or(address).unwrap_or_default();
        BucketKey::new(&self.policy.name, allowance, caller, self.policy.limits.max_callers)
    }

    /// Ends the exchange: records the answer's output tokens, and charges its output to the
    /// caller's output allowance (after the fact: the next request waits if this one overdrew
    /// it). Call once, when the exchange ends.
    pub fn on_end(&mut self) {
        let cost =
            output_cost(self.usage.reported_tokens, self.usage.text_bytes, self.forwarded[Side::Response as usize]);
        if let OutputCost::Tokens(n) = cost {
            self.audit.response.output_tokens = Some(n);
        }
        let out = self.policy.limits.output_per_minute;
        let bucket = self.bucket(Allowance::Output);
        let (Some(out), Some(env)) = (out, self.limit_env.as_mut()) else { return };
        if self.charged || self.audit.decision >= Decision::Denied {
            return;
        }
        self.charged = true;
        let limiter = Limiter { warn_below: 1.0 - self.policy.limits.warn_at };
        let rate = Rate { per_minute: out as f64 };
        let t = limiter.charge(env.store.as_mut(), &bucket, rate, cost.amount() as f64, env.now_ms);
        self.new_limit_keys += u32::from(t.new_key);
        if t.warn {
            self.audit.warning = Some("extraction_suspected");
        }
    }

    /// Bucket keys this exchange added to the shared store: each key the process holds is
    /// counted by exactly one exchange (for the `inferguard_limit_buckets` gauge).
    pub fn new_limit_keys(&self) -> u32 {
        self.new_limit_keys
    }

    /// Where the buckets live and the time of this request: set by the glue before the request
    /// head when limits are configured.
    pub fn set_limits(&mut self, store: Box<dyn Store>, now_ms: u64) {
        self.limit_env = Some(LimitEnv { store, now_ms });
    }

    /// Completes a local reply's headers: the one place they are decided, with the upstream's
    /// (`on_response_head`), by [`crate::policy::Browser::response_headers`].
    fn finish(&mut self, mut step: Step) -> Step {
        if let Then::Reply(r) = &mut step.then {
            let mut h: Vec<(HeaderName, String)> = Vec::new();
            if !r.body.is_empty() {
                h.push(("content-type".into(), LocalReply::CONTENT_TYPE.to_owned()));
            }
            if r.status >= 400 {
                h.push(("x-inferguard".into(), "refused".to_owned()));
            }
            let edits = self.policy.browser.response_headers(&self.cors, self.preflight, self.tls, None);
            h.extend(edits.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))));
            h.append(&mut r.headers);
            r.headers = h;
        }
        step
    }

    /// The chosen policy's admission checks that the head decides.
    fn admit_head(&self) -> Result<(), Denial> {
        let Some(h) = &self.head else { return Ok(()) };
        let v = Verified {
            tls_version: h.tls_version.as_deref(),
            client_certificate: h.client_certificate,
            upstream_tls: h.upstream_tls,
            ..Default::default()
        };
        self.policy.admission.check_head(&v, &self.identity, &h.target)
    }

    /// The `:path` to forward, once the policy is known: the normalised target (so the upstream
    /// sees what was judged), with values redacted as the policy says.
    fn path_edits(&mut self) -> Result<Vec<HeaderEdit>, LocalReply> {
        let Some(h) = &self.head else { return Ok(Vec::new()) };
        let (forward, rewritten, raw) = (h.target.forward_path.clone(), h.target.rewritten, h.raw_path.clone());
        let mut edits = Vec::new();
        let mut path = forward.clone();
        let policy = Rc::clone(&self.policy);
        // With nothing found for the log, there is nothing to redact either: one scan.
        if policy.request.enabled && self.logged_path != forward {
            let mut r = Redactor::new(&policy.engine, policy.request.mode, &mut self.audit.request);
            let new = redact_target(&forward, |key, text| r.value(key, text));
            if let Some(rule) = r.blocked().map(str::to_owned) {
                return Err(self.block(&rule, 403));
            }
            if let Some(new) = new {
                self.audit.decide(Decision::Redacted);
                path = new;
            }
        }
        if rewritten || path != raw {
            edits.push((":path".into(), Some(path)));
        }
        Ok(edits)
    }

    /// A refusal by admission: the decision is `denied`, with its reason.
    fn deny(&mut self, d: &Denial) -> LocalReply {
        self.audit.deny(d.reason);
        self.request = Body::Stopped;
        let mut headers = Vec::new();
        if let Some(w) = &d.www_authenticate {
            headers.push(("www-authenticate".into(), w.clone()));
        }
        if let Some(secs) = d.retry_after {
            headers.push(("retry-after".into(), secs.to_string()));
            self.audit.decision = Decision::RateLimited;
        }
        LocalReply { status: d.status, body: self.api.error_shape().body(d.status, d.reason, &d.message), headers }
    }

    /// Handles the response head (`end`: the response has no body). Its header edits come first:
    /// the upstream's CORS and stack headers removed, the policy's security and CORS headers set.
    pub fn on_response_head(&mut self, head: &ResponseHead, end: bool) -> Step {
        let mut edits = self.policy.browser.response_headers(&self.cors, false, self.tls, Some(head.headers));
        let mut step = self.response_head(head, end);
        if matches!(step.then, Then::Reply(_)) {
            return self.finish(step);
        }
        if step.then == Then::Hold && !self.policies.holds_headers() {
            // The headers go now, with every edit the body could need (it may change size, and
            // an inflated body goes out plain); the body is judged in the body callbacks.
            step.then = Then::Forward;
            step.headers.push(("content-length".into(), None));
            if self.decoder.is_some() {
                step.headers.push(("content-encoding".into(), None));
            }
        }
        self.head_sent[Side::Response as usize] = step.then == Then::Forward;
        self.status_forwarded = Some(head.status);
        self.ended[Side::Response as usize] = end && step.then == Then::Forward;
        edits.append(&mut step.headers);
        step.headers = edits;
        step
    }

    fn response_head(&mut self, head: &ResponseHead, end: bool) -> Step {
        self.response_type = head.content_type.map(str::to_owned);
        if end {
            self.response = Body::Passing;
            return Step::forward();
        }
        if !self.policy.response.enabled {
            self.pass(Side::Response, "disabled");
            return Step::forward();
        }
        self.encoding = ContentEncoding::from_header(head.content_encoding);
        match self.encoding {
            ContentEncoding::Identity => {}
            ContentEncoding::Unsupported => {
                return Step::reply(self.refuse(
                    502,
                    "unsupported_encoding",
                    "the upstream answered with a content-encoding inferguard cannot scan",
                ));
            }
            enc => self.decoder = Some(Decoder::new(enc, self.policy.response.max_body_bytes.get())),
        }
        self.response = Body::Sniffing { plain: Vec::new(), raw_seen: 0 };
        Step::hold()
    }

    /// Handles a body callback: `size` bytes held by the host for this body (everything since
    /// it last forwarded), `end` when the body is complete (also from the trailers callback).
    /// `read(start, len)` copies bytes of what the host holds; it is called only when the bytes
    /// are needed.
    pub fn on_body(
        &mut self,
        side: Side,
        size: usize,
        end: bool,
        read: &mut dyn FnMut(usize, usize) -> Vec<u8>,
    ) -> Step {
        let step = self.body_step(side, size, end, read);
        let step = self.after_head(side, step);
        if step.then == Then::Forward {
            let n = step.body.as_ref().map_or(size, Vec::len);
            self.forwarded[side as usize] += n as u64;
            self.ended[side as usize] = end;
        }
        self.capture(side, size, &step, read);
        self.finish(step)
    }

    /// Adds what `step` forwards of `side` to the capture, when the policy captures: the
    /// replacement body, else the `size` bytes the host holds (only the first bytes that are
    /// kept are read). A direction that stopped, went out unscanned, or had a finding left in
    /// place is withheld whole.
    fn capture(&mut self, side: Side, size: usize, step: &Step, read: &mut dyn FnMut(usize, usize) -> Vec<u8>) {
        // Held: nothing went out yet, and the policy may still change (it waits for the model).
        if step.then == Then::Hold {
            return;
        }
        let Some(cfg) = self.policy.capture else { return };
        let (state, judged) = match side {
            Side::Request => (&self.request, &self.audit.request),
            Side::Response => (&self.response, &self.audit.response),
        };
        let withheld = if matches!(state, Body::Stopped) || matches!(step.then, Then::Reply(_)) {
            Some(Withheld::Stopped)
        } else if !judged.scanned() {
            Some(Withheld::Unscanned)
        } else if judged.actions.contains_key(Action::Report.as_str()) {
            Some(Withheld::Report)
        } else {
            None
        };
        let capture = self.audit.capture.get_or_insert_with(|| Capture::new(cfg));
        let d = match side {
            Side::Request => &mut capture.request,
            Side::Response => &mut capture.response,
        };
        match (withheld, &step.then, &step.body) {
            (Some(why), _, _) => d.withhold(why),
            (None, Then::Forward, Some(body)) => d.forwarded(body.len(), |n| body[..n].to_vec()),
            (None, Then::Forward, None) => d.forwarded(size, |n| read(0, n)),
            _ => {}
        }
    }

    fn body_step(&mut self, side: Side, size: usize, end: bool, read: &mut dyn FnMut(usize, usize) -> Vec<u8>) -> Step {
        let state = match side {
            Side::Request => std::mem::replace(&mut self.request, Body::Stopped),
            Side::Response => std::mem::replace(&mut self.response, Body::Stopped),
        };
        let (next, step) = match state {
            Body::Passing => (Body::Passing, Step::forward()),
            // Nothing after an error: what the host holds is dropped.
            Body::Stopped => (Body::Stopped, Step::replace(Vec::new())),
            Body::Buffering { shape } => self.buffering(side, shape, size, end, read),
            Body::Sniffing { plain, raw_seen } => self.sniffing(plain, raw_seen, size, end, read),
            Body::Streaming(s) => self.streaming(s, size, end, read),
        };
        match side {
            Side::Request => self.request = next,
            Side::Response => self.response = next,
        }
        step
    }

    /// Handles a trailers callback: the body ended. `held` is what the host held at the last
    /// body callback. A streamed body already forwarded its bytes: it only ends here (text still
    /// held cannot be added after the last data frame, so it is dropped, never forwarded).
    pub fn on_trailers(&mut self, side: Side, held: usize, read: &mut dyn FnMut(usize, usize) -> Vec<u8>) -> Step {
        let state = match side {
            Side::Request => &self.request,
            Side::Response => &self.response,
        };
        if matches!(state, Body::Streaming(_)) {
            let step = self.body_step(side, 0, true, &mut |_, _| Vec::new());
            let mut step = self.after_head(side, step);
            step.body = None;
            self.capture(side, 0, &step, &mut |_, _| Vec::new());
            return self.finish(step);
        }
        let step = self.body_step(side, held, true, read);
        let step = self.after_head(side, step);
        self.capture(side, held, &step, read);
        self.finish(step)
    }

    /// A body step of a direction whose headers already went out: its header edits were made
    /// at the head ([`Exchange::on_request_head`], [`Exchange::on_response_head`]) and are
    /// dropped; a refusal of the answer can no longer be a status, so its error body, in the
    /// API's shape, replaces what is held (the record keeps the decision and the reason).
    fn after_head(&mut self, side: Side, mut step: Step) -> Step {
        if !self.head_sent[side as usize] {
            return step;
        }
        // Only what the head already did: the length and encoding removed, the target sent.
        debug_assert!(step.headers.iter().all(|(h, v)| match h.as_ref() {
            "content-length" | ":path" => true,
            "content-encoding" => v.is_none(),
            _ => false,
        }));
        step.headers.clear();
        if let (Side::Response, Then::Reply(r)) = (side, &step.then) {
            let body = r.body.clone().into_bytes();
            self.response = Body::Stopped;
            return Step::replace(body);
        }
        step
    }

    fn sniffing(
        &mut self,
        mut plain: Vec<u8>,
        raw_seen: usize,
        size: usize,
        end: bool,
        read: &mut dyn FnMut(usize, usize) -> Vec<u8>,
    ) -> (Body, Step) {
        let fresh = read(raw_seen, size.saturating_sub(raw_seen));
        match self.decode(fresh, end) {
            Ok(p) if plain.is_empty() => plain = p,
            Ok(p) => plain.extend(p),
            Err(Some(stop)) => return (Body::Stopped, self.stop_reply(stop)),
            Err(None) => return self.too_large(Side::Response),
        }
        let shape = match sniff(&plain, end, self.response_type.as_deref()) {
            Sniff::NeedMore if plain.len() <= FIRST_VALUE_WINDOW => {
                return (Body::Sniffing { plain, raw_seen: size }, Step::hold());
            }
            Sniff::NeedMore => Shape::Json,
            Sniff::Is(s) => s,
        };
        match shape {
            Shape::Wide => (Body::Stopped, Step::reply(self.unsupported_charset(502))),
            Shape::Json if end && size as u64 <= self.policy.response.max_body_bytes.get() => {
                self.whole_response(plain)
            }
            Shape::Json => {
                // Read whole at its end; until then only its size is checked.
                self.decoder =
                    self.decoder.take().map(|_| Decoder::new(self.encoding, self.policy.response.max_body_bytes.get()));
                self.buffering(Side::Response, Shape::Json, size, end, read)
            }
            _ => {
                if shape == Shape::Binary {
                    // Not read as text by any client: it passes, with its text runs judged.
                    self.pass(Side::Response, "binary");
                }
                let limits = self.limits();
                if let Some(d) = self.decoder.as_mut() {
                    // A stream is bounded event by event, not as a whole.
                    d.set_limit(u64::MAX);
                }
                let mut s = Box::new(BodyStream::new(shape, self.api, true, limits));
                let policy = Rc::clone(&self.policy);
                let mut r = Redactor::new(&policy.engine, policy.response.mode, &mut self.audit.response);
                let mut out = s.push(&mut r, &plain);
                if end {
                    out.extend(s.finish(&mut r));
                }
                self.usage = s.usage();
                if let Some(stop) = s.stopped().cloned() {
                    // Nothing went out yet: a local reply instead of an error event.
                    return (Body::Stopped, self.stop_reply(stop));
                }
                self.note_redacted();
                let mut step = Step::replace(out);
                // Binary bytes keep their length (a stop truncates them, and the client sees a
                // short body); redacted or inflated text does not.
                if shape != Shape::Binary || self.decoder.is_some() {
                    step.headers.push(("content-length".into(), None));
                }
                if self.decoder.is_some() {
                    step.headers.push(("content-encoding".into(), None));
                }
                (Body::Streaming(s), step)
            }
        }
    }

    fn streaming(
        &mut self,
        mut s: Box<BodyStream>,
        size: usize,
        end: bool,
        read: &mut dyn FnMut(usize, usize) -> Vec<u8>,
    ) -> (Body, Step) {
        let chunk = read(0, size);
        let policy = Rc::clone(&self.policy);
        let inflating = self.decoder.is_some();
        let decoded = self.decode(chunk, end);
        let mut r = Redactor::new(&policy.engine, policy.response.mode, &mut self.audit.response);
        let (out, unchanged) = match decoded {
            Ok(plain) => {
                let mut o = s.push(&mut r, &plain);
                if end {
                    o.extend(s.finish(&mut r));
                }
                self.usage = s.usage();
                // What the host holds is the chunk itself unless it was inflated.
                let unchanged = !inflating && o == plain;
                (o, unchanged)
            }
            Err(stop) => {
                let stop = stop.unwrap_or(StreamStop::HoldbackExceeded);
                let mut out = Vec::new();
                if s.stopped().is_none() {
                    out.extend(error_event(s.shape(), self.api, stop.code(), &stop.message()).into_bytes());
                }
                self.audit.block(stop.reason());
                return (Body::Stopped, Step::replace(out));
            }
        };
        if let Some(stop) = s.stopped() {
            self.audit.block(stop.reason());
            return (Body::Stopped, Step::replace(out));
        }
        self.note_redacted();
        let step = if unchanged { Step::forward() } else { Step::replace(out) };
        (Body::Streaming(s), step)
    }

    fn buffering(
        &mut self,
        side: Side,
        shape: Shape,
        size: usize,
        end: bool,
        read: &mut dyn FnMut(usize, usize) -> Vec<u8>,
    ) -> (Body, Step) {
        let policy = Rc::clone(&self.policy);
        let cfg = match side {
            Side::Request => &policy.request,
            Side::Response => &policy.response,
        };
        if side == Side::Request && self.pending {
            // No policy yet, so no oversize choice to honour: beyond every policy's limit, refused.
            if (size as u64) > self.policies.max_request_body() {
                let msg = format!(
                    "body larger than the {} bytes inferguard is configured to scan",
                    self.policies.max_request_body()
                );
                return (Body::Stopped, Step::reply(self.refuse(413, "request_too_large", &msg)));
            }
        } else if (size as u64) > cfg.max_body_bytes.get() {
            return self.too_large(side);
        }
        if !end {
            return (Body::Buffering { shape }, Step::hold());
        }
        let raw = read(0, size);
        match side {
            Side::Request => {
                // Over the body as received, before anything is decoded or changed.
                self.audit.request.digest = self.policies.prompt_digest(&raw);
                let step = self.whole_request(&raw);
                let next = if matches!(step.then, Then::Reply(_)) { Body::Stopped } else { Body::Passing };
                (next, step)
            }
            Side::Response => {
                let plain = match self.decode(raw, true) {
                    Ok(p) => p,
                    Err(Some(stop)) => return (Body::Stopped, self.stop_reply(stop)),
                    Err(None) => return self.too_large(side),
                };
                self.whole_response(plain)
            }
        }
    }

    /// A whole JSON answer (one document, or documents one per line).
    fn whole_response(&mut self, plain: Vec<u8>) -> (Body, Step) {
        let policy = Rc::clone(&self.policy);
        let mut r = Redactor::new(&policy.engine, policy.response.mode, &mut self.audit.response);
        let inflated = self.decoder.is_some();
        let (whole, usage) = whole_json(&mut r, self.api, true, &plain, Tape::read(&plain));
        self.usage = usage;
        let out = match whole {
            Whole::Unchanged if !inflated => return (Body::Passing, Step::forward()),
            Whole::Unchanged => plain,
            Whole::Changed(b) => b,
            Whole::Blocked => {
                let rule = self.audit.response.blocked_by.clone().unwrap_or_default();
                return (Body::Stopped, Step::reply(self.block(&rule, 403)));
            }
            Whole::Unreadable(why) => {
                return (Body::Stopped, Step::reply(self.refuse(502, "malformed_response", &why)));
            }
        };
        self.note_redacted();
        let mut step = Step::replace(out);
        step.headers.push(("content-length".into(), step.body.as_ref().map(|b| b.len().to_string())));
        if inflated {
            step.headers.push(("content-encoding".into(), None));
        }
        (Body::Passing, step)
    }

    /// A whole request body: its `model` read first (which may choose the policy and is checked
    /// against its model rules), then scanned by the chosen policy, by its bytes (and, for a
    /// multipart upload, its boundary).
    fn whole_request(&mut self, body: &[u8]) -> Step {
        // The upstream splits a form by the boundary its label names: so does this.
        let boundary = self.request_type.as_deref().and_then(multipart::boundary).map(str::to_owned);
        let shape = match sniff(body, true, self.request_type.as_deref()) {
            _ if boundary.is_some() => Shape::Text,
            Sniff::Is(s) => s,
            Sniff::NeedMore => Shape::Text,
        };
        let doc = matches!(shape, Shape::Json | Shape::Ndjson).then(|| Tape::read(body));
        let model: Option<String> = match (&doc, &boundary) {
            (Some(Ok(t)), _) => t.str_at(0, "model").map(str::to_owned),
            (None, Some(b)) => multipart::parse(body, b).ok().and_then(|form| {
                let part = form.parts.iter().rev().find(|p| p.name == "model" && p.filename.is_none())?;
                std::str::from_utf8(&body[part.body.clone()]).ok().map(str::to_owned)
            }),
            _ => None,
        };
        let mut head_edits = Vec::new();
        let pending = self.pending;
        if pending {
            self.choose(model.as_deref().map_or(Model::Absent, Model::Named));
        }
        // The model is client text: it is recorded only as the chosen policy masks it, and before
        // any refusal, so the audit of a refused model still names it.
        if let Some(m) = &model {
            let m: String = m.chars().take(MAX_MODEL_CHARS).collect();
            let mut scratch = DirectionAudit::default();
            let r = Redactor::new(&self.policy.engine, crate::policy::Mode::Redact, &mut scratch);
            self.audit.model = Some(r.masked(Some("model"), &m).map_or(m.clone(), |spans| apply_spans(&m, &spans)));
        }
        if pending {
            if let Err(d) = self.admit() {
                return Step::reply(self.deny(&d));
            }
            match self.path_edits() {
                Ok(e) => head_edits = e,
                Err(reply) => return Step::reply(reply),
            }
        }
        if let Err(d) = self.policy.admission.check_model(&self.identity, model.as_deref()) {
            return Step::reply(self.deny(&d));
        }
        let policy = Rc::clone(&self.policy);
        let mut step = if (body.len() as u64) > policy.request.max_body_bytes.get() {
            match self.oversize(Side::Request, &policy.request) {
                Some(reply) => return Step::reply(reply),
                None => Step::forward(),
            }
        } else if !policy.request.enabled {
            self.pass(Side::Request, "disabled");
            Step::forward()
        } else {
            match boundary {
                Some(b) => self.multipart_request(body, &b),
                None => self.scan_request(body, shape, doc),
            }
        };
        if !matches!(step.then, Then::Reply(_)) {
            head_edits.append(&mut step.headers);
            step.headers = head_edits;
        }
        step
    }

    /// Scans a request body that is not a form, under the chosen policy.
    fn scan_request(
        &mut self,
        body: &[u8],
        shape: Shape,
        doc: Option<Result<Tape, crate::wire::json::JsonError>>,
    ) -> Step {
        let policy = Rc::clone(&self.policy);
        let mut stream = None;
        let mut r = Redactor::new(&policy.engine, policy.request.mode, &mut self.audit.request);
        let outcome = match (shape, doc) {
            (Shape::Wide, _) => return Step::reply(self.unsupported_charset(415)),
            (Shape::Binary, _) => {
                text_runs(&mut r, body);
                if let Some(rule) = r.blocked().map(str::to_owned) {
                    return Step::reply(self.block(&rule, 403));
                }
                self.pass(Side::Request, "binary");
                return Step::forward();
            }
            (_, Some(doc)) => {
                if let Ok(t) = &doc {
                    // Every API here defaults to a non-streamed answer.
                    stream = Some(stream_flag(t).unwrap_or(false));
                }
                whole_json(&mut r, self.api, false, body, doc).0
            }
            _ => match std::str::from_utf8(body) {
                Ok(text) => match r.value(None, text) {
                    _ if r.blocked().is_some() => Whole::Blocked,
                    Some(spans) => Whole::Changed(apply_spans(text, &spans).into_bytes()),
                    None => Whole::Unchanged,
                },
                Err(_) => Whole::Unreadable("the body is not UTF-8 text".into()),
            },
        };
        let blocked = r.blocked().unwrap_or("").to_owned();
        self.audit.stream = stream;
        match outcome {
            Whole::Unchanged => Step::forward(),
            Whole::Changed(b) => {
                self.audit.decide(Decision::Redacted);
                let mut step = Step::replace(b);
                step.headers.push(("content-length".into(), step.body.as_ref().map(|b| b.len().to_string())));
                step
            }
            Whole::Blocked => Step::reply(self.block(&blocked, 403)),
            Whole::Unreadable(why) => Step::reply(self.refuse(400, "malformed_request", &why)),
        }
    }

    /// Inflates what the upstream compressed. `Err(None)`: it inflates past the size bound.
    /// A `multipart/form-data` upload, read part by part: text fields (and text files) are
    /// redacted, files that are really binary pass and are counted; names and file names must
    /// pass intact or the upload is refused.
    fn multipart_request(&mut self, body: &[u8], boundary: &str) -> Step {
        let form = match multipart::parse(body, boundary) {
            Ok(f) => f,
            Err(e) => return Step::reply(self.refuse(400, "malformed_request", &format!("the form: {e}"))),
        };
        let policy = Rc::clone(&self.policy);
        let mut r = Redactor::new(&policy.engine, policy.request.mode, &mut self.audit.request);
        let mut new = Vec::new();
        let mut binary = 0;
        let mut unreadable = None;
        for range in [&form.preamble, &form.epilogue] {
            match std::str::from_utf8(&body[range.clone()]) {
                Ok(t) => r.opaque(t),
                Err(_) => unreadable = Some("the form's preamble or epilogue is not text".to_owned()),
            }
        }
        for (i, part) in form.parts.iter().enumerate() {
            r.opaque(&part.name);
            if let Some(f) = &part.filename {
                r.opaque(f);
            }
            let bytes = &body[part.body.clone()];
            let shape = match sniff(bytes, true, part.content_type.as_deref()) {
                Sniff::Is(s) => s,
                Sniff::NeedMore => Shape::Text,
            };
            let outcome = match shape {
                Shape::Binary if part.filename.is_some() => {
                    text_runs(&mut r, bytes);
                    binary += 1;
                    continue;
                }
                Shape::Json | Shape::Ndjson => whole_json(&mut r, self.api, false, bytes, Tape::read(bytes)).0,
                Shape::Binary | Shape::Wide => Whole::Unreadable(format!("form field {i} is not UTF-8 text")),
                _ => match std::str::from_utf8(bytes) {
                    Ok(text) => match r.value(Some(&part.name), text) {
                        Some(spans) => Whole::Changed(apply_spans(text, &spans).into_bytes()),
                        None => Whole::Unchanged,
                    },
                    Err(_) => Whole::Unreadable(format!("form field {i} is not UTF-8 text")),
                },
            };
            match outcome {
                Whole::Changed(b) => new.push((i, b)),
                Whole::Unreadable(why) => unreadable = Some(why),
                Whole::Unchanged | Whole::Blocked => {}
            }
        }
        let blocked = r.blocked().map(str::to_owned);
        if binary > 0 {
            self.audit.request.passed.insert("binary_parts", binary);
        }
        if let Some(rule) = blocked {
            return Step::reply(self.block(&rule, 403));
        }
        if let Some(why) = unreadable {
            return Step::reply(self.refuse(400, "malformed_request", &why));
        }
        if binary > 0 {
            self.pass(Side::Request, "binary");
        }
        if new.is_empty() {
            return Step::forward();
        }
        match multipart::replace_bodies(body, &form, &new) {
            Ok(b) => {
                self.audit.decide(Decision::Redacted);
                let mut step = Step::replace(b);
                step.headers.push(("content-length".into(), step.body.as_ref().map(|b| b.len().to_string())));
                step
            }
            Err(e) => Step::reply(self.refuse(400, "malformed_request", &format!("the form: {e}"))),
        }
    }

    fn decode(&mut self, raw: Vec<u8>, end: bool) -> Result<Vec<u8>, Option<StreamStop>> {
        let Some(d) = self.decoder.as_mut() else { return Ok(raw) };
        d.push(&raw).and_then(|o| if end { d.finish().map(|_| o) } else { Ok(o) }).map_err(|e| match e {
            DecodeError::TooLarge => None,
            e => Some(StreamStop::Unreadable(e.to_string())),
        })
    }

    /// A body too large to read whole: refused, or passed unscanned (as it came, still
    /// compressed if it was) when the policy says so.
    fn too_large(&mut self, side: Side) -> (Body, Step) {
        let policy = Rc::clone(&self.policy);
        let cfg = match side {
            Side::Request => &policy.request,
            Side::Response => &policy.response,
        };
        if side == Side::Response && self.head_sent[1] && self.decoder.is_some() {
            // Its headers went out without `content-encoding` (it was to be inflated): the
            // compressed bytes cannot pass unscanned after them, whatever `on_oversize` says.
            let msg = format!(
                "compressed body inflating past the {} bytes inferguard is configured to scan",
                cfg.max_body_bytes.get()
            );
            return (Body::Stopped, Step::reply(self.refuse(502, "response_too_large", &msg)));
        }
        match self.oversize(side, cfg) {
            Some(reply) => (Body::Stopped, Step::reply(reply)),
            None => (Body::Passing, Step::forward()),
        }
    }

    fn limits(&self) -> Limits {
        let cfg = &self.policy.response;
        Limits {
            max_holdback: usize::try_from(cfg.max_holdback_bytes.get()).unwrap_or(usize::MAX),
            max_event: usize::try_from(cfg.max_body_bytes.get()).unwrap_or(usize::MAX),
        }
    }

    fn note_redacted(&mut self) {
        if self.audit.response.redacted() {
            self.audit.decide(Decision::Redacted);
        }
    }

    /// A body too large to read whole: refused, or passed unscanned when the policy says so.
    fn oversize(&mut self, side: Side, cfg: &DirectionConfig) -> Option<LocalReply> {
        match cfg.on_oversize {
            Oversize::PassUnscanned => {
                self.pass(side, "oversize");
                None
            }
            Oversize::Reject => {
                let (status, kind) = match side {
                    Side::Request => (413, "request_too_large"),
                    Side::Response => (502, "response_too_large"),
                };
                let msg =
                    format!("body larger than the {} bytes inferguard is configured to scan", cfg.max_body_bytes.get());
                Some(self.refuse(status, kind, &msg))
            }
        }
    }

    fn pass(&mut self, side: Side, reason: &'static str) {
        let d: &mut DirectionAudit = match side {
            Side::Request => &mut self.audit.request,
            Side::Response => &mut self.audit.response,
        };
        d.unscanned_reason = Some(reason);
        self.audit.decide(Decision::Unscanned);
        match side {
            Side::Request => self.request = Body::Passing,
            Side::Response => self.response = Body::Passing,
        }
    }

    fn stop_reply(&mut self, stop: StreamStop) -> Step {
        Step::reply(match stop {
            StreamStop::Blocked(rule) => self.block(&rule, 403),
            stop => {
                let reason = stop.reason();
                self.audit.block(reason);
                LocalReply {
                    status: 502,
                    body: self.api.error_shape().body(502, stop.code(), &stop.message()),
                    headers: Vec::new(),
                }
            }
        })
    }

    fn unsupported_charset(&mut self, status: u16) -> LocalReply {
        self.refuse(status, "unsupported_charset", "inferguard reads UTF-8 only; the body is UTF-16 or UTF-32 text")
    }

    fn block(&mut self, rule: &str, status: u16) -> LocalReply {
        let msg = format!("blocked by inferguard policy (rule {rule})");
        self.audit.block(format!("rule:{rule}"));
        LocalReply { status, body: self.api.error_shape().body(status, "content_blocked", &msg), headers: Vec::new() }
    }

    fn refuse(&mut self, status: u16, kind: &'static str, message: &str) -> LocalReply {
        self.audit.block(kind);
        LocalReply { status, body: self.api.error_shape().body(status, kind, message), headers: Vec::new() }
    }
}

/// `10.0.0.1:5000` → `10.0.0.1`, `[::1]:5000` → `[::1]`.
fn strip_port(address: &str) -> &str {
    match address.rsplit_once(':') {
        Some((host, port))
            if port.bytes().all(|b| b.is_ascii_digit()) && (!host.contains(':') || host.ends_with(']')) =>
        {
            host
        }
        _ => address,
    }
}

/// `text` as a header value may carry it: visible ASCII as it is, every other byte (and `%`)
/// percent-encoded.
fn visible_ascii(text: String) -> String {
    if text.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'%') {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 16);
    for b in text.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The request header that carries the verified caller to the filters after this one.
pub const IDENTITY_HEADER: &str = "x-inferguard-identity";

/// The longest model name recorded.
const MAX_MODEL_CHARS: usize = 128;

/// The request's top-level `stream` flag, if it is a boolean.
fn stream_flag(t: &Tape) -> Option<bool> {
    let n = &t.nodes[t.get(0, "stream")?];
    (n.kind == Kind::Lit).then(|| n.text == "true").filter(|_| n.text != "null")
}

#[cfg(test)]
mod tests;

/// `path` with `"`, `\` and control characters percent-encoded: Envoy's access log prints it
/// unescaped inside a JSON string (see `envoy/envoy.yaml`), and a path could otherwise end it.
fn json_safe(path: String) -> String {
    if !path.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20 || b == 0x7f) {
        return path;
    }
    let mut out = String::with_capacity(path.len() + 8);
    for c in path.chars() {
        match c {
            '"' | '\\' | '\u{0}'..='\u{1f}' | '\u{7f}' => out.push_str(&format!("%{:02X}", c as u32)),
            _ => out.push(c),
        }
    }
    out
}
