//! Typed settings: what a configuration document says, read field by field with the path of each.
//!
//! The top level of the document is the default policy; `policies` lists named ones, tried in
//! order before it. A named policy's absent sections (`detect`, `request`, `response`,
//! `admission`, `cors`, `headers`, `limits`, `audit`) are the default policy's; a section it gives replaces the default's whole, and
//! fields absent from it take their built-in defaults. So what a named policy does can be read
//! from its own text and the top level, never from another named policy.
//!
//! ```json
//! {
//!   "response": { "mode": "redact" },
//!   "admission": { "required_scopes": ["inference"] },
//!   "policies": [
//!     { "name": "restricted",
//!       "match": { "models": ["gpt-4*"], "paths": ["/v1/"] },
//!       "admission": { "require_client_certificate": true, "required_scopes": ["inference:restricted"] } }
//!   ]
//! }
//! ```

use super::browser::{CorsConfig, HeadersConfig};
use crate::config::read::Node;
use crate::config::{parse_document, ConfigError};
use crate::detect::DetectConfig;
use crate::redact::Mode;

/// The whole plugin configuration: the default policy's settings and the named policies.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// The default policy: the top level of the document.
    pub default: Settings,
    /// Named policies, in the order they are tried.
    pub policies: Vec<NamedConfig>,
    /// The audit record's options (deployment-wide: top level only).
    pub audit: AuditConfig,
    /// `hold_headers`: whether a message's headers may be held until its body is judged
    /// (deployment-wide: it must match Envoy's `allow_on_headers_stop_iteration`).
    pub hold_headers: bool,
}

/// The deployment-wide part of the top level's `audit`: `{"prompt_digest": {"key": "..."}}`.
#[derive(Clone, Default)]
pub struct AuditConfig {
    /// The key of the prompt digest (`request.digest` in the record), if one is configured.
    pub prompt_digest_key: Option<String>,
}

/// A policy's part of `audit`: `{"capture": {"max_bytes": 4096, "to": "access_log"}}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyAuditConfig {
    /// Capture of the redacted prompt and answer (off when `None`).
    pub capture: Option<CaptureConfig>,
}

/// `audit.capture`: keep the first `max_bytes` of each direction's body as it was forwarded
/// (after redaction), for replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaptureConfig {
    /// The most bytes kept per direction (cut on a UTF-8 boundary).
    pub max_bytes: u32,
    /// Where the capture is written.
    pub to: CaptureTo,
}

/// Where a capture is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureTo {
    /// Inside the audit record, as its `capture` object (the access log).
    AccessLog,
    /// A record of its own in filter state `wasm.inferguard.capture`, which Envoy's second access
    /// log (the capture log) writes: the access log stays small.
    CaptureLog,
}

impl CaptureTo {
    const NAMES: &'static [(&'static str, CaptureTo)] =
        &[("access_log", CaptureTo::AccessLog), ("capture_log", CaptureTo::CaptureLog)];
}

impl CaptureConfig {
    /// `max_bytes` when not given.
    pub const DEFAULT_MAX_BYTES: u32 = 4096;
    /// The largest `max_bytes`: a capture is held in memory per direction and written into one
    /// log line.
    pub const MAX_MAX_BYTES: u32 = 1 << 20;

    fn read(node: &Node) -> Result<CaptureConfig, ConfigError> {
        let obj = node.object(&["max_bytes", "to"])?;
        let max_bytes = match obj.get("max_bytes") {
            None => Self::DEFAULT_MAX_BYTES,
            Some(n) => match n.positive()? {
                b if b <= u64::from(Self::MAX_MAX_BYTES) => b as u32,
                b => return Err(n.error(format_args!("expected at most {} bytes, got {b}", Self::MAX_MAX_BYTES))),
            },
        };
        Ok(CaptureConfig {
            max_bytes,
            to: obj.read("to", |n| n.choice(CaptureTo::NAMES))?.unwrap_or(CaptureTo::AccessLog),
        })
    }
}

