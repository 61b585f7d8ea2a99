//! Plugin configuration: the JSON document Envoy hands the filter.
//!
//! Envoy passes the wasm filter's `configuration` (a `google.protobuf.StringValue`) verbatim, and
//! Istio builds the same string from `WasmPlugin.pluginConfig`. [`Config::parse`] turns it into
//! typed settings, rejecting unknown fields and wrong types with an error that names the field
//! path, so that a typo makes Envoy refuse the filter instead of silently weakening the policy.
//! An empty document (or `{}`) means the default policy, which protects.
//!
//! Parsing is the first of two steps; the second, [`crate::policy::Policy::new`], compiles the
//! settings into matchers once per configuration.

mod error;

pub use error::ConfigError;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use std::fmt;

pub use crate::detect::config::DetectConfig;

/// The whole plugin configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// What to look for and what to do with it (detectors, custom rules, allowlist).
    pub detect: DetectConfig,
    /// How prompts (request bodies) are handled.
    pub request: DirectionConfig,
    /// How responses are handled.
    pub response: DirectionConfig,
}

impl Config {
    /// Parses a configuration document. Empty or whitespace-only input yields the default.
    ///
    /// # Examples
    ///
    /// ```
    /// use inferguard::config::Config;
    ///
    /// let cfg = Config::parse(r#"{"response": {"max_body_bytes": 65536}}"#).unwrap();
    /// assert_eq!(cfg.response.max_body_bytes.get(), 65536);
    ///
    /// let err = Config::parse(r#"{"response": {"max_body_bytes": "big"}}"#).unwrap_err();
    /// assert!(err.to_string().starts_with("response.max_body_bytes: "));
    /// ```
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        if text.trim().is_empty() {
            return Ok(Config::default());
        }
        let mut de = serde_json::Deserializer::from_str(text);
        let cfg: Config = serde_path_to_error::deserialize(&mut de).map_err(ConfigError::from_serde)?;
        de.end().map_err(|e| ConfigError::new("", e))?;
        Ok(cfg)
    }

    /// Parses configuration bytes, which must be UTF-8.
    pub fn parse_bytes(bytes: &[u8]) -> Result<Config, ConfigError> {
        let text = std::str::from_utf8(bytes).map_err(|_| ConfigError::new("", "configuration is not valid UTF-8"))?;
        Config::parse(text)
    }
}

/// Settings for one direction of traffic (prompts or responses).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DirectionConfig {
    /// Scan this direction at all. Turning it off is an explicit fail-open choice.
    pub enabled: bool,
    /// The largest body the filter buffers to scan. Envoy's listener and cluster
    /// `per_connection_buffer_limit_bytes` must be at least this large.
    pub max_body_bytes: PositiveU64,
    /// What happens to a body larger than `max_body_bytes`.
    pub on_oversize: Oversize,
    /// What findings do in this direction: apply each detector's action, block the message, or
    /// only report (a dry run).
    pub mode: Mode,
    /// The most undecided text a streamed response may hold back per logical stream before the
    /// stream is stopped (fail closed). Ordinary detectors need far less; private key blocks are
    /// held whole until their end marker.
    pub max_holdback_bytes: PositiveU64,
}

impl Default for DirectionConfig {
    fn default() -> Self {
        DirectionConfig {
            enabled: true,
            max_body_bytes: PositiveU64::new(DEFAULT_MAX_BODY_BYTES),
            on_oversize: Oversize::Reject,
            mode: Mode::Redact,
            max_holdback_bytes: PositiveU64::new(DEFAULT_MAX_HOLDBACK_BYTES),
        }
    }
}

/// Default bound on a buffered body: 4 MiB, the limit the bundled Envoy config is sized for.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 4 * 1024 * 1024;

/// Default bound on held-back stream text.
pub const DEFAULT_MAX_HOLDBACK_BYTES: u64 = 64 * 1024;

/// What findings do in one direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Apply each detector's or rule's own action.
    #[default]
    Redact,
    /// Any finding that would change text refuses the whole message instead.
    Block,
    /// Change nothing; findings are only counted in the audit record.
    Report,
}

impl Mode {
    /// Rewrites the actions of `findings` as this mode dictates.
    pub fn apply(self, findings: &mut [crate::detect::Finding]) {
        use crate::detect::Action;
        match self {
            Mode::Redact => {}
            Mode::Block => {
                findings.iter_mut().filter(|f| f.action != Action::Report).for_each(|f| f.action = Action::Block)
            }
            Mode::Report => findings.iter_mut().for_each(|f| f.action = Action::Report),
        }
    }
}

/// What to do with a body too large to scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Oversize {
    /// Refuse it: a request gets 413, a response 502 (fail closed).
    Reject,
    /// Let it through unscanned; the audit record says so (fail open, by explicit choice).
    PassUnscanned,
}

/// An integer greater than zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PositiveU64(u64);

impl PositiveU64 {
    /// Wraps `n`, which must be positive.
    ///
    /// # Panics
    ///
    /// Panics if `n` is zero; use it with constants only.
    pub const fn new(n: u64) -> PositiveU64 {
        assert!(n > 0, "PositiveU64 must be positive");
        PositiveU64(n)
    }

    /// The value.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl<'de> Deserialize<'de> for PositiveU64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = PositiveU64;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a positive integer")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<PositiveU64, E> {
                if n == 0 {
                    Err(E::custom("expected a positive integer, got 0"))
                } else {
                    Ok(PositiveU64(n))
                }
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<PositiveU64, E> {
                if n <= 0 {
                    Err(E::custom(format!("expected a positive integer, got {n}")))
                } else {
                    Ok(PositiveU64(n as u64))
                }
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<PositiveU64, E> {
                Err(E::custom(format!("expected a positive integer, got {n}")))
            }
        }
        d.deserialize_u64(V)
    }
}
