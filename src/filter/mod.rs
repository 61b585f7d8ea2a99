//! The proxy-wasm glue: reads from Envoy, calls the core, writes back. Nothing is decided here.
//!
//! [`Root`] parses and compiles the configuration once per `on_configure` and shares the result
//! (an `Rc<Policy>`) with every [`Filter`], one per HTTP stream. A bad configuration makes
//! `on_configure` return false, so Envoy refuses the filter and logs which field was wrong.

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

use crate::exchange::{BodyOutcome, BodyPlan, Exchange, LocalReply, RequestHead, ResponseHead, SizeVerdict};
use crate::policy::Policy;

proxy_wasm::main! {{
    // Also installs a panic hook that logs the panic at critical level before the VM traps.
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root { policy: None }) });
}}

/// The filter state key the audit record is stored under. Envoy's access log reads it as
/// `%FILTER_STATE(wasm.inferguard.audit:PLAIN)%`.
const AUDIT_PROPERTY: &str = "inferguard.audit";

/// One per plugin configuration: owns the compiled policy.
struct Root {
    policy: Option<Rc<Policy>>,
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
        match Policy::from_json(text) {
            Ok(p) => {
                log::info!("inferguard: configured: {}", p.summary());
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
        Some(Box::new(Filter {
            exchange: Exchange::new(policy),
            request_plan: BodyPlan::Pass,
            response_plan: BodyPlan::Pass,
            replied: false,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// One per HTTP stream.
struct Filter {
    exchange: Exchange,
    request_plan: BodyPlan,
    response_plan: BodyPlan,
    /// A local reply was sent: nothing more is forwarded.
    replied: bool,
}

impl Filter {
    fn publish_audit(&self) {
        self.set_property(vec![AUDIT_PROPERTY], Some(self.exchange.audit().to_json().as_bytes()));
    }

    fn reply(&mut self, r: &LocalReply) -> Action {
        self.replied = true;
        self.publish_audit();
        self.send_http_response(
            u32::from(r.status),
            vec![("content-type", LocalReply::CONTENT_TYPE), ("x-inferguard", "refused")],
            Some(r.body.as_bytes()),
        );
        Action::Pause
    }
}

/// Which body a buffered-body step is about.
#[derive(Clone, Copy)]
enum Side {
    Request,
    Response,
}

impl Filter {
    /// A body buffered whole before it is scanned, either way: the size check at every chunk,
    /// the scan once it is complete, then the replacement or the refusal.
    fn buffered_body(&mut self, side: Side, body_size: usize, end_of_stream: bool) -> Action {
        let verdict = match side {
            Side::Request => self.exchange.check_request_size(body_size),
            Side::Response => self.exchange.check_response_size(body_size),
        };
        match verdict {
            SizeVerdict::Fits => {}
            SizeVerdict::PassUnscanned => {
                match side {
                    Side::Request => self.request_plan = BodyPlan::Pass,
                    Side::Response => self.response_plan = BodyPlan::Pass,
                }
                return Action::Continue;
            }
            SizeVerdict::Reject(r) => return self.reply(&r),
        }
        if !end_of_stream {
            return Action::Pause;
        }
        let outcome = match side {
            Side::Request => {
                let body = self.get_http_request_body(0, body_size).unwrap_or_default();
                self.exchange.on_request_body(&body)
            }
            Side::Response => {
                let body = self.get_http_response_body(0, body_size).unwrap_or_default();
                self.exchange.on_response_body(&body)
            }
        };
        match outcome {
            // The original content-length (if any) still holds.
            BodyOutcome::Unchanged => {}
            BodyOutcome::Replace(new) => {
                let length = new.len().to_string();
                match side {
                    Side::Request => {
                        self.set_http_request_body(0, body_size, &new);
                        self.set_http_request_header("content-length", Some(&length));
                    }
                    Side::Response => {
                        self.set_http_response_body(0, body_size, &new);
                        self.set_http_response_header("content-length", Some(&length));
                        if self.exchange.inflated() {
                            self.set_http_response_header("content-encoding", None);
                        }
                    }
                }
            }
            BodyOutcome::Reject(r) => return self.reply(&r),
        }
        Action::Continue
    }
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
            content_type: get("content-type"),
            content_encoding: get("content-encoding"),
        };
        match self.exchange.on_request_head(&head) {
            Err(r) => self.reply(&r),
            Ok(plan) => {
                // Each host call costs: only headers that are there are removed.
                for h in plan.remove_headers.iter().filter(|h| get(h).is_some()) {
                    self.set_http_request_header(h, None);
                }
                self.request_plan = plan.body;
                if plan.body == BodyPlan::Buffer && !end_of_stream {
                    // Hold the headers so content-length can be fixed once the body is scanned.
                    Action::Pause
                } else {
                    Action::Continue
                }
            }
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.replied {
            return Action::Pause;
        }
        if self.request_plan != BodyPlan::Buffer {
            return Action::Continue;
        }
        self.buffered_body(Side::Request, body_size, end_of_stream)
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        if self.replied {
            return Action::Continue;
        }
        let headers = self.get_http_response_headers();
        let get = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        let head = ResponseHead {
            status: get(":status").and_then(|s| s.parse().ok()).unwrap_or(0),
            content_type: get("content-type"),
            content_encoding: get("content-encoding"),
        };
        match self.exchange.on_response_head(&head) {
            Err(r) => self.reply(&r),
            Ok(plan) => {
                self.response_plan = plan.body;
                if end_of_stream {
                    return Action::Continue;
                }
                for h in plan.remove_headers.iter().filter(|h| get(h).is_some()) {
                    self.set_http_response_header(h, None);
                }
                match plan.body {
                    // Hold the headers until the body is scanned: content-length is set then, or
                    // the response is replaced by an error.
                    BodyPlan::Buffer => Action::Pause,
                    BodyPlan::Stream | BodyPlan::Pass => Action::Continue,
                }
            }
        }
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.replied {
            // Our own local reply passes through this filter too: let it out.
            return Action::Continue;
        }
        match self.response_plan {
            BodyPlan::Pass => Action::Continue,
            BodyPlan::Stream => {
                let chunk = self.get_http_response_body(0, body_size).unwrap_or_default();
                let out = self.exchange.on_response_chunk(&chunk, end_of_stream);
                if out != chunk {
                    self.set_http_response_body(0, body_size, &out);
                }
                Action::Continue
            }
            BodyPlan::Buffer => self.buffered_body(Side::Response, body_size, end_of_stream),
        }
    }

    fn on_log(&mut self) {
        self.publish_audit();
    }
}
