//! The proxy-wasm glue: reads from Envoy, calls the core, carries out the [`Step`] it returns.
//! Nothing is decided here.
//!
//! [`Root`] parses and compiles the configuration once per `on_configure` and shares the result
//! (an `Rc<Policies>`) with every [`Filter`], one per HTTP stream. A bad configuration makes
//! `on_configure` return false, so Envoy refuses the filter and logs which field was wrong.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MetricType};

use crate::exchange::{edited_headers, Exchange, LocalReply, LogFacts, RequestHead, ResponseHead, Side, Step, Then};
use crate::limits::{self, Allowance, Store};
use crate::metrics;
use crate::policy::browser::HeaderEdit;
use crate::policy::{JwtFacts, Policies, Verified};

proxy_wasm::main! {{
    // Also installs a panic hook that logs the panic at critical level before the VM traps.
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(Root { policy: None, metrics: Rc::default(), connections: Rc::default() })
    });
}}

/// The filter state key the audit record is stored under. Envoy's access log reads it as
/// `%FILTER_STATE(wasm.inferguard.audit:PLAIN)%`.
const AUDIT_PROPERTY: &str = "inferguard.audit";

/// The filter state key of the capture log's line (`audit.capture.to: capture_log`): set only for
/// a request with a capture, so the capture log (envoy/envoy.yaml) writes a line only for those.
const CAPTURE_PROPERTY: &str = "inferguard.capture";

/// The filter state key of the request target as it may be logged (values redacted):
/// `%FILTER_STATE(wasm.inferguard.path:PLAIN)%`.
const PATH_PROPERTY: &str = "inferguard.path";

/// Where `jwt_authn` writes what it verified (`payload_in_metadata: payload`,
/// `failed_status_in_metadata: failure`); Istio's `RequestAuthentication` writes the same.
const JWT_METADATA: [&str; 3] = ["metadata", "filter_metadata", "envoy.filters.http.jwt_authn"];

/// The limit buckets in proxy-wasm shared data: one store per Envoy process, seen by every worker,
/// written with compare-and-swap.
struct SharedData;

impl Store for SharedData {
    fn get(&mut self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        hostcalls::get_shared_data(key).unwrap_or((None, None))
    }

    fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), ()> {
        hostcalls::set_shared_data(key, Some(value), cas).map_err(|_| ())
    }
}

/// One per plugin configuration: owns the compiled policies.
struct Root {
    policy: Option<Rc<Policies>>,
    metrics: Rc<Metrics>,
    connections: Rc<RefCell<Connections>>,
}

/// What Envoy verified about a downstream connection, which holds for every request on it.
#[derive(Default)]
struct ConnectionFacts {
    tls_version: Option<Vec<u8>>,
    client_certificate: bool,
    spiffe: Option<Vec<u8>>,
    client_address: Option<Vec<u8>>,
}

impl ConnectionFacts {
    /// Read from Envoy: one host call each.
    fn read(prop: &dyn Fn(&[&str]) -> Option<Vec<u8>>) -> ConnectionFacts {
        let client_certificate = prop(&["connection", "mtls"]).as_deref() == Some(&[1]);
        ConnectionFacts {
            tls_version: prop(&["connection", "tls_version"]),
            client_certificate,
            spiffe: if client_certificate { prop(&["connection", "uri_san_peer_certificate"]) } else { None },
            client_address: prop(&["source", "address"]),
        }
    }
}

/// The facts of this worker's recent connections, by Envoy's connection id: read once per
/// connection instead of once per request (keep-alive and HTTP/2 carry many requests on one).
/// Envoy never reuses an id while the process lives, so an entry cannot describe another
/// connection; the oldest entries go first past the bound.
#[derive(Default)]
struct Connections {
    facts: HashMap<u64, Rc<ConnectionFacts>>,
    order: VecDeque<u64>,
}

impl Connections {
    /// Connections remembered per worker: more than one worker serves at once in practice.
    const MAX: usize = 1024;