/// Reads an `audit` section: the deployment-wide part (top level only) and the policy's part.
fn read_audit(node: &Node, top_level: bool) -> Result<(AuditConfig, PolicyAuditConfig), ConfigError> {
    let obj = node.object(&["prompt_digest", "capture"])?;
    let key = match obj.get("prompt_digest") {
        Some(n) if !top_level => {
            return Err(n.error("deployment-wide: set it in the top level's `audit`, not in a named policy"))
        }
        Some(n) => {
            let d = n.object(&["key"])?;
            d.read("key", |k| k.str().map(str::to_owned))?
        }
        None => None,
    };
    let capture = obj.read("capture", CaptureConfig::read)?;
    Ok((AuditConfig { prompt_digest_key: key }, PolicyAuditConfig { capture }))
}

impl std::fmt::Debug for AuditConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("AuditConfig").field("prompt_digest", &self.prompt_digest_key.as_ref().map(|_| "..")).finish()
    }
}

/// One policy's settings.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// What to look for and what to do with it (detectors, custom rules, allowlist).
    pub detect: DetectConfig,
    /// How prompts (request bodies) are handled.
    pub request: DirectionConfig,
    /// How responses are handled.
    pub response: DirectionConfig,
    /// Who may ask, over which channel, for which endpoint and model.
    pub admission: AdmissionConfig,
    /// Which other origins' pages may call (CORS). By default none.
    pub cors: CorsConfig,
    /// Security headers every response carries, and headers removed from upstream responses.
    pub headers: HeadersConfig,
    /// Abuse limits per caller.
    pub limits: LimitsConfig,
    /// What the policy's audit records carry beyond names and counts.
    pub audit: PolicyAuditConfig,
}

/// A named policy as written: its match and the sections it gives (`None`: the default's).
#[derive(Debug, Clone, Default)]
pub struct NamedConfig {
    /// The name the audit record and `inferguard explain` use.
    pub name: String,
    /// Which requests it takes.
    pub matches: MatchConfig,
    /// Its `detect` section, if given.
    pub detect: Option<DetectConfig>,
    /// Its `request` section, if given.
    pub request: Option<DirectionConfig>,
    /// Its `response` section, if given.
    pub response: Option<DirectionConfig>,
    /// Its `admission` section, if given.
    pub admission: Option<AdmissionConfig>,
    /// Its `cors` section, if given.
    pub cors: Option<CorsConfig>,
    /// Its `headers` section, if given.
    pub headers: Option<HeadersConfig>,
    /// Its `limits` section, if given.
    pub limits: Option<LimitsConfig>,
    /// Its `audit` section, if given (`capture` only: `prompt_digest` is deployment-wide).
    pub audit: Option<PolicyAuditConfig>,
}

/// Which requests a named policy takes. Every field given must match (an absent or empty list
/// matches anything); within a list, any entry may. `*` in a glob stands for any run of
/// characters.
#[derive(Debug, Clone, Default)]
pub struct MatchConfig {
    /// Globs on the request's authority (`:authority`/`host`), compared ignoring ASCII case and
    /// without the port unless the glob names one: `*.internal.example.com`.
    pub hosts: Vec<String>,
    /// Path prefixes, on whole segments (`/v1` matches `/v1/models`, not `/v1beta`), compared
    /// with the normalised path.
    pub paths: Vec<String>,
    /// Envoy route names (the route entry's `name`), exactly.
    pub routes: Vec<String>,
    /// Globs on the request body's `model`, ignoring ASCII case. Decided once the body is read.
    pub models: Vec<String>,
    /// Globs on the verified subject (a JWT's `sub`, else the client certificate's SPIFFE id).
    pub subjects: Vec<String>,
    /// Verified groups (a JWT's `groups` claim), exactly.
    pub groups: Vec<String>,
    /// Globs on the client certificate's SPIFFE id (`spiffe://cluster.local/ns/apps/*`).
    pub spiffe: Vec<String>,
}

