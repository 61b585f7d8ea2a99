//! The `detect` section of the configuration.
//!
//! Every field has a default, so `{}` (or no `detect` section at all) is the default policy: the
//! built-in detectors that are on by default, each with the `mask` action, the default JSON field
//! rules, and no custom rules, dictionaries or allowlist. [`crate::detect::Engine::new`] checks
//! what reading cannot (names, regular expressions, limits) and reports the path of the offending
//! field, such as `detect.rules[2].pattern: invalid regex: ...`.
//!
//! ```json
//! {
//!   "detectors": {
//!     "phone": { "action": "partial", "keep_last": 4 },
//!     "ipv4": { "enabled": false },
//!     "private_key": { "action": "block" }
//!   },
//!   "rules": [
//!     { "name": "ticket", "pattern": "\\bINC-[0-9]{6}\\b", "action": "hash", "max_len": 16 }
//!   ],
//!   "dictionaries": [
//!     { "name": "codename", "terms": ["Project Falcon", "Bluebird"], "action": "mask" }
//!   ],
//!   "allowlist": { "values": ["support@example.com"], "domains": ["example.org"], "patterns": ["10\\.0\\.0\\.[0-9]+"] },
//!   "field_rules": { "keys": ["password", "ssn", "api_key"], "action": "mask" },
//!   "hash_key": "a deployment secret of at least 16 bytes"
//! }
//! ```

use std::collections::BTreeMap;
use std::fmt;

use super::Action;
use crate::config::read::Node;
use crate::config::ConfigError;

/// What the engine looks for, and what it does with each kind of finding.
#[derive(Debug, Clone)]
pub struct DetectConfig {
    /// Per built-in detector settings, keyed by detector name (`email`, `credit_card`, ...).
    /// Detectors not named keep their defaults.
    pub detectors: BTreeMap<String, DetectorSetting>,
    /// Custom regular-expression rules, in priority order.
    pub rules: Vec<RuleConfig>,
    /// Lists of terms (project names, customer names) that must not leave.
    pub dictionaries: Vec<DictionaryConfig>,
    /// Values that are never redacted, whatever detector finds them.
    pub allowlist: AllowlistConfig,
    /// JSON keys whose string values are redacted whole.
    pub field_rules: FieldRulesConfig,
    /// The secret that keys the `hash` action. Without it, a fixed public default key is used,
    /// which keeps tokens stable but lets anyone who has inferguard test guesses of a value
    /// against its token: configure a key wherever `hash` is used on guessable values.
    pub hash_key: Option<HashKey>,
    /// Whether documentation placeholders in a detector's format (`ghp_xxxx...`, AWS's keys
    /// ending in `EXAMPLE`, a PEM block whose body is not base64) are left alone and reported as
    /// `placeholder` (`"placeholders": "leave"`, the default), or found as values (`"redact"`).
    pub keep_placeholders: bool,
    /// An allowlist every rule shares (gitleaks' global `[allowlist]`).
    pub rule_allowlist: RuleAllowlistConfig,
}

/// Settings for one built-in detector.
#[derive(Debug, Clone, Default)]
pub struct DetectorSetting {
    /// Turn the detector on or off; unset keeps its default.
    pub enabled: Option<bool>,
    /// What to do with what it finds; unset keeps its default (`mask`).
    pub action: Option<Action>,
    /// For `partial`: how many trailing letters and digits stay visible (default 4).
    pub keep_last: Option<u8>,
}

/// A named regular expression ([regex-lite syntax](https://docs.rs/regex-lite)).
#[derive(Debug, Clone)]
pub struct RuleConfig {
    /// The name used in findings, audit counts and mask text (`[REDACTED:NAME]`): ASCII letters,
    /// digits, `_`, `-` and `.`, distinct from every built-in detector name.
    pub name: String,
    /// The pattern. Add `(?i)` for case-insensitive matching.
    pub pattern: String,
    /// What to do with a match (default `mask`).
    pub action: Action,
    /// For `partial`: how many trailing letters and digits stay visible (default 4).
    pub keep_last: Option<u8>,
    /// The longest match the rule is meant to find, in bytes (default 128, at most 4096).
    /// Streams hold back this many bytes of not-yet-released text for the rule; a pattern that
    /// can match more may find less when text arrives in pieces.
    pub max_len: Option<usize>,
    /// Words one of which a match must contain (ASCII case ignored), as gitleaks' `keywords`:
    /// all rules' keywords are searched at once, and a rule whose keywords are absent from the
    /// text is not run at all.
    pub keywords: Vec<String>,
    /// The capture group that is the value (redacted, and measured for `entropy`); unset: the
    /// first group that took part in the match, or the whole match when there is none.
    pub secret_group: Option<usize>,
    /// The least Shannon entropy (bits per character) the value must have.
    pub entropy: Option<f64>,
    /// Values of this rule that are left alone.
    pub allowlists: Vec<RuleAllowlistConfig>,
}

