//! inferguard: a proxy-wasm filter that keeps sensitive data out of LLM inference traffic.
//!
//! The crate is a sans-IO core (configuration, detection, wire formats, policy decisions, audit)
//! driven by bytes and headers, plus a thin proxy-wasm glue in [`filter`] that is compiled only
//! for `wasm32`. The native CLI (`src/bin/inferguard.rs`) and every test drive the same core.

#![warn(missing_docs)]
// The proxy-wasm entry point macro needs `#[no_mangle]` and one `unsafe` call; nothing else may.
#![cfg_attr(not(target_arch = "wasm32"), forbid(unsafe_code))]
#![cfg_attr(target_arch = "wasm32", deny(unsafe_code))]

pub mod audit;
pub mod config;
pub mod detect;
pub mod exchange;
pub mod policy;
pub mod redact;
pub mod stream;
pub mod wire;

#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)]
mod filter;