/// Admission: what a request must show before anything of it is forwarded.
#[derive(Debug, Clone)]
pub struct AdmissionConfig {
    /// Refuse a request that did not arrive over TLS (426). Default on.
    pub require_tls: bool,
    /// The oldest TLS version accepted from the client. Default TLS 1.2.
    pub min_tls_version: TlsVersion,
    /// Refuse a request without a verified client certificate (mTLS).
    pub require_client_certificate: bool,
    /// Refuse, before any of it is sent, a request routed to a cluster that is not marked
    /// encrypted (`filter_metadata.inferguard.upstream_tls: true` on the Envoy cluster).
    pub require_upstream_tls: bool,
    /// Refuse an anonymous request: one without a verified JWT or client certificate (401).
    pub require_identity: bool,
    /// Scopes the caller's verified token must all carry (`scope`, space-separated, or `scp`).
    pub required_scopes: Vec<String>,
    /// Which models may be asked for, by whom: the first rule whose identity fields match the
    /// caller decides; no matching rule means no constraint.
    pub models: Vec<ModelRuleConfig>,
    /// Endpoints allowed beyond the inference APIs: administrative endpoints by name
    /// (`ollama.pull`), or paths (`/v1/files/`, a prefix when it ends with `/`).
    pub endpoints: Vec<String>,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        AdmissionConfig {
            require_tls: true,
            min_tls_version: TlsVersion::V1_2,
            require_client_certificate: false,
            require_upstream_tls: false,
            require_identity: false,
            required_scopes: Vec::new(),
            models: Vec::new(),
            endpoints: Vec::new(),
        }
    }
}

/// Abuse limits: token buckets per caller (the verified subject, else the client address) and
/// policy, shared by all of Envoy's workers. An absent limit is no limit.
#[derive(Debug, Clone, PartialEq)]
pub struct LimitsConfig {
    /// Requests a caller may make per minute (and at once, after a quiet minute).
    pub requests_per_minute: Option<u64>,
    /// Output a caller may receive per minute: completion tokens as the answer's `usage` reports
    /// them (never fewer than its text bytes / 16), or the answer's bytes when it reports none
    /// ([`crate::limits::output_cost`]). Counted after each answer, so one answer may overdraw;
    /// the next request then waits for the refill.
    pub output_per_minute: Option<u64>,
    /// The share of an allowance used from which a request is marked `extraction_suspected`
    /// in the audit record, before anything is refused (default 0.8).
    pub warn_at: f64,
    /// The slots callers are hashed into, per allowance: the most buckets this policy keeps,
    /// however many callers it sees (default [`crate::limits::DEFAULT_MAX_CALLERS`]).
    pub max_callers: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            requests_per_minute: None,
            output_per_minute: None,
            warn_at: 0.8,
            max_callers: crate::limits::DEFAULT_MAX_CALLERS,
        }
    }
}

impl LimitsConfig {
    fn read(node: &Node) -> Result<LimitsConfig, ConfigError> {
        let obj = node.object(&["requests_per_minute", "output_per_minute", "warn_at", "max_callers"])?;
        let warn_at = match obj.get("warn_at") {
            None => 0.8,
            Some(n) => match n.uint(100) {
                Ok(p) => p as f64 / 100.0,
                Err(_) => return Err(n.error("expected a percentage from 0 to 100")),
            },
        };
        let max = crate::limits::MAX_MAX_CALLERS;
        let max_callers = match obj.get("max_callers") {
            None => crate::limits::DEFAULT_MAX_CALLERS,
            Some(n) => match n.uint(u64::from(max)) {
                Ok(m) if m > 0 => m as u32,
                _ => return Err(n.error(format_args!("expected an integer from 1 to {max}"))),
            },
        };
        Ok(LimitsConfig {
            requests_per_minute: obj.read("requests_per_minute", Node::positive)?,
            output_per_minute: obj.read("output_per_minute", Node::positive)?,
            warn_at,
            max_callers,
        })
    }

    /// Does it limit anything?
    pub fn any(&self) -> bool {
        self.requests_per_minute.is_some() || self.output_per_minute.is_some()
    }
}

/// One model rule: for whom (empty: everyone), which models are allowed, which denied.
#[derive(Debug, Clone, Default)]
pub struct ModelRuleConfig {
    /// Globs on the verified subject.
    pub subjects: Vec<String>,
    /// Verified groups.
    pub groups: Vec<String>,
    /// Globs on the SPIFFE id.
    pub spiffe: Vec<String>,
    /// Model globs allowed (`None`: every model not denied).
    pub allow: Option<Vec<String>>,
    /// Model globs refused.
    pub deny: Vec<String>,
}

