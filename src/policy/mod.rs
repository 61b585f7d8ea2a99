//! Policies: the configuration compiled once, and the one place a request's policy is chosen.
//!
//! The filter's root context builds [`Policies`] when Envoy (re)configures it and shares it with
//! every request; nothing here is rebuilt per request. A request's policy is chosen in up to two
//! steps, by [`Policies::select`]: at the request head, from the authority, path, Envoy route and
//! verified identity; and, when the first policy that could match also names models, again once
//! the body's `model` is read (before the body is scanned, so that policy's engine scans it).
//! The first named policy that matches wins; the default (the top level of the configuration)
//! takes the rest.

mod admission;
pub mod browser;
mod glob;
mod identity;
mod settings;

use std::rc::Rc;

pub use admission::{Admission, Denial};
pub use browser::{Browser, Cors, CorsConfig, CorsRequest, HeadersConfig, OnRefusedOrigin, Origin, OriginPattern};
pub use identity::{encode_list, encode_map, Identity, JwtFacts, Source, Verified};
pub use settings::{
    AdmissionConfig, CaptureConfig, CaptureTo, Config, DirectionConfig, LimitsConfig, MatchConfig, ModelRuleConfig,
    NamedConfig, Oversize, PolicyAuditConfig, PositiveU64, Settings, TlsVersion, DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_HOLDBACK_BYTES,
};

use crate::config::ConfigError;
use crate::detect::Engine;
pub use crate::redact::Mode;
use glob::Glob;

/// One compiled policy.
#[derive(Debug)]
pub struct Policy {
    /// Its name (`default` for the top level).
    pub name: String,
    /// The detection engine (shared with the default policy when the policy has no `detect`).
    pub engine: Rc<Engine>,
    /// Prompt-side settings.
    pub request: DirectionConfig,
    /// Response-side settings.
    pub response: DirectionConfig,
    /// Who may ask, over which channel.
    pub admission: Admission,
    /// CORS and the headers every response carries.
    pub browser: Browser,
    /// Abuse limits per caller.
    pub limits: LimitsConfig,
    /// Capture of the redacted prompt and answer into the audit (`audit.capture`; off when `None`).
    pub capture: Option<CaptureConfig>,
    matcher: Matcher,
}

/// Every policy of a configuration, compiled.
#[derive(Debug)]
pub struct Policies {
    named: Vec<Rc<Policy>>,
    default: Rc<Policy>,
    /// `audit.prompt_digest`: the key of the keyed prompt digest.
    prompt_digest: Option<crate::detect::sha256::HmacKey>,
    /// `hold_headers`: a message's headers may wait for its body ([`Policies::holds_headers`]).
    hold_headers: bool,
}

/// What the request head says, for choosing a policy.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// `:authority`.
    pub authority: Option<&'a str>,
    /// The normalised path (no query).
    pub path: &'a str,
    /// Envoy's route name.
    pub route: Option<&'a str>,
    /// The verified caller.
    pub identity: &'a Identity,
}

/// What is known of the body's `model`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Model<'a> {
    /// The body has not been read yet.
    Unread,
    /// The request names no model (no body, not JSON, no `model` string).
    Absent,
    /// The model the request names.
    Named(&'a str),
}

/// The outcome of [`Policies::select`].
#[derive(Debug, Clone)]
pub enum Selected {
    /// This policy applies.
    Policy(Rc<Policy>),
    /// The first policy that could apply names models: read the body's `model`, then select
    /// again.
    AwaitModel,
}

/// Why a policy did or did not take a request (for `inferguard explain`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// It matches.
    Matches,
    /// It does not: the first criterion that failed.
    Misses(String),
    /// It would need the model, which is not known.
    NeedsModel,
}

#[derive(Debug, Default)]
struct Matcher {
    hosts: Vec<Glob>,
    paths: Vec<String>,
    routes: Vec<String>,
    models: Vec<Glob>,
    subjects: Vec<Glob>,
    groups: Vec<String>,
    spiffe: Vec<Glob>,
}

impl Matcher {
    fn new(m: &MatchConfig) -> Matcher {
        Matcher {
            hosts: glob::compile(&m.hosts, true),
            paths: m.paths.iter().map(|p| p.to_ascii_lowercase()).collect(),
            routes: m.routes.clone(),
            models: glob::compile(&m.models, true),
            subjects: glob::compile(&m.subjects, false),
            groups: m.groups.clone(),
            spiffe: glob::compile(&m.spiffe, false),
        }
    }