    fn get_or_read(&mut self, id: u64, read: impl FnOnce() -> ConnectionFacts) -> Rc<ConnectionFacts> {
        if let Some(f) = self.facts.get(&id) {
            return Rc::clone(f);
        }
        if self.order.len() >= Self::MAX {
            if let Some(old) = self.order.pop_front() {
                self.facts.remove(&old);
            }
        }
        let f = Rc::new(read());
        self.facts.insert(id, Rc::clone(&f));
        self.order.push_back(id);
        f
    }
}

/// The metric ids of this VM, defined on first use (label values come from the configuration),
/// and this VM's share of the gauges of what the filter holds.
#[derive(Default)]
struct Metrics {
    ids: RefCell<HashMap<String, u32>>,
    /// HTTP contexts alive in this VM.
    live: Cell<i64>,
    /// What this VM last added to [`metrics::LIVE_EXCHANGES`] and [`metrics::MEMORY_BYTES`] in
    /// all: each report adds only the change, so the gauges hold the sum over the workers.
    shown_live: Cell<i64>,
    shown_memory: Cell<i64>,
}

impl Metrics {
    /// Brings this VM's share of the resident gauges up to date: a host call only for a change.
    fn report_resident(&self) {
        let memory = i64::try_from(core::arch::wasm32::memory_size::<0>() * 65536).unwrap_or(i64::MAX);
        for (name, now, shown) in [
            (metrics::LIVE_EXCHANGES, self.live.get(), &self.shown_live),
            (metrics::MEMORY_BYTES, memory, &self.shown_memory),
        ] {
            if now != shown.get() {
                self.add(MetricType::Gauge, name, now - shown.get());
                shown.set(now);
            }
        }
    }

    fn id(&self, kind: MetricType, name: &str) -> Option<u32> {
        if let Some(id) = self.ids.borrow().get(name) {
            return Some(*id);
        }
        let id = hostcalls::define_metric(kind, name).ok()?;
        self.ids.borrow_mut().insert(name.to_owned(), id);
        Some(id)
    }

