//! [`Engine::new`]: a configuration compiled once into the engine every request shares. Each part
//! is checked where it lives (rules and dictionaries in `custom.rs`, the allowlist in `allow.rs`,
//! field rules in `fields.rs`); this file puts them together and answers questions about the
//! result.

use super::allow::Allow;
use super::catalog::{self, Det};
use super::{custom, fields, sha256, Action, DetectConfig, Engine, Name};
use crate::config::ConfigError;

/// The key the `hash` action uses when the configuration sets none. It is public (it is in
/// this source), so tokens made with it are stable but not secret.
const DEFAULT_HASH_KEY: &[u8] = b"inferguard default hash key: configure detect.hash_key";

pub(super) const DEFAULT_KEEP_LAST: u8 = 4;

/// The name findings that are placeholders carry, in findings and audit counts.
const PLACEHOLDER: &str = "placeholder";

impl Engine {
    /// Compiles a configuration: builds the dictionaries' automata, the rules' and allowlist's
    /// regular expressions, and checks every name and limit. Errors name the offending field,
    /// such as `detect.rules[2].pattern: invalid regex: ...` or
    /// `detect.detectors.emial: unknown detector (known: email, phone, ...)`.
    ///
    /// # Examples
    ///
    /// ```
    /// use inferguard::policy::Config;
    /// use inferguard::detect::Engine;
    ///
    /// let cfg = Config::parse(r#"{"detect": {"rules": [{"name": "ticket", "pattern": "("}]}}"#).unwrap();
    /// let err = Engine::new(&cfg.default.detect).unwrap_err();
    /// assert!(err.to_string().starts_with("detect.rules[0].pattern: invalid regex"));
    /// ```
    pub fn new(cfg: &DetectConfig) -> Result<Engine, ConfigError> {
        let mut names = Vec::new();
        let mut on = [false; catalog::COUNT];
        for d in catalog::ALL {
            on[d as usize] = d.default_on();
            names.push(Name::new(d.name(), Action::Mask, DEFAULT_KEEP_LAST));
        }
        for (name, s) in &cfg.detectors {
            let path = format!("detect.detectors.{name}");
            let Some(d) = Det::from_name(name) else {
                let known: Vec<&str> = catalog::ALL.iter().map(|d| d.name()).collect();
                return Err(ConfigError::new(path, format!("unknown detector (known: {})", known.join(", "))));
            };
            if let Some(e) = s.enabled {
                on[d as usize] = e;
            }
            let n = &mut names[d as usize];
            if let Some(a) = s.action {
                n.action = a;
            }
            if let Some(k) = s.keep_last {
                n.keep_last = check_keep(&path, k)?;
            }
        }
        let mut taken: Vec<String> = catalog::ALL.iter().map(|d| d.name().to_string()).collect();
        taken.push(PLACEHOLDER.to_string());
        let placeholder = cfg.keep_placeholders.then(|| {
            names.push(Name::new(PLACEHOLDER, Action::Report, DEFAULT_KEEP_LAST));
            (names.len() - 1) as u32
        });
        let rules = custom::compile_rules(&cfg.rules, &cfg.rule_allowlist, &mut names, &mut taken)?;
        let dicts = custom::compile_dicts(&cfg.dictionaries, &mut names, &mut taken)?;
        let allow = Allow::compile(&cfg.allowlist)?;
        let fields = fields::compile(&cfg.field_rules, &mut names)?;
        let (hmac, hash_key_configured) = match &cfg.hash_key {
            Some(k) if k.0.len() < 16 => {
                return Err(ConfigError::new(
                    "detect.hash_key",
                    format!("must be at least 16 bytes, got {}", k.0.len()),
                ));
            }
            Some(k) => (sha256::HmacKey::new(k.0.as_bytes()), true),
            None => (sha256::HmacKey::new(DEFAULT_HASH_KEY), false),
        };
        let mut max_left = catalog::MAX_LEFT_CONTEXT;
        if !dicts.is_empty() {
            // Whole-word checks look one character back.
            max_left = max_left.max(4);
        }
        if !rules.is_empty() {
            // Look-around such as \b or ^ reads one character before a match.
            max_left = max_left.max(4);
        }
        Ok(Engine { names, on, rules, dicts, allow, fields, hmac, hash_key_configured, max_left, placeholder })
    }

    /// A one-line description, such as
    /// `22 detectors enabled, 3 rules, 1 dictionary (1200 terms), 2 field rules`.
    pub fn summary(&self) -> String {
        let enabled = self.on.iter().filter(|&&o| o).count();
        let mut s = format!("{enabled} detectors enabled");
        let plural = |n: usize| if n == 1 { "" } else { "s" };
        s.push_str(&format!(", {} rule{}", self.rules.len(), plural(self.rules.len())));
        let terms: usize = self.dicts.iter().map(|d| d.terms).sum();
        if self.dicts.len() == 1 {
            s.push_str(&format!(", 1 dictionary ({terms} terms)"));
        } else {
            s.push_str(&format!(", {} dictionaries ({terms} terms)", self.dicts.len()));
        }
        s.push_str(&format!(", {} field rule{}", self.fields.len(), plural(self.fields.len())));
        if !self.allow.is_empty() {
            s.push_str(&format!(
                ", {} allowlist entr{}",
                self.allow.len(),
                if self.allow.len() == 1 { "y" } else { "ies" }
            ));
        }
        if !self.hash_key_configured && self.names.iter().any(|n| n.action == Action::Hash) {
            s.push_str(", hash action with the default key");
        }
        s
    }

    /// The configured action of the detector, rule, dictionary or field rule `name` (before a
    /// direction's mode rewrites it), if the configuration knows the name.
    pub fn action_of(&self, name: &str) -> Option<Action> {
        self.names.iter().find(|n| n.name.as_ref() == name).map(|n| n.action)
    }

    /// How many bytes of already-released text [`Engine::scan`] needs to see before `from` to
    /// decide exactly as if it saw the whole text: labels such as `SSN:` or
    /// `Authorization: Bearer`, and word boundaries.
    pub fn max_left_context(&self) -> usize {
        self.max_left
    }
}

impl Name {
    pub(super) fn new(name: &str, action: Action, keep_last: u8) -> Name {
        Name { name: std::sync::Arc::from(name), label: name.to_ascii_uppercase().into_boxed_str(), action, keep_last }
    }
}

pub(super) fn check_keep(path: &str, k: u8) -> Result<u8, ConfigError> {
    if k > 64 {
        return Err(ConfigError::new(path, format!("must be at most 64, got {k}")));
    }
    Ok(k)
}

pub(super) fn check_name(path: &str, name: &str, taken: &mut Vec<String>) -> Result<(), ConfigError> {
    if name.is_empty()
        || name.len() > 64
        || !name.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'))
    {
        return Err(ConfigError::new(path, "must be 1 to 64 ASCII letters, digits, '_', '-' or '.'"));
    }
    if taken.iter().any(|t| t == name) {
        return Err(ConfigError::new(path, format!("`{name}` is already used by a detector, rule or dictionary")));
    }
    taken.push(name.to_string());
    Ok(())
}