/// A TLS protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    /// TLS 1.0.
    V1_0,
    /// TLS 1.1.
    V1_1,
    /// TLS 1.2.
    V1_2,
    /// TLS 1.3.
    V1_3,
}

impl TlsVersion {
    const NAMES: &'static [(&'static str, TlsVersion)] = &[
        ("TLSv1.0", TlsVersion::V1_0),
        ("TLSv1.1", TlsVersion::V1_1),
        ("TLSv1.2", TlsVersion::V1_2),
        ("TLSv1.3", TlsVersion::V1_3),
    ];

    /// Reads Envoy's spelling (`connection.tls_version`: "TLSv1.3").
    pub fn from_envoy(s: &str) -> Option<TlsVersion> {
        Self::NAMES.iter().find(|(n, _)| *n == s).map(|(_, v)| *v)
    }

    /// Envoy's spelling.
    pub fn as_str(self) -> &'static str {
        Self::NAMES.iter().find(|(_, v)| *v == self).map_or("", |(n, _)| n)
    }
}

impl Config {
    /// Parses a configuration document. Empty or whitespace-only input yields the default.
    ///
    /// # Examples
    ///
    /// ```
    /// use inferguard::policy::Config;
    ///
    /// let cfg = Config::parse(r#"{"response": {"max_body_bytes": 65536}}"#).unwrap();
    /// assert_eq!(cfg.default.response.max_body_bytes.get(), 65536);
    ///
    /// let err = Config::parse(r#"{"policies": [{"name": "a", "match": {"models": [7]}}]}"#).unwrap_err();
    /// assert_eq!(err.to_string(), "policies[0].match.models[0]: invalid type: integer `7`, expected a string");
    /// ```
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        match parse_document(text)? {
            None => Ok(Config::default()),
            Some(doc) => Config::read(&Node::root(&doc)),
        }
    }

    fn read(node: &Node) -> Result<Config, ConfigError> {
        let obj = node.object(&[
            "detect",
            "request",
            "response",
            "admission",
            "cors",
            "headers",
            "limits",
            "policies",
            "audit",
            "hold_headers",
        ])?;
        let policies = obj.read("policies", |n| n.array(|n| NamedConfig::read(&n)))?.unwrap_or_default();
        for (i, p) in policies.iter().enumerate() {
            if p.name == "default" || policies[..i].iter().any(|q| q.name == p.name) {
                return Err(ConfigError::new(
                    format!("policies[{i}].name"),
                    format_args!("the name `{}` is already taken", p.name),
                ));
            }
        }
        let (audit, policy_audit) = obj.read("audit", |n| read_audit(n, true))?.unwrap_or_default();
        Ok(Config {
            default: Settings {
                detect: obj.read("detect", DetectConfig::read)?.unwrap_or_default(),
                request: obj.read("request", DirectionConfig::read)?.unwrap_or_default(),
                response: obj.read("response", DirectionConfig::read)?.unwrap_or_default(),
                admission: obj.read("admission", AdmissionConfig::read)?.unwrap_or_default(),
                cors: obj.read("cors", CorsConfig::read)?.unwrap_or_default(),
                headers: obj.read("headers", HeadersConfig::read)?.unwrap_or_default(),
                limits: obj.read("limits", LimitsConfig::read)?.unwrap_or_default(),
                audit: policy_audit,
            },
            policies,
            audit,
            hold_headers: obj.read("hold_headers", |n| n.bool())?.unwrap_or(false),
        })
    }
}

