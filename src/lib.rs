//! inferguard: a proxy-wasm filter that keeps sensitive data out of LLM inference traffic.
//!
//! The crate is a sans-IO core driven by bytes and headers, plus a thin proxy-wasm glue
//! (`src/filter`, compiled only for `wasm32`) that carries out what the core decides. The native
//! CLI (`src/bin/inferguard.rs`) and every test drive the same core. The facade:
//!
//! - [`Policies`] (from a [`Config`]): the configuration, compiled once, and the one place a
//!   request's [`Policy`] is chosen from what Envoy [`Verified`];
//! - [`Exchange`]: one request/response pair, an event machine that takes headers and bodies and
//!   returns [`Step`]s (see its module for the call order and a walk through a streamed answer);
//! - [`Engine`]: the detection engine alone (what `inferguard redact` runs);
//! - [`AuditRecord`]: what the access log records about each exchange.
//!
//! Inside, in the order bytes flow: `wire` reads what is on the wire (body sniffing, the one JSON
//! reader, SSE, multipart, gzip, the request target); `stream` cuts bodies into events and joins
//! the texts clients join; `redact` is the one redactor every piece of text goes through;
//! `detect` finds values.

#![warn(missing_docs)]
// The proxy-wasm entry point macro needs `#[no_mangle]` and one `unsafe` call; nothing else may.
#![cfg_attr(not(target_arch = "wasm32"), forbid(unsafe_code))]
#![cfg_attr(target_arch = "wasm32", deny(unsafe_code))]

pub mod audit;
pub mod config;
pub mod detect;
pub mod exchange;
pub mod limits;
pub mod metrics;
pub mod policy;
pub(crate) mod redact;
pub(crate) mod stream;
pub(crate) mod swar;
pub(crate) mod wire;

#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)]
mod filter;

/// Internals the fuzz targets (`tests/fuzz`) drive directly; not a stable interface.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::wire::json::{Kind, Tape};
}

pub use audit::{AuditRecord, Decision, DirectionAudit};
pub use detect::Engine;
pub use exchange::{Exchange, LocalReply, RequestHead, ResponseHead, Side, Step, Then};
pub use policy::{Config, Identity, Policies, Policy, Verified};
pub use stream::Holdback;
pub use wire::Api;