    fn check(&self, r: &Request, model: Model) -> Verdict {
        let miss = |what: &str| Verdict::Misses(what.to_owned());
        if !self.hosts.is_empty() && !r.authority.is_some_and(|a| host_matches(&self.hosts, a)) {
            return miss("match.hosts");
        }
        if !self.paths.is_empty() && !self.paths.iter().any(|p| path_under(r.path, p)) {
            return miss("match.paths");
        }
        if !self.routes.is_empty() && !r.route.is_some_and(|x| self.routes.iter().any(|y| y == x)) {
            return miss("match.routes");
        }
        let id = r.identity;
        if !self.subjects.is_empty() && !id.subject.as_deref().is_some_and(|s| glob::any(&self.subjects, s)) {
            return miss("match.subjects");
        }
        if !self.groups.is_empty() && !id.groups.iter().any(|g| self.groups.contains(g)) {
            return miss("match.groups");
        }
        if !self.spiffe.is_empty() && !id.spiffe.as_deref().is_some_and(|s| glob::any(&self.spiffe, s)) {
            return miss("match.spiffe");
        }
        if !self.models.is_empty() {
            match model {
                Model::Unread => return Verdict::NeedsModel,
                Model::Named(m) if glob::any(&self.models, m) => {}
                _ => return miss("match.models"),
            }
        }
        Verdict::Matches
    }
}

/// The path as policies see it: percent-decoded, dot segments resolved, repeated slashes merged,
/// without the query (`Err`: a path the filter refuses with 400, and why).
pub fn normalise_path(raw: &str) -> Result<String, String> {
    crate::wire::endpoint::classify(raw).map(|t| t.canonical).map_err(|e| e.to_string())
}

/// Host globs compare without the port unless the glob names one.
fn host_matches(globs: &[Glob], authority: &str) -> bool {
    let host = match authority.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !h.ends_with(':') => h,
        _ => authority,
    };
    glob::any(globs, host) || (host != authority && glob::any(globs, authority))
}

