//! Admission: whether a request may be forwarded at all, before any of it is.
//!
//! Each check reads only what Envoy verified ([`Verified`], [`Identity`]) and the normalised
//! request target; a refusal is a [`Denial`] with the status, a stable reason for the audit
//! record, a message for people, and the `WWW-Authenticate` challenge RFC 6750 asks for.

use super::glob::{self, Glob};
use super::identity::{Identity, Verified};
use super::settings::{AdmissionConfig, TlsVersion};
use crate::config::ConfigError;
use crate::wire::endpoint::{self, Endpoint, Target};

/// A refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// HTTP status: 401, 403, 426 or 502.
    pub status: u16,
    /// Stable machine-readable reason (`insufficient_scope`), for the audit record and the
    /// error body's code.
    pub reason: &'static str,
    /// For people; never carries a token or a scanned value.
    pub message: String,
    /// The `WWW-Authenticate` header value, for 401 and scope refusals.
    pub www_authenticate: Option<String>,
    /// Seconds for `Retry-After`, for 429.
    pub retry_after: Option<u64>,
}

impl Denial {
    fn new(status: u16, reason: &'static str, message: impl Into<String>) -> Denial {
        Denial { status, reason, message: message.into(), www_authenticate: None, retry_after: None }
    }
}

/// One policy's admission, compiled.
#[derive(Debug, Clone)]
pub struct Admission {
    cfg: AdmissionConfig,
    models: Vec<ModelRule>,
}

#[derive(Debug, Clone)]
struct ModelRule {
    subjects: Vec<Glob>,
    groups: Vec<String>,
    spiffe: Vec<Glob>,
    allow: Option<Vec<Glob>>,
    deny: Vec<Glob>,
}

impl ModelRule {
    fn applies_to(&self, id: &Identity) -> bool {
        (self.subjects.is_empty() || id.subject.as_deref().is_some_and(|s| glob::any(&self.subjects, s)))
            && (self.groups.is_empty() || id.groups.iter().any(|g| self.groups.contains(g)))
            && (self.spiffe.is_empty() || id.spiffe.as_deref().is_some_and(|s| glob::any(&self.spiffe, s)))
    }
}

impl Admission {
    /// Compiles an `admission` section; `at` is its path for errors.
    pub(crate) fn new(cfg: &AdmissionConfig, at: &str) -> Result<Admission, ConfigError> {
        for (i, e) in cfg.endpoints.iter().enumerate() {
            if !e.starts_with('/') && !endpoint::ADMIN_ENDPOINTS.iter().any(|(n, _)| n == e) {
                let names: Vec<&str> = endpoint::ADMIN_ENDPOINTS.iter().map(|(n, _)| *n).collect();
                return Err(ConfigError::new(
                    format!("{at}.endpoints[{i}]"),
                    format_args!(
                        "unknown endpoint `{e}`: expected a path starting with `/` or one of {}",
                        names.join(", ")
                    ),
                ));
            }
        }
        for (i, s) in cfg.required_scopes.iter().enumerate() {
            if s.is_empty() || s.contains(|c: char| c.is_ascii_whitespace() || c == '"' || c == '\\') {
                return Err(ConfigError::new(
                    format!("{at}.required_scopes[{i}]"),
                    "a scope is one non-empty word without quotes or backslashes (RFC 6749 section 3.3)",
                ));
            }
        }
        let models = cfg
            .models
            .iter()
            .map(|m| ModelRule {
                subjects: glob::compile(&m.subjects, false),
                groups: m.groups.clone(),
                spiffe: glob::compile(&m.spiffe, false),
                allow: m.allow.as_ref().map(|a| glob::compile(a, true)),
                deny: glob::compile(&m.deny, true),
            })
            .collect();
        Ok(Admission { cfg: cfg.clone(), models })
    }

    /// The settings it was built from.
    pub fn config(&self) -> &AdmissionConfig {
        &self.cfg
    }

    /// Does any model rule constrain this policy? (Then the model must be read before the
    /// request is forwarded.)
    pub fn checks_models(&self) -> bool {
        !self.models.is_empty()
    }