/// A rule's allowlist, as gitleaks writes it: a match is left alone when its regular expressions
/// or its stopwords say so.
#[derive(Debug, Clone, Default)]
pub struct RuleAllowlistConfig {
    /// Regular expressions searched in the target (not anchored).
    pub regexes: Vec<String>,
    /// Words whose presence in the value (ASCII case ignored) leaves it alone.
    pub stopwords: Vec<String>,
    /// What `regexes` are searched in: `secret` (the value, the default) or `match` (the whole
    /// match; gitleaks' `line` is read as the match too).
    pub target_match: bool,
    /// `true` (gitleaks' `condition = "AND"`): every kind of criterion given must hold; else any.
    pub all: bool,
}

/// A list of terms matched literally.
#[derive(Debug, Clone)]
pub struct DictionaryConfig {
    /// The name used in findings and audit counts, like a rule's.
    pub name: String,
    /// The terms. Each must be non-empty and at most 256 bytes.
    pub terms: Vec<String>,
    /// What to do with a match (default `mask`).
    pub action: Action,
    /// For `partial`: how many trailing letters and digits stay visible (default 4).
    pub keep_last: Option<u8>,
    /// Match ASCII letters exactly as written (default false: `acme` matches `ACME`).
    pub case_sensitive: bool,
    /// Match only whole words (default true: `ant` does not match inside `task-ant`'s `pants`).
    pub whole_word: bool,
}

/// Values that are never redacted.
#[derive(Debug, Clone, Default)]
pub struct AllowlistConfig {
    /// Exact values (compared ignoring ASCII case), such as `support@example.com`.
    pub values: Vec<String>,
    /// Domains whose email addresses and connection-string hosts are left alone; a domain
    /// covers its subdomains.
    pub domains: Vec<String>,
    /// Regular expressions a whole value must match to be left alone.
    pub patterns: Vec<String>,
}

/// JSON keys whose string values are redacted whole, whatever they contain.
#[derive(Debug, Clone)]
pub struct FieldRulesConfig {
    /// Keys, compared ignoring ASCII case and the separators `_`, `-` and `.`; a key also covers
    /// compound keys that end with it (`password` covers `db_password` and `dbPassword`).
    /// An empty list turns field rules off.
    pub keys: Vec<String>,
    /// What to do with such a value (default `mask`).
    pub action: Action,
    /// For `partial`: how many trailing letters and digits stay visible (default 4).
    pub keep_last: Option<u8>,
}

impl Default for FieldRulesConfig {
    fn default() -> Self {
        FieldRulesConfig {
            keys: DEFAULT_FIELD_KEYS.iter().map(|k| k.to_string()).collect(),
            action: Action::Mask,
            keep_last: None,
        }
    }
}

/// The field rules of the default policy.
pub const DEFAULT_FIELD_KEYS: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "secret",
    "client_secret",
    "api_key",
    "access_token",
    "refresh_token",
    "private_key",
    "authorization",
    "ssn",
    "card_number",
    "cvv",
];

/// The `hash` action's key. Its `Debug` output never shows the key.
#[derive(Clone)]
pub struct HashKey(pub String);

impl fmt::Debug for HashKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HashKey(..)")
    }
}

/// The names of the actions in configuration.
const ACTIONS: &[(&str, Action)] = &[
    ("mask", Action::Mask),
    ("partial", Action::Partial),
    ("hash", Action::Hash),
    ("remove", Action::Remove),
    ("block", Action::Block),
    ("report", Action::Report),
];

fn action(node: &Node) -> Result<Action, ConfigError> {
    node.choice(ACTIONS)
}

fn keep_last(node: &Node) -> Result<u8, ConfigError> {
    node.uint(u64::from(u8::MAX)).map(|n| n as u8)
}

impl Default for DetectConfig {
    fn default() -> Self {
        DetectConfig {
            detectors: BTreeMap::new(),
            rules: Vec::new(),
            dictionaries: Vec::new(),
            allowlist: AllowlistConfig::default(),
            field_rules: FieldRulesConfig::default(),
            hash_key: None,
            keep_placeholders: true,
            rule_allowlist: RuleAllowlistConfig::default(),
        }
    }
}