    fn add(&self, kind: MetricType, name: &str, value: i64) {
        if let Some(id) = self.id(kind, name) {
            let _ = match kind {
                MetricType::Histogram => hostcalls::record_metric(id, value as u64),
                _ => hostcalls::increment_metric(id, value),
            };
        }
    }
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        let text = match std::str::from_utf8(&bytes) {
            Ok(t) => t,
            Err(_) => {
                log::error!("inferguard: invalid configuration: configuration: not valid UTF-8");
                return false;
            }
        };
        match Policies::from_json(text) {
            Ok(p) => {
                log::info!("inferguard: configured: {}", p.summary());
                // Before any request of this configuration (see `limits::create_registry`).
                for policy in p.named().iter().chain([p.default_policy()]) {
                    let l = &policy.limits;
                    for (allowance, on) in
                        [(Allowance::Requests, l.requests_per_minute), (Allowance::Output, l.output_per_minute)]
                    {
                        if on.is_some() {
                            limits::create_registry(&mut SharedData, &policy.name, allowance, l.max_callers);
                        }
                    }
                }
                self.policy = Some(Rc::new(p));
                true
            }
            Err(e) => {
                log::error!("inferguard: invalid configuration: {e}");
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let policy = Rc::clone(self.policy.as_ref()?);
        self.metrics.live.set(self.metrics.live.get() + 1);
        self.metrics.report_resident();
        Some(Box::new(Filter {
            exchange: Exchange::new(policy),
            replied: false,
            sizes: [0, 0],
            metrics: Rc::clone(&self.metrics),
            connections: Rc::clone(&self.connections),
            streaming: false,
            holdback_max: 0,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// One per HTTP stream.
struct Filter {
    exchange: Exchange,
    /// A local reply was sent: nothing more is forwarded.
    replied: bool,
    /// The body bytes the host held at the last body callback, per side (for the trailers
    /// callback, which is not told).
    sizes: [usize; 2],
    metrics: Rc<Metrics>,
    connections: Rc<RefCell<Connections>>,
    /// The response is streaming (counted in the active streams gauge until `on_log`).
    streaming: bool,
    /// The most characters the stream held back at once.
    holdback_max: u64,
}

impl Filter {
    /// The host's clock, in milliseconds since the Unix epoch: the one clock the core is given.
    fn now_ms(&self) -> u64 {
        self.get_current_time()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    fn publish_audit(&self) {
        let audit = self.exchange.audit();
        self.set_property(vec![AUDIT_PROPERTY], Some(audit.to_json().as_bytes()));
        if let Some(line) = audit.capture_log_line() {
            self.set_property(vec![CAPTURE_PROPERTY], Some(line.as_bytes()));
        }
    }

    fn reply(&mut self, r: &LocalReply) -> Action {
        self.replied = true;
        self.publish_audit();
        // The core gave every header (content-type, security and CORS headers included).
        let headers = r.headers.iter().map(|(k, v)| (k.as_ref(), v.as_str())).collect();
        self.send_http_response(u32::from(r.status), headers, Some(r.body.as_bytes()));
        Action::Pause
    }

    /// Carries out a step for `side`: header edits, the body replacement, then the action.
    /// `held` is the header map as read, when the step answers the headers callback.
    fn carry_out(&mut self, side: Side, size: usize, step: Step, held: Option<&[(String, String)]>) -> Action {
        self.write_headers(side, &step.headers, held);
        if let Some(body) = &step.body {
            match side {
                Side::Request => self.set_http_request_body(0, size, body),
                Side::Response => self.set_http_response_body(0, size, body),
            }
        }
        match step.then {
            Then::Forward => Action::Continue,
            Then::Hold => Action::Pause,
            Then::Reply(r) => self.reply(&r),
        }
    }

    /// Applies header edits. Several edits to a map that was read are written as the whole new
    /// map in one host call (each call costs more than the copy); the headers that reach the
    /// peer are the same either way.
    fn write_headers(&self, side: Side, edits: &[HeaderEdit], held: Option<&[(String, String)]>) {
        match held {
            Some(map) if edits.len() > 1 => {
                let out = edited_headers(map, edits);
                match side {
                    Side::Request => self.set_http_request_headers(out),
                    Side::Response => self.set_http_response_headers(out),
                }
            }
            _ => {
                for (name, value) in edits {
                    match side {
                        Side::Request => self.set_http_request_header(name, value.as_deref()),
                        Side::Response => self.set_http_response_header(name, value.as_deref()),
                    }
                }
            }
        }
    }

    fn body(&mut self, side: Side, size: usize, end: bool) -> Action {
        if self.replied {
            // Our own local reply passes through this filter too: let it out.
            return if side == Side::Response { Action::Continue } else { Action::Pause };
        }
        self.sizes[side as usize] = size;
        let buffer = match side {
            Side::Request => BufferType::HttpRequestBody,
            Side::Response => BufferType::HttpResponseBody,
        };
        let mut read =
            |start, len| crash_test(hostcalls::get_buffer(buffer, start, len).ok().flatten().unwrap_or_default());
        let step = self.exchange.on_body(side, size, end, &mut read);
        if side == Side::Response {
            self.watch_stream();
        }
        self.carry_out(side, size, step, None)
    }

    /// Notes a response that started streaming, and how much it holds back.
    fn watch_stream(&mut self) {
        if let Some(h) = self.exchange.holdback() {
            if !self.streaming {
                self.streaming = true;
                self.metrics.add(MetricType::Gauge, metrics::ACTIVE_STREAMS, 1);
            }
            self.holdback_max = self.holdback_max.max(h.max);
        }
    }

    /// Adds this request to the metrics (once, at `on_log`): `bytes` of the request and the
    /// response as the record gives them.
    fn count(&mut self, bytes: [u64; 2]) {
        if self.streaming {
            self.metrics.add(MetricType::Gauge, metrics::ACTIVE_STREAMS, -1);
        }
        let seen = metrics::Observed {
            streamed: self.streaming,
            holdback_max: self.streaming.then_some(self.holdback_max),
            bytes,
            new_limit_keys: self.exchange.new_limit_keys(),
        };
        let audit = self.exchange.audit();
        for inc in metrics::on_log(audit, &seen) {
            let kind = match inc.kind {
                metrics::Kind::Counter => MetricType::Counter,
                metrics::Kind::Gauge => MetricType::Gauge,
                metrics::Kind::Histogram => MetricType::Histogram,
            };
            self.metrics.add(kind, &inc.name, i64::try_from(inc.value).unwrap_or(i64::MAX));
        }
    }
}

impl Drop for Filter {
    /// Envoy deleted the stream's context: its state is gone.
    fn drop(&mut self) {
        self.metrics.live.set(self.metrics.live.get() - 1);
        self.metrics.report_resident();
    }
}

impl Filter {
    fn trailers(&mut self, side: Side) -> Action {
        if self.replied {
            return Action::Pause;
        }
        let held = self.sizes[side as usize];
        let buffer = match side {
            Side::Request => BufferType::HttpRequestBody,
            Side::Response => BufferType::HttpResponseBody,
        };
        let mut read =
            |start, len| crash_test(hostcalls::get_buffer(buffer, start, len).ok().flatten().unwrap_or_default());
        let step = self.exchange.on_trailers(side, held, &mut read);
        self.carry_out(side, held, step, None)
    }
}

/// With the `crash-test` feature (tests only), a body read from Envoy that holds a trigger crashes
/// the filter: a panic (logged by proxy-wasm's hook, then a trap) or a bare trap.
#[cfg(feature = "crash-test")]
fn crash_test(bytes: Vec<u8>) -> Vec<u8> {
    let holds = |trigger: &[u8]| bytes.windows(trigger.len()).any(|w| w == trigger);
    if holds(b"INFERGUARD-TEST-PANIC") {
        panic!("crash-test: INFERGUARD-TEST-PANIC in a body");
    }
    if holds(b"INFERGUARD-TEST-TRAP") {
        core::arch::wasm32::unreachable();
    }
    bytes
}

/// The shipped module: the bytes as read.
#[cfg(not(feature = "crash-test"))]
#[inline(always)]
fn crash_test(bytes: Vec<u8>) -> Vec<u8> {
    bytes
}

impl Context for Filter {}

impl HttpContext for Filter {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        // One host call for the whole map is cheaper than one per header.
        let headers = self.get_http_request_headers();
        let get = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        let head = RequestHead {
            method: get(":method").unwrap_or(""),
            path: get(":path").unwrap_or(""),
            authority: get(":authority"),
            content_type: get("content-type"),
            content_encoding: get("content-encoding"),
            origin: get("origin"),
            access_control_request_method: get("access-control-request-method"),
            access_control_request_headers: get("access-control-request-headers"),
            request_id: get("x-request-id"),
        };
        // What Envoy verified: properties only, never headers.
        let prop = |path: &[&str]| self.get_property(path.to_vec()).filter(|v| !v.is_empty());
        fn text(b: &Option<Vec<u8>>) -> Option<&str> {
            b.as_deref().and_then(|b| std::str::from_utf8(b).ok())
        }
        // Each read is a host call: only what can matter is read, and the connection's facts once
        // per connection (Envoy's `connection.id`, 8 little-endian bytes).
        let id =
            prop(&["connection", "id"]).and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok()).map(u64::from_le_bytes);
        let connection = match id {
            Some(id) => self.connections.borrow_mut().get_or_read(id, || ConnectionFacts::read(&prop)),
            None => Rc::new(ConnectionFacts::read(&prop)),
        };
        let route = prop(&["xds", "route_name"]);
        let upstream_tls = if self.exchange.policies().reads_upstream_tls() {
            prop(&["xds", "cluster_metadata", "filter_metadata", "inferguard", "upstream_tls"])
        } else {
            None
        };
        // The whole jwt_authn entry in one read (the claims and the failure status inside it).
        let jwt = prop(&JWT_METADATA);
        let verified = Verified {
            client_address: text(&connection.client_address),
            tls_version: text(&connection.tls_version),
            client_certificate: connection.client_certificate,
            spiffe: text(&connection.spiffe),
            route: text(&route),
            upstream_tls: upstream_tls.as_deref().map(|b| b == [1]),
            jwt: jwt.as_deref().map(JwtFacts::from_metadata).unwrap_or_default(),
        };
        let now_ms = self.now_ms();
        self.exchange.set_start_time(now_ms);
        if self.exchange.policies().limits_anything() {
            self.exchange.set_limits(Box::new(SharedData), now_ms);
        }
        let mut step = self.exchange.on_request_head(&head, &verified, end_of_stream);
        // Each host call costs: only headers that are there are removed.
        step.headers.retain(|(h, v)| v.is_some() || get(h).is_some());
        self.set_property(vec![PATH_PROPERTY], Some(self.exchange.logged_path().as_bytes()));
        self.carry_out(Side::Request, 0, step, Some(&headers))
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.body(Side::Request, body_size, end_of_stream)
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        // Trailers end the body: it is read now, before anything is forwarded.
        self.trailers(Side::Request)
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        if self.replied {
            return Action::Continue;
        }
        let headers = self.get_http_response_headers();
        let get = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        let all: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let head = ResponseHead {
            status: get(":status").and_then(|s| s.parse().ok()).unwrap_or(0),
            content_type: get("content-type"),
            content_encoding: get("content-encoding"),
            headers: &all,
        };
        let mut step = self.exchange.on_response_head(&head, end_of_stream);
        step.headers.retain(|(h, v)| v.is_some() || get(h).is_some());
        self.carry_out(Side::Response, 0, step, Some(&headers))
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.body(Side::Response, body_size, end_of_stream)
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        if self.replied {
            return Action::Continue;
        }
        self.trailers(Side::Response)
    }

    fn on_log(&mut self) {
        // Envoy's attributes: integers come as 8 little-endian bytes, strings as their bytes.
        let prop = |path: &[&str]| self.get_property(path.to_vec()).filter(|v| !v.is_empty());
        let int =
            |path: &[&str]| prop(path).and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok()).map(i64::from_le_bytes);
        // A normal exchange knows its own facts; the rest ask Envoy (one host call per fact).
        let own = self.exchange.knows_log_facts();
        let prop = |path: &[&str]| if own { None } else { prop(path) };
        let int = |path: &[&str]| if own { None } else { int(path) };
        let (request_id, client_address) = (prop(&["request", "id"]), prop(&["source", "address"]));
        let text = |b: &Option<Vec<u8>>| b.as_deref().and_then(|b| std::str::from_utf8(b).ok()).map(str::to_owned);
        let (request_id, client_address) = (text(&request_id), text(&client_address));
        let facts = LogFacts {
            request_id: request_id.as_deref(),
            client_address: client_address.as_deref(),
            request_bytes: int(&["request", "size"]).and_then(|n| u64::try_from(n).ok()),
            response_bytes: int(&["response", "size"]).and_then(|n| u64::try_from(n).ok()),
            status: int(&["response", "code"]).and_then(|n| u16::try_from(n).ok()),
            now_ms: Some(self.now_ms()),
        };
        self.exchange.on_log(&facts);
        self.exchange.on_end();
        self.publish_audit();
        let a = self.exchange.audit();
        let bytes = [a.request.bytes.unwrap_or(0), a.response.bytes.unwrap_or(0)];
        self.count(bytes);
    }
}