    /// Everything decided by the request head: channel, token, identity, scopes, endpoint and
    /// upstream, in that order (the first failure is the one reported).
    pub fn check_head(&self, v: &Verified, id: &Identity, target: &Target) -> Result<(), Denial> {
        let c = &self.cfg;
        match v.tls_version.filter(|t| !t.is_empty()) {
            None if c.require_tls => {
                return Err(Denial::new(426, "tls_required", "TLS is required: connect with https://"));
            }
            Some(t) if TlsVersion::from_envoy(t).map_or(true, |t| t < c.min_tls_version) => {
                return Err(Denial::new(
                    403,
                    "tls_version",
                    format!("{} or later is required; the connection uses {t}", c.min_tls_version.as_str()),
                ));
            }
            _ => {}
        }
        if let Some(why) = id.invalid_token {
            let mut d = Denial::new(401, "invalid_token", format!("the bearer token was refused: {why}"));
            d.www_authenticate = Some(format!("Bearer error=\"invalid_token\", error_description=\"{why}\""));
            return Err(d);
        }
        if c.require_client_certificate && !v.client_certificate {
            return Err(Denial::new(
                403,
                "client_certificate_required",
                "this endpoint requires a client certificate (mutual TLS)",
            ));
        }
        if c.require_identity && id.is_anonymous() {
            let mut d = Denial::new(401, "identity_required", "authentication is required: send a bearer token");
            d.www_authenticate = Some("Bearer realm=\"inferguard\"".to_owned());
            return Err(d);
        }
        let missing: Vec<&str> =
            c.required_scopes.iter().filter(|s| !id.scopes.contains(s)).map(String::as_str).collect();
        if !missing.is_empty() {
            let all = c.required_scopes.join(" ");
            let mut d = if id.is_anonymous() {
                let mut d =
                    Denial::new(401, "identity_required", format!("a bearer token with scope `{all}` is required"));
                d.www_authenticate = Some(format!("Bearer realm=\"inferguard\", scope=\"{all}\""));
                d
            } else {
                Denial::new(403, "insufficient_scope", format!("the token lacks the scope `{}`", missing.join(" ")))
            };
            if d.www_authenticate.is_none() {
                d.www_authenticate = Some(format!("Bearer error=\"insufficient_scope\", scope=\"{all}\""));
            }
            return Err(d);
        }
        match &target.endpoint {
            Endpoint::Inference(_) => {}
            e => {
                if !c.endpoints.iter().any(|a| endpoint::allowed_by(target, a)) {
                    return Err(match e {
                        Endpoint::Admin(name) => Denial::new(
                            403,
                            "admin_endpoint",
                            format!("the administrative endpoint `{name}` is not reachable through this gateway"),
                        ),
                        _ => Denial::new(403, "endpoint_not_allowed", "this path is not an inference API"),
                    });
                }
            }
        }
        if c.require_upstream_tls && v.upstream_tls != Some(true) {
            return Err(Denial::new(
                502,
                "upstream_not_encrypted",
                "this route's upstream is not encrypted, and the policy requires it to be",
            ));
        }
        Ok(())
    }

    /// Whether `id` may ask for `model` (`None`: the request names none).
    pub fn check_model(&self, id: &Identity, model: Option<&str>) -> Result<(), Denial> {
        let Some(rule) = self.models.iter().find(|r| r.applies_to(id)) else { return Ok(()) };
        let allowed = match model {
            Some(m) => rule.allow.as_ref().map_or(true, |a| glob::any(a, m)) && !glob::any(&rule.deny, m),
            // A rule that lists allowed models needs a model to check.
            None => rule.allow.is_none(),
        };
        if allowed {
            return Ok(());
        }
        let name: String = model.unwrap_or("").chars().take(128).collect();
        Err(Denial::new(
            403,
            "model_not_allowed",
            if model.is_some() {
                format!("the model `{name}` is not allowed for this caller")
            } else {
                "the request names no model, and this caller may use only some".to_owned()
            },
        ))
    }
}