/// `prefix` on whole segments: `/v1` covers `/v1` and `/v1/models`, not `/v1beta`.
fn path_under(path: &str, prefix: &str) -> bool {
    let path = path.to_ascii_lowercase();
    match path.strip_prefix(prefix) {
        Some(rest) => prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

impl Policy {
    fn compile(
        name: &str,
        s: &Settings,
        engine: Rc<Engine>,
        matches: &MatchConfig,
        at: &str,
    ) -> Result<Policy, ConfigError> {
        let prefix = if at.is_empty() { String::new() } else { format!("{at}.") };
        Ok(Policy {
            name: name.to_owned(),
            engine,
            request: s.request.clone(),
            response: s.response.clone(),
            admission: Admission::new(&s.admission, &format!("{prefix}admission"))?,
            browser: Browser { cors: s.cors.clone(), headers: s.headers.clone() },
            limits: s.limits.clone(),
            capture: s.audit.capture,
            matcher: Matcher::new(matches),
        })
    }
}

impl Policies {
    /// Compiles a parsed configuration. Errors name the field, within its policy
    /// (`policies[2].detect.rules[0].pattern: invalid regex ...`).
    pub fn new(cfg: &Config) -> Result<Policies, ConfigError> {
        let engine = Rc::new(Engine::new(&cfg.default.detect)?);
        let default =
            Rc::new(Policy::compile("default", &cfg.default, Rc::clone(&engine), &MatchConfig::default(), "")?);
        let mut named = Vec::with_capacity(cfg.policies.len());
        for (i, p) in cfg.policies.iter().enumerate() {
            let at = format!("policies[{i}]");
            let own = match &p.detect {
                Some(d) => Rc::new(Engine::new(d).map_err(|e| e.within(&at))?),
                None => Rc::clone(&engine),
            };
            let s = Settings {
                detect: Default::default(),
                request: p.request.clone().unwrap_or_else(|| cfg.default.request.clone()),
                response: p.response.clone().unwrap_or_else(|| cfg.default.response.clone()),
                admission: p.admission.clone().unwrap_or_else(|| cfg.default.admission.clone()),
                cors: p.cors.clone().unwrap_or_else(|| cfg.default.cors.clone()),
                headers: p.headers.clone().unwrap_or_else(|| cfg.default.headers.clone()),
                limits: p.limits.clone().unwrap_or_else(|| cfg.default.limits.clone()),
                audit: p.audit.clone().unwrap_or_else(|| cfg.default.audit.clone()),
            };
            named.push(Rc::new(Policy::compile(&p.name, &s, own, &p.matches, &at)?));
        }
        let prompt_digest = match &cfg.audit.prompt_digest_key {
            Some(k) if k.len() < 16 => {
                return Err(ConfigError::new(
                    "audit.prompt_digest.key",
                    format!("must be at least 16 bytes, got {}", k.len()),
                ))
            }
            Some(k) => Some(crate::detect::sha256::HmacKey::new(k.as_bytes())),
            None => None,
        };
        Ok(Policies { named, default, prompt_digest, hold_headers: cfg.hold_headers })
    }

    /// Parses and compiles a configuration document in one step: what the filter does in
    /// `on_configure` and what `inferguard check-config` does.
    ///
    /// # Examples
    ///
    /// ```
    /// use inferguard::policy::Policies;
    ///
    /// assert!(Policies::from_json("").is_ok());
    /// let err = Policies::from_json(r#"{"respones": {}}"#).unwrap_err();
    /// assert!(err.to_string().contains("unknown field `respones`"));
    /// ```
    pub fn from_json(text: &str) -> Result<Policies, ConfigError> {
        Policies::new(&Config::parse(text)?)
    }

    /// `hmac-sha256:<hex>` of a prompt body as received, when `audit.prompt_digest` is configured.
    pub fn prompt_digest(&self, body: &[u8]) -> Option<String> {
        let mac = self.prompt_digest.as_ref()?.mac(&[body]);
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        Some(format!("hmac-sha256:{hex}"))
    }

    /// Whether a message's headers may be held until its body is judged (`hold_headers`).
    ///
    /// Envoy holds headers a wasm filter stops only with `allow_on_headers_stop_iteration: true`
    /// in the filter's configuration; without it (Istio's `WasmPlugin` cannot set it), a
    /// stopped header callback stops the body callbacks too, and the stream stalls. So by
    /// default headers go out at once: with `content-length` removed (the body may change size)
    /// and every header decision made from the head alone. Bodies are still held and judged
    /// whole in the body callbacks; a refusal of an answer whose headers went out is written as
    /// the body, in the API's error shape, instead of a status.
    pub fn holds_headers(&self) -> bool {
        self.hold_headers
    }

    /// The default policy.
    pub fn default_policy(&self) -> &Rc<Policy> {
        &self.default
    }

    /// Every distinct detection engine, the default policy's first (a named policy without its
    /// own `detect` shares the default's).
    pub fn engines(&self) -> Vec<&Engine> {
        let mut out: Vec<&Rc<Engine>> = vec![&self.default.engine];
        for p in &self.named {
            if !out.iter().any(|e| Rc::ptr_eq(e, &p.engine)) {
                out.push(&p.engine);
            }
        }
        out.into_iter().map(|e| &**e).collect()
    }

    /// Named policies, in order.
    pub fn named(&self) -> &[Rc<Policy>] {
        &self.named
    }

    /// Does any policy look at whether the upstream is encrypted? (Otherwise the glue need not
    /// read the cluster's metadata.)
    pub fn reads_upstream_tls(&self) -> bool {
        self.named.iter().chain([&self.default]).any(|p| p.admission.config().require_upstream_tls)
    }

    /// Does any policy set an abuse limit? (Otherwise the glue need not give the exchange the
    /// shared buckets and the time.)
    pub fn limits_anything(&self) -> bool {
        self.named.iter().chain([&self.default]).any(|p| p.limits.any())
    }

    /// The largest request body any policy accepts: the bound while the policy still waits for
    /// the model.
    pub fn max_request_body(&self) -> u64 {
        self.named.iter().chain([&self.default]).map(|p| p.request.max_body_bytes.get()).max().unwrap_or(0)
    }

    /// Chooses the policy for a request: the first named policy that matches, else the
    /// default; [`Selected::AwaitModel`] when that depends on a model not yet read.
    pub fn select(&self, r: &Request, model: Model) -> Selected {
        for p in &self.named {
            match p.matcher.check(r, model) {
                Verdict::Matches => return Selected::Policy(Rc::clone(p)),
                Verdict::NeedsModel => return Selected::AwaitModel,
                Verdict::Misses(_) => {}
            }
        }
        Selected::Policy(Rc::clone(&self.default))
    }

    /// Every named policy's verdict on a request, in order, as [`Policies::select`] reaches them:
    /// what `inferguard explain` prints.
    pub fn explain(&self, r: &Request, model: Model) -> Vec<(&str, Verdict)> {
        self.named.iter().map(|p| (p.name.as_str(), p.matcher.check(r, model))).collect()
    }

    /// A one-line description for logs and `check-config`.
    pub fn summary(&self) -> String {
        let d = &self.default;
        let mut s = format!(
            "{}; request max_body_bytes={}, response max_body_bytes={}",
            d.engine.summary(),
            d.request.max_body_bytes.get(),
            d.response.max_body_bytes.get()
        );
        if !self.named.is_empty() {
            let names: Vec<&str> = self.named.iter().map(|p| p.name.as_str()).collect();
            s.push_str(&format!(
                "; {} named polic{}: {}",
                names.len(),
                if names.len() == 1 { "y" } else { "ies" },
                names.join(", ")
            ));
        }
        s
    }
}

#[cfg(test)]
mod tests;
