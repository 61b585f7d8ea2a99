//! The allowlist: values, e-mail domains and patterns that are never redacted.

use super::catalog::Det;
use super::config::AllowlistConfig;
use super::normalize;
use crate::config::ConfigError;

#[derive(Debug, Clone, Default)]
pub(super) struct Allow {
    values: Vec<String>,
    domains: Vec<String>,
    patterns: Vec<regex_lite::Regex>,
}

impl Allow {
    /// Checks and compiles `detect.allowlist`.
    pub(super) fn compile(cfg: &AllowlistConfig) -> Result<Allow, ConfigError> {
        let mut allow = Allow::default();
        for (i, v) in cfg.values.iter().enumerate() {
            if v.is_empty() {
                return Err(ConfigError::new(format!("detect.allowlist.values[{i}]"), "must not be empty"));
            }
            allow.values.push(normalize::fold_str(v).into_owned());
        }
        for (i, d) in cfg.domains.iter().enumerate() {
            let d = d.trim().trim_start_matches('@').trim_start_matches("*.").trim_start_matches('.');
            if d.is_empty() || !d.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'.' || c == b'-') {
                return Err(ConfigError::new(
                    format!("detect.allowlist.domains[{i}]"),
                    "expected a domain name such as example.com",
                ));
            }
            allow.domains.push(d.to_ascii_lowercase());
        }
        for (i, p) in cfg.patterns.iter().enumerate() {
            let re = regex_lite::Regex::new(&format!("^(?:{p})$")).map_err(|e| {
                ConfigError::new(format!("detect.allowlist.patterns[{i}]"), format!("invalid regex: {e}"))
            })?;
            allow.patterns.push(re);
        }
        Ok(allow)
    }
    pub(super) fn is_empty(&self) -> bool {
        self.values.is_empty() && self.domains.is_empty() && self.patterns.is_empty()
    }

    pub(super) fn len(&self) -> usize {
        self.values.len() + self.domains.len() + self.patterns.len()
    }

    pub(super) fn allows(&self, det: Option<Det>, value: &str) -> bool {
        if self.values.iter().any(|v| v.eq_ignore_ascii_case(value)) {
            return true;
        }
        if !self.domains.is_empty() {
            let host = match det {
                Some(Det::Email) => value.rsplit_once('@').map(|(_, d)| d),
                _ => None,
            };
            if let Some(host) = host {
                if self.domains.iter().any(|d| domain_covers(d, host)) {
                    return true;
                }
            }
        }
        self.patterns.iter().any(|p| p.is_match(value))
    }
}

fn domain_covers(domain: &str, host: &str) -> bool {
    let host = host.trim_end_matches('.');
    host.eq_ignore_ascii_case(domain)
        || (host.len() > domain.len()
            && host.as_bytes()[host.len() - domain.len() - 1] == b'.'
            && host[host.len() - domain.len()..].eq_ignore_ascii_case(domain))
}
