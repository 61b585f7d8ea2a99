//! inferguard: a proxy-wasm filter that keeps sensitive data out of LLM inference traffic.
//!
//! The crate is a sans-IO core (configuration, detection, wire formats, policy decisions, audit)
//! driven by bytes and headers, plus a thin proxy-wasm glue in [`filter`] that is compiled only
//! for `wasm32`. The native CLI (`src/bin/inferguard.rs`) and every test drive the same core.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod audit;
pub mod config;
pub mod detect;
pub mod exchange;
pub mod policy;
pub mod wire;

#[cfg(target_arch = "wasm32")]
pub mod filter;