impl NamedConfig {
    fn read(node: &Node) -> Result<NamedConfig, ConfigError> {
        let obj = node.object(&[
            "name",
            "match",
            "detect",
            "request",
            "response",
            "admission",
            "cors",
            "headers",
            "limits",
            "audit",
        ])?;
        let name_node = obj.required("name")?;
        let name = name_node.str()?.to_owned();
        let ok = !name.is_empty()
            && name.len() <= 64
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if !ok {
            return Err(name_node.error("expected 1 to 64 ASCII letters, digits, `_`, `-` or `.`"));
        }
        Ok(NamedConfig {
            name,
            matches: obj.read("match", MatchConfig::read)?.unwrap_or_default(),
            detect: obj.read("detect", DetectConfig::read)?,
            request: obj.read("request", DirectionConfig::read)?,
            response: obj.read("response", DirectionConfig::read)?,
            admission: obj.read("admission", AdmissionConfig::read)?,
            cors: obj.read("cors", CorsConfig::read)?,
            headers: obj.read("headers", HeadersConfig::read)?,
            limits: obj.read("limits", LimitsConfig::read)?,
            audit: obj.read("audit", |n| read_audit(n, false).map(|(_, a)| a))?,
        })
    }
}

impl MatchConfig {
    fn read(node: &Node) -> Result<MatchConfig, ConfigError> {
        let obj = node.object(&["hosts", "paths", "routes", "models", "subjects", "groups", "spiffe"])?;
        let paths = obj
            .read("paths", |n| {
                n.array(|n| match n.str()? {
                    p if p.starts_with('/') => Ok(p.to_owned()),
                    _ => Err(n.error("expected a path starting with `/`")),
                })
            })?
            .unwrap_or_default();
        Ok(MatchConfig {
            hosts: obj.read("hosts", Node::strings)?.unwrap_or_default(),
            paths,
            routes: obj.read("routes", Node::strings)?.unwrap_or_default(),
            models: obj.read("models", Node::strings)?.unwrap_or_default(),
            subjects: obj.read("subjects", Node::strings)?.unwrap_or_default(),
            groups: obj.read("groups", Node::strings)?.unwrap_or_default(),
            spiffe: obj.read("spiffe", spiffe_globs)?.unwrap_or_default(),
        })
    }
}

/// Globs on SPIFFE ids: each must be one (`spiffe://`), or it could never match a certificate.
fn spiffe_globs(node: &Node) -> Result<Vec<String>, ConfigError> {
    node.array(|n| match n.str()? {
        p if p.starts_with("spiffe://") => Ok(p.to_owned()),
        _ => Err(n.error("expected a SPIFFE id glob starting with `spiffe://`")),
    })
}

impl AdmissionConfig {
    fn read(node: &Node) -> Result<AdmissionConfig, ConfigError> {
        let obj = node.object(&[
            "require_tls",
            "min_tls_version",
            "require_client_certificate",
            "require_upstream_tls",
            "require_identity",
            "required_scopes",
            "models",
            "endpoints",
        ])?;
        let d = AdmissionConfig::default();
        Ok(AdmissionConfig {
            require_tls: obj.read("require_tls", Node::bool)?.unwrap_or(d.require_tls),
            min_tls_version: obj.read("min_tls_version", |n| n.choice(TlsVersion::NAMES))?.unwrap_or(d.min_tls_version),
            require_client_certificate: obj
                .read("require_client_certificate", Node::bool)?
                .unwrap_or(d.require_client_certificate),
            require_upstream_tls: obj.read("require_upstream_tls", Node::bool)?.unwrap_or(d.require_upstream_tls),
            require_identity: obj.read("require_identity", Node::bool)?.unwrap_or(d.require_identity),
            required_scopes: obj.read("required_scopes", Node::strings)?.unwrap_or_default(),
            models: obj.read("models", |n| n.array(|n| ModelRuleConfig::read(&n)))?.unwrap_or_default(),
            endpoints: obj.read("endpoints", Node::strings)?.unwrap_or_default(),
        })
    }
}

impl ModelRuleConfig {
    fn read(node: &Node) -> Result<ModelRuleConfig, ConfigError> {
        let obj = node.object(&["subjects", "groups", "spiffe", "allow", "deny"])?;
        Ok(ModelRuleConfig {
            subjects: obj.read("subjects", Node::strings)?.unwrap_or_default(),
            groups: obj.read("groups", Node::strings)?.unwrap_or_default(),
            spiffe: obj.read("spiffe", spiffe_globs)?.unwrap_or_default(),
            allow: obj.read("allow", Node::strings)?,
            deny: obj.read("deny", Node::strings)?.unwrap_or_default(),
        })
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
    pub(crate) fn read(node: &Node) -> Result<DirectionConfig, ConfigError> {
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
