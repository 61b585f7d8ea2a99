//! The bottom layer of configuration: reading the JSON document Envoy hands the filter, and the
//! errors that name the offending field.
//!
//! Envoy passes the wasm filter's `configuration` (a `google.protobuf.StringValue`) verbatim, and
//! Istio builds the same string from `WasmPlugin.pluginConfig`. `parse_document` checks that it
//! is JSON without duplicate keys; the typed settings above it ([`crate::detect::DetectConfig`],
//! [`crate::policy::Config`]) read themselves from a `read::Node`, refusing unknown fields and
//! wrong types with an error that names the field path, so that a typo makes Envoy refuse the
//! filter instead of silently weakening the policy.
//!
//! Nothing here knows what the settings mean: `detect` and `policy` import this module, never
//! the other way round.

mod error;
pub(crate) mod read;

pub use error::ConfigError;

/// Parses a configuration document into JSON values, refusing duplicate keys. Empty or
/// whitespace-only input yields `None` (the default configuration).
pub(crate) fn parse_document(text: &str) -> Result<Option<serde_json::Value>, ConfigError> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    // One reader type (`from_slice`) across the filter: each one instantiates a parser.
    let doc: serde_json::Value = serde_json::from_slice(text.as_bytes()).map_err(ConfigError::syntax)?;
    read::refuse_duplicate_keys(text)?;
    Ok(Some(doc))
}