impl DetectConfig {
    pub(crate) fn read(node: &Node) -> Result<DetectConfig, ConfigError> {
        let obj = node.object(&[
            "detectors",
            "rules",
            "dictionaries",
            "allowlist",
            "field_rules",
            "hash_key",
            "placeholders",
            "rule_allowlist",
        ])?;
        let detectors = match obj.get("detectors") {
            None => BTreeMap::new(),
            Some(n) => n
                .map()?
                .entries()
                .map(|(name, n)| Ok((name.to_owned(), DetectorSetting::read(&n)?)))
                .collect::<Result<_, _>>()?,
        };
        Ok(DetectConfig {
            detectors,
            rules: obj.read("rules", |n| n.array(|n| RuleConfig::read(&n)))?.unwrap_or_default(),
            dictionaries: obj.read("dictionaries", |n| n.array(|n| DictionaryConfig::read(&n)))?.unwrap_or_default(),
            allowlist: obj.read("allowlist", AllowlistConfig::read)?.unwrap_or_default(),
            field_rules: obj.read("field_rules", FieldRulesConfig::read)?.unwrap_or_default(),
            hash_key: obj.read("hash_key", |n| n.str().map(|k| HashKey(k.to_owned())))?,
            rule_allowlist: obj.read("rule_allowlist", RuleAllowlistConfig::read)?.unwrap_or_default(),
            keep_placeholders: obj
                .read("placeholders", |n| n.choice(&[("leave", true), ("redact", false)]))?
                .unwrap_or(true),
        })
    }
}

impl DetectorSetting {
    fn read(node: &Node) -> Result<DetectorSetting, ConfigError> {
        let obj = node.object(&["enabled", "action", "keep_last"])?;
        Ok(DetectorSetting {
            enabled: obj.read("enabled", Node::bool)?,
            action: obj.read("action", action)?,
            keep_last: obj.read("keep_last", keep_last)?,
        })
    }
}

impl RuleConfig {
    fn read(node: &Node) -> Result<RuleConfig, ConfigError> {
        let obj = node.object(&[
            "name",
            "pattern",
            "action",
            "keep_last",
            "max_len",
            "keywords",
            "secret_group",
            "entropy",
            "allowlists",
        ])?;
        Ok(RuleConfig {
            name: obj.required("name")?.str()?.to_owned(),
            pattern: obj.required("pattern")?.str()?.to_owned(),
            action: obj.read("action", action)?.unwrap_or(Action::Mask),
            keep_last: obj.read("keep_last", keep_last)?,
            max_len: obj.read("max_len", |n| n.uint(u64::from(u32::MAX)).map(|n| n as usize))?,
            keywords: obj.read("keywords", Node::strings)?.unwrap_or_default(),
            secret_group: obj.read("secret_group", |n| n.uint(99).map(|n| n as usize))?,
            entropy: obj.read("entropy", Node::number)?,
            allowlists: obj.read("allowlists", |n| n.array(|n| RuleAllowlistConfig::read(&n)))?.unwrap_or_default(),
        })
    }
}

impl RuleAllowlistConfig {
    fn read(node: &Node) -> Result<RuleAllowlistConfig, ConfigError> {
        let obj = node.object(&["regexes", "stopwords", "target", "condition"])?;
        Ok(RuleAllowlistConfig {
            regexes: obj.read("regexes", Node::strings)?.unwrap_or_default(),
            stopwords: obj.read("stopwords", Node::strings)?.unwrap_or_default(),
            target_match: obj.read("target", |n| n.choice(&[("secret", false), ("match", true)]))?.unwrap_or(false),
            all: obj.read("condition", |n| n.choice(&[("or", false), ("and", true)]))?.unwrap_or(false),
        })
    }
}

impl DictionaryConfig {
    fn read(node: &Node) -> Result<DictionaryConfig, ConfigError> {
        let obj = node.object(&["name", "terms", "action", "keep_last", "case_sensitive", "whole_word"])?;
        Ok(DictionaryConfig {
            name: obj.required("name")?.str()?.to_owned(),
            terms: obj.required("terms")?.strings()?,
            action: obj.read("action", action)?.unwrap_or(Action::Mask),
            keep_last: obj.read("keep_last", keep_last)?,
            case_sensitive: obj.read("case_sensitive", Node::bool)?.unwrap_or(false),
            whole_word: obj.read("whole_word", Node::bool)?.unwrap_or(true),
        })
    }
}

impl AllowlistConfig {
    fn read(node: &Node) -> Result<AllowlistConfig, ConfigError> {
        let obj = node.object(&["values", "domains", "patterns"])?;
        Ok(AllowlistConfig {
            values: obj.read("values", Node::strings)?.unwrap_or_default(),
            domains: obj.read("domains", Node::strings)?.unwrap_or_default(),
            patterns: obj.read("patterns", Node::strings)?.unwrap_or_default(),
        })
    }
}

impl FieldRulesConfig {
    fn read(node: &Node) -> Result<FieldRulesConfig, ConfigError> {
        let obj = node.object(&["keys", "action", "keep_last"])?;
        let d = FieldRulesConfig::default();
        Ok(FieldRulesConfig {
            keys: obj.read("keys", Node::strings)?.unwrap_or(d.keys),
            action: obj.read("action", action)?.unwrap_or(d.action),
            keep_last: obj.read("keep_last", keep_last)?,
        })
    }
}
