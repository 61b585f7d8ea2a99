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
pub(crate) mod read;

pub use error::ConfigError;

use read::Node;

pub use crate::detect::config::DetectConfig;

/// The whole plugin configuration.
#[derive(Debug, Clone, Default)]
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
        // One reader type (`from_slice`) across the filter: each one instantiates a parser.
        let doc: serde_json::Value = serde_json::from_slice(text.as_bytes()).map_err(ConfigError::syntax)?;
        read::refuse_duplicate_keys(text)?;
        Config::read(&Node::root(&doc))
    }

    fn read(node: &Node) -> Result<Config, ConfigError> {
        let obj = node.object(&["detect", "request", "response"])?;
        Ok(Config {
            detect: obj.read("detect", DetectConfig::read)?.unwrap_or_default(),
            request: obj.read("request", DirectionConfig::read)?.unwrap_or_default(),
            response: obj.read("response", DirectionConfig::read)?.unwrap_or_default(),
        })
    }

    /// Parses configuration bytes, which must be UTF-8.
    pub fn parse_bytes(bytes: &[u8]) -> Result<Config, ConfigError> {
        let text = std::str::from_utf8(bytes).map_err(|_| ConfigError::new("", "configuration is not valid UTF-8"))?;
        Config::parse(text)
    }
}

/// Settings for one direction of traffic (prompts or responses).
#[derive(Debug, Clone)]
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

impl DirectionConfig {
    fn read(node: &Node) -> Result<DirectionConfig, ConfigError> {
        let obj = node.object(&["enabled", "max_body_bytes", "on_oversize", "mode", "max_holdback_bytes"])?;
        let d = DirectionConfig::default();
        Ok(DirectionConfig {
            enabled: obj.read("enabled", Node::bool)?.unwrap_or(d.enabled),
            max_body_bytes: obj.read("max_body_bytes", PositiveU64::read)?.unwrap_or(d.max_body_bytes),
            on_oversize: obj.read("on_oversize", |n| n.choice(Oversize::NAMES))?.unwrap_or(d.on_oversize),
            mode: obj.read("mode", |n| n.choice(Mode::NAMES))?.unwrap_or(d.mode),
            max_holdback_bytes: obj.read("max_holdback_bytes", PositiveU64::read)?.unwrap_or(d.max_holdback_bytes),
        })
    }
}

/// Default bound on a buffered body: 4 MiB, the limit the bundled Envoy config is sized for.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 4 * 1024 * 1024;

/// Default bound on held-back stream text.
pub const DEFAULT_MAX_HOLDBACK_BYTES: u64 = 64 * 1024;

/// What findings do in one direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
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
    const NAMES: &'static [(&'static str, Mode)] =
        &[("redact", Mode::Redact), ("block", Mode::Block), ("report", Mode::Report)];

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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Oversize {
    /// Refuse it: a request gets 413, a response 502 (fail closed).
    Reject,
    /// Let it through unscanned; the audit record says so (fail open, by explicit choice).
    PassUnscanned,
}

impl Oversize {
    const NAMES: &'static [(&'static str, Oversize)] =
        &[("reject", Oversize::Reject), ("pass_unscanned", Oversize::PassUnscanned)];
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

    fn read(node: &Node) -> Result<PositiveU64, ConfigError> {
        node.positive().map(PositiveU64)
    }
}
