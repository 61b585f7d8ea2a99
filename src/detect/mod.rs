//! The detection engine: finds sensitive values in text and decides what replaces them.
//!
//! An [`Engine`] is compiled once per configuration ([`Engine::new`]) and shared by every request.
//! It is plain Rust: no IO, no host calls, no clock, so the filter, the CLI and the tests drive
//! the same code.
//!
//! # What it finds
//!
//! - The built-in catalog: 22 detectors with stable names (`email`, `phone`, `credit_card`,
//!   `us_ssn`, `iban`, `ipv4`, `ipv6`, `aws_access_key_id`, `aws_secret_access_key`,
//!   `github_token`, `gitlab_token`, `slack_token`, `slack_webhook`, `openai_api_key`,
//!   `anthropic_api_key`, `stripe_key`, `google_api_key`, `jwt`, `private_key`, `bearer_token`,
//!   `password_assignment`, `connection_string`), all on by default. Each is announced by a few
//!   anchor bytes and confirmed by a validator (Luhn and issuer prefixes, SSN area rules, IBAN
//!   length and mod-97, a JWT header that decodes to JSON with `alg`, ...): see `catalog.rs`.
//! - Custom rules (regular expressions), dictionaries of terms (Aho-Corasick, case-insensitive
//!   and whole-word by default), and JSON field rules ([`Engine::redact_field`]).
//!
//! The allowlist removes findings but keeps their place: nothing inside an allowlisted value is
//! redacted by another detector either.
//!
//! Text is scanned in a normalised form (fullwidth and other Unicode digits and look-alike
//! punctuation folded, zero-width and bidi characters dropped, `%40` and `&#64;` decoded; see
//! `normalize.rs`), and findings are reported as byte offsets into the original text, covering
//! every original byte of the value.
//!
//! # Calling it
//!
//! For whole texts: [`Engine::redact`] (find and apply), or [`Engine::find_all`] then
//! [`Engine::render`]. For streams: [`Engine::scan`] on the not-yet-released text with a little
//! released left context, then [`Engine::render`] the settled part; see [`Engine::scan`] for
//! the exact contract.
//!
//! # Overlaps
//!
//! When matches overlap, the one that starts first wins; at the same start a credential
//! recognised by its own format (`ghp_...`, a JWT, a PEM block) wins over a generic shape or
//! label, then the longer one; at the same span the more specific detector (custom rules, then
//! dictionaries, then a fixed order of the catalog in which, for example, `jwt` beats
//! `bearer_token`). Findings never overlap.

mod catalog;
pub mod config;
mod normalize;
pub(crate) mod sha256;
mod validate;

use aho_corasick::automaton::{Automaton, OverlappingState};
use aho_corasick::nfa::contiguous;
use aho_corasick::{Anchored, Input, MatchKind};
use std::sync::Arc;

use crate::config::ConfigError;
use catalog::{Det, Hay, Sink};
pub use config::DetectConfig;
use normalize::Folded;

/// What happens to a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Replace with `[REDACTED:NAME]`.
    Mask,
    /// Keep the last few letters and digits and star the others (`****-****-****-1111`); how
    /// many is the detector's `keep_last` (default 4). Punctuation and spaces are kept.
    Partial,
    /// Replace with a stable keyed token, `[NAME:3f2a9c1b]`: the first 32 bits of
    /// HMAC-SHA256(`hash_key`, normalised value), in hex.
    Hash,
    /// Delete the value.
    Remove,
    /// Refuse the whole message; the text is left alone.
    Block,
    /// Record in the audit only; the text is left alone.
    Report,
}

impl Action {
    /// The stable snake_case name used in config and audit records.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Mask => "mask",
            Action::Partial => "partial",
            Action::Hash => "hash",
            Action::Remove => "remove",
            Action::Block => "block",
            Action::Report => "report",
        }
    }

    /// Whether the action changes the text ([`Action::Block`] and [`Action::Report`] do not).
    pub fn rewrites(self) -> bool {
        !matches!(self, Action::Block | Action::Report)
    }
}

/// One confirmed match: byte offsets into the scanned text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The detector or rule name (`email`, or a custom rule's name).
    pub detector: Arc<str>,
    /// Start byte offset.
    pub start: usize,
    /// End byte offset (exclusive).
    pub end: usize,
    /// What the policy does with it.
    pub action: Action,
}

/// The result of [`Engine::redact`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redaction {
    /// The text with every finding's action applied.
    pub text: String,
    /// Every finding, in order of position (including `report` and `block` ones).
    pub findings: Vec<Finding>,
}

impl Redaction {
    /// The first finding whose action is `block`, if any.
    pub fn blocked_by(&self) -> Option<&Finding> {
        self.findings.iter().find(|f| f.action == Action::Block)
    }
}

/// Whether more text may follow what [`Engine::scan`] is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// More text may follow: hold back whatever could still become (part of) a match.
    More,
    /// This is the end of the text: everything is settled.
    Final,
}

/// The answer of [`Engine::scan`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Scan {
    /// Findings that start before `settled`, in order; all end at or before `settled`.
    pub findings: Vec<Finding>,
    /// Bytes of the text whose redaction is final: `text[..settled]` may be rendered and
    /// released. Always a char boundary, at least `from`; the whole text with [`End::Final`].
    pub settled: usize,
}

/// A name findings carry, and how its findings are rendered.
#[derive(Debug, Clone)]
struct Name {
    name: Arc<str>,
    /// Upper-cased name for mask and hash text.
    label: Box<str>,
    action: Action,
    keep_last: u8,
}

#[derive(Debug, Clone)]
struct Rule {
    re: regex_lite::Regex,
    max_len: usize,
    id: u32,
}

#[derive(Debug, Clone)]
struct Dict {
    nfa: contiguous::NFA,
    whole_word: bool,
    max_len: usize,
    terms: usize,
    id: u32,
}

#[derive(Debug, Clone, Default)]
struct Allow {
    values: Vec<String>,
    domains: Vec<String>,
    patterns: Vec<regex_lite::Regex>,
}

impl Allow {
    fn is_empty(&self) -> bool {
        self.values.is_empty() && self.domains.is_empty() && self.patterns.is_empty()
    }

    fn len(&self) -> usize {
        self.values.len() + self.domains.len() + self.patterns.len()
    }

    fn allows(&self, det: Option<Det>, value: &str) -> bool {
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

#[derive(Debug, Clone)]
struct FieldKey {
    /// Lower-case, separators removed.
    norm: String,
    id: u32,
}

/// A compiled set of detectors, rules, dictionaries, allowlist and field rules.
///
/// Build it once per configuration with [`Engine::new`]; it is immutable and cheap to share.
/// Every method is deterministic and never panics on any input.
///
/// # Examples
///
/// ```
/// use inferguard::detect::{DetectConfig, Engine};
///
/// let engine = Engine::new(&DetectConfig::default()).unwrap();
/// let r = engine.redact("Mail jane.doe@corp.example, card 4111 1111 1111 1111.");
/// assert_eq!(r.text, "Mail [REDACTED:EMAIL], card [REDACTED:CREDIT_CARD].");
/// assert_eq!(r.findings[0].detector.as_ref(), "email");
/// assert_eq!((r.findings[0].start, r.findings[0].end), (5, 26));
/// ```
#[derive(Debug, Clone)]
pub struct Engine {
    names: Vec<Name>,
    on: [bool; catalog::COUNT],
    rules: Vec<Rule>,
    dicts: Vec<Dict>,
    allow: Allow,
    fields: Vec<FieldKey>,
    hmac: sha256::HmacKey,
    hash_key_configured: bool,
    max_left: usize,
}

/// A candidate before overlap resolution (offsets into the scanned, possibly folded, text).
#[derive(Debug, Clone, Copy)]
struct Cand {
    start: usize,
    end: usize,
    id: u32,
    /// 0 for format-specific credentials, 1 for everything else.
    tier: u8,
    /// Takes part in overlap resolution but is not reported (glued to a mask token).
    hidden: bool,
    rank: u32,
    det: Option<Det>,
}

/// The key the `hash` action uses when the configuration sets none. It is public (it is in
/// this source), so tokens made with it are stable but not secret.
const DEFAULT_HASH_KEY: &[u8] = b"inferguard default hash key: configure detect.hash_key";

const DEFAULT_KEEP_LAST: u8 = 4;
const DEFAULT_RULE_MAX_LEN: usize = 128;
const MAX_RULE_MAX_LEN: usize = 4096;
const MAX_TERM_LEN: usize = 256;

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
        let mut rules = Vec::new();
        for (i, r) in cfg.rules.iter().enumerate() {
            let path = format!("detect.rules[{i}]");
            check_name(&format!("{path}.name"), &r.name, &mut taken)?;
            let re = regex_lite::Regex::new(&r.pattern)
                .map_err(|e| ConfigError::new(format!("{path}.pattern"), format!("invalid regex: {e}")))?;
            if re.is_match("") {
                return Err(ConfigError::new(format!("{path}.pattern"), "matches the empty string"));
            }
            let max_len = r.max_len.unwrap_or(DEFAULT_RULE_MAX_LEN);
            if max_len == 0 || max_len > MAX_RULE_MAX_LEN {
                return Err(ConfigError::new(
                    format!("{path}.max_len"),
                    format!("must be between 1 and {MAX_RULE_MAX_LEN}, got {max_len}"),
                ));
            }
            let keep = match r.keep_last {
                Some(k) => check_keep(&format!("{path}.keep_last"), k)?,
                None => DEFAULT_KEEP_LAST,
            };
            rules.push(Rule { re, max_len, id: names.len() as u32 });
            names.push(Name::new(&r.name, r.action, keep));
        }
        let mut dicts = Vec::new();
        for (i, d) in cfg.dictionaries.iter().enumerate() {
            let path = format!("detect.dictionaries[{i}]");
            check_name(&format!("{path}.name"), &d.name, &mut taken)?;
            if d.terms.is_empty() {
                return Err(ConfigError::new(format!("{path}.terms"), "must list at least one term"));
            }
            let mut max_len = 0;
            for (t, term) in d.terms.iter().enumerate() {
                if term.trim().is_empty() || term.len() > MAX_TERM_LEN {
                    return Err(ConfigError::new(
                        format!("{path}.terms[{t}]"),
                        format!("must be 1 to {MAX_TERM_LEN} bytes and not blank"),
                    ));
                }
                max_len = max_len.max(term.len());
            }
            // Terms are matched against folded text, so fold them the same way.
            let terms: Vec<String> = d.terms.iter().map(|t| normalize::fold_str(t).into_owned()).collect();
            let nfa = contiguous::NFA::builder()
                .match_kind(MatchKind::Standard)
                .ascii_case_insensitive(!d.case_sensitive)
                .build(&terms)
                .map_err(|e| ConfigError::new(format!("{path}.terms"), e))?;
            let keep = match d.keep_last {
                Some(k) => check_keep(&format!("{path}.keep_last"), k)?,
                None => DEFAULT_KEEP_LAST,
            };
            dicts.push(Dict { nfa, whole_word: d.whole_word, max_len, terms: d.terms.len(), id: names.len() as u32 });
            names.push(Name::new(&d.name, d.action, keep));
        }
        let mut allow = Allow::default();
        for (i, v) in cfg.allowlist.values.iter().enumerate() {
            if v.is_empty() {
                return Err(ConfigError::new(format!("detect.allowlist.values[{i}]"), "must not be empty"));
            }
            allow.values.push(normalize::fold_str(v).into_owned());
        }
        for (i, d) in cfg.allowlist.domains.iter().enumerate() {
            let d = d.trim().trim_start_matches('@').trim_start_matches("*.").trim_start_matches('.');
            if d.is_empty() || !d.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'.' || c == b'-') {
                return Err(ConfigError::new(
                    format!("detect.allowlist.domains[{i}]"),
                    "expected a domain name such as example.com",
                ));
            }
            allow.domains.push(d.to_ascii_lowercase());
        }
        for (i, p) in cfg.allowlist.patterns.iter().enumerate() {
            let re = regex_lite::Regex::new(&format!("^(?:{p})$")).map_err(|e| {
                ConfigError::new(format!("detect.allowlist.patterns[{i}]"), format!("invalid regex: {e}"))
            })?;
            allow.patterns.push(re);
        }
        let mut fields = Vec::new();
        let fr = &cfg.field_rules;
        let keep = match fr.keep_last {
            Some(k) => check_keep("detect.field_rules.keep_last", k)?,
            None => DEFAULT_KEEP_LAST,
        };
        for (i, k) in fr.keys.iter().enumerate() {
            let norm = norm_key(k);
            if norm.is_empty() {
                return Err(ConfigError::new(
                    format!("detect.field_rules.keys[{i}]"),
                    "must contain a letter or digit",
                ));
            }
            if fields.iter().any(|f: &FieldKey| f.norm == norm) {
                continue;
            }
            let label = format!("field:{}", k.to_ascii_lowercase());
            fields.push(FieldKey { norm, id: names.len() as u32 });
            names.push(Name::new(&label, fr.action, keep));
        }
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
        for _ in &dicts {
            // Whole-word checks look one character back.
            max_left = max_left.max(4);
        }
        if !rules.is_empty() {
            // Look-around such as \b or ^ reads one character before a match.
            max_left = max_left.max(4);
        }
        Ok(Engine { names, on, rules, dicts, allow, fields, hmac, hash_key_configured, max_left })
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

    /// Applies the policy to `text`: [`Engine::find_all`], then [`Engine::render`].
    ///
    /// `block` and `report` findings are listed but leave the text alone; the caller refuses a
    /// blocked message ([`Redaction::blocked_by`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use inferguard::policy::Config;
    /// use inferguard::detect::Engine;
    ///
    /// let cfg = Config::parse(r#"{"detect": {"detectors": {"credit_card": {"action": "partial"}}}}"#).unwrap();
    /// let engine = Engine::new(&cfg.default.detect).unwrap();
    /// assert_eq!(engine.redact("card 4111-1111-1111-1111").text, "card ****-****-****-1111");
    /// ```
    pub fn redact(&self, text: &str) -> Redaction {
        let findings = self.find_all(text);
        let mut out = String::with_capacity(text.len());
        self.render(text, &findings, &mut out);
        Redaction { text: out, findings }
    }

    /// Like [`Engine::redact`], for a JSON string value under object key `key` (the nearest
    /// enclosing key). When a field rule covers the key (`password` covers `password`,
    /// `db_password` and `dbPassword`), the whole non-empty value is one finding named
    /// `field:<key>`, whatever it contains, unless a detector finds something to `block` in it:
    /// then those findings are returned so the message is refused. Otherwise this is
    /// [`Engine::redact`].
    ///
    /// # Examples
    ///
    /// ```
    /// use inferguard::detect::{DetectConfig, Engine};
    ///
    /// let engine = Engine::new(&DetectConfig::default()).unwrap();
    /// assert_eq!(engine.redact_field(Some("dbPassword"), "hunter2").text, "[REDACTED:FIELD:PASSWORD]");
    /// assert_eq!(engine.redact_field(Some("comment"), "hunter2").text, "hunter2");
    /// ```
    pub fn redact_field(&self, key: Option<&str>, text: &str) -> Redaction {
        let findings = self.find_field(key, text);
        let mut out = String::with_capacity(text.len());
        self.render(text, &findings, &mut out);
        Redaction { text: out, findings }
    }

    /// The findings [`Engine::redact_field`] acts on: the whole value as one finding when a
    /// field rule covers `key` (or only the `block` findings in it, if any), else
    /// [`Engine::find_all`].
    pub fn find_field(&self, key: Option<&str>, text: &str) -> Vec<Finding> {
        let Some(id) = key.and_then(|k| self.field_rule(k)) else {
            return self.find_all(text);
        };
        if text.is_empty() {
            return Vec::new();
        }
        let inner = self.find_all(text);
        if inner.iter().any(|f| f.action == Action::Block) {
            return inner.into_iter().filter(|f| f.action == Action::Block).collect();
        }
        let n = &self.names[id as usize];
        vec![Finding { detector: n.name.clone(), start: 0, end: text.len(), action: n.action }]
    }

    /// What replaces the finding `f` of `text` when rendered, or `None` if its action leaves
    /// the text alone (`block`, `report`). [`Engine::render`] is this, applied to every finding.
    ///
    /// # Examples
    ///
    /// ```
    /// use inferguard::detect::{DetectConfig, Engine};
    ///
    /// let engine = Engine::new(&DetectConfig::default()).unwrap();
    /// let text = "mail a@b.io now";
    /// let f = &engine.find_all(text)[0];
    /// assert_eq!(engine.replacement(text, f).as_deref(), Some("[REDACTED:EMAIL]"));
    /// ```
    pub fn replacement(&self, text: &str, f: &Finding) -> Option<String> {
        if !f.action.rewrites() {
            return None;
        }
        let value = text.get(f.start..f.end)?;
        let mut out = String::new();
        self.render(value, &[Finding { start: 0, end: value.len(), ..f.clone() }], &mut out);
        Some(out)
    }

    fn field_rule(&self, key: &str) -> Option<u32> {
        if self.fields.is_empty() {
            return None;
        }
        // Runs for every JSON string value: compares without building the normalised key.
        self.fields
            .iter()
            .find(|f| norm_suffix(key, &f.norm).is_some_and(|exact| exact || suffix_at_boundary(key, f.norm.len())))
            .map(|f| f.id)
    }

    /// Finds every confirmed match, non-overlapping, in order of position.
    ///
    /// # Examples
    ///
    /// ```
    /// use inferguard::detect::{DetectConfig, Engine};
    ///
    /// let engine = Engine::new(&DetectConfig::default()).unwrap();
    /// let found = engine.find_all("SSN: 123-45-6789, order 4111 1111 1111 1112");
    /// assert_eq!(found.len(), 1); // the order number fails the Luhn check
    /// assert_eq!(found[0].detector.as_ref(), "us_ssn");
    /// ```
    pub fn find_all(&self, text: &str) -> Vec<Finding> {
        self.scan(text, 0, End::Final).findings
    }

    /// Scans `text` where `text[..from]` is already-released left context (no match may start
    /// there) and `end` says whether more text may follow.
    ///
    /// # Contract
    ///
    /// For any text `T` split into `P + S` (at a char boundary) and any `from <= P.len()`:
    ///
    /// - `scan(P, from, More)` returns `settled` with `from <= settled <= P.len()`, on a char
    ///   boundary, and the findings of `scan(T, from, Final)` that start before `settled` are
    ///   exactly the findings it returns, all of which end at or before `settled`.
    /// - `scan(T, from, Final)` returns `settled == T.len()`.
    ///
    /// `P.len() - settled` is the holdback: the shortest tail that could still become (part of)
    /// a match. On prose that is the last word or so (a word may be the local part of an email
    /// whose `@` has not arrived); a run of digits that could grow into a card number or an
    /// unfinished token is held whole; a private key block is held from its BEGIN line until its
    /// END line, however long. Custom rules hold back their `max_len`, and are exact for
    /// patterns whose matches are never longer than that.
    ///
    /// Left context: labels (`SSN:`, `Authorization: Bearer`, `password =`) and word
    /// boundaries are read before a match, so a stream should pass at least
    /// [`Engine::max_left_context`] bytes of released text before `from` (or all of it, when
    /// less was released). `from` past the end or inside a character is moved back to the
    /// nearest char boundary.
    ///
    /// # Examples
    ///
    /// ```
    /// use inferguard::detect::{DetectConfig, End, Engine};
    ///
    /// let engine = Engine::new(&DetectConfig::default()).unwrap();
    /// // The email may still be growing: "jane@example.co" could become ".com" or ".co.uk".
    /// let s = engine.scan("write to jane@example.co", 0, End::More);
    /// assert_eq!(s.settled, 9);
    /// assert!(s.findings.is_empty());
    /// // With the rest, it is settled.
    /// let s = engine.scan("write to jane@example.com today", 0, End::Final);
    /// assert_eq!(s.settled, 31);
    /// assert_eq!((s.findings[0].start, s.findings[0].end), (9, 25));
    /// ```
    pub fn scan(&self, text: &str, from: usize, end: End) -> Scan {
        let fin = end == End::Final;
        let from = floor_boundary(text, from);
        let mut text = text;
        let mut sink = Sink::new(self.on);
        let mut folded = self.run_catalog(text, from, fin, &mut sink);
        // A `%` or `&` sequence cut by the end of what has arrived (`jane&#6`) may still fold:
        // until it is complete, scan as if the text ended where it starts. A scan of the text
        // as it is passes every `%` and `&`, so it is looked for only when the scan passed one
        // among the last bytes; folded text may read a cut sequence as complete (`&#64` is `@`
        // at the very end), so there it is always looked for.
        let near_end = |e: usize| e != usize::MAX && text.len() - e <= normalize::MAX_OPEN;
        if !fin && (folded.is_some() || near_end(sink.escape)) {
            if let Some(k) = normalize::open_tail(text.as_bytes()) {
                if k < from {
                    // Released already: nothing after it may be decided yet.
                    return Scan { findings: Vec::new(), settled: from };
                }
                text = &text[..k];
                folded = self.run_catalog_again(text, from, fin, &mut sink);
            }
        }
        let (hay_text, from_n) = match &folded {
            Some(f) => (f.text.as_str(), f.norm(from)),
            None => (text, from),
        };
        let n = hay_text.len();
        let mut cands: Vec<Cand> = Vec::with_capacity(sink.hits.len());
        for h in &sink.hits {
            if h.start >= from_n {
                cands.push(Cand {
                    start: h.start,
                    end: h.end,
                    id: h.det as u32,
                    tier: u8::from(!h.det.specific()),
                    hidden: false,
                    rank: 2000 + u32::from(h.det.rank()),
                    det: Some(h.det),
                });
            }
        }
        let mut wait = sink.wait;
        for (k, d) in self.dicts.iter().enumerate() {
            dict_scan(d, hay_text, from_n, fin, 1000 + k as u32, &mut cands, &mut wait);
        }
        for (k, r) in self.rules.iter().enumerate() {
            rule_scan(r, hay_text, from_n, fin, k as u32, &mut cands, &mut wait);
        }
        // A value glued to one of our own mask tokens was glued to the value the token replaced:
        // keep it rejected, so that redacting redacted text changes nothing.
        if !cands.is_empty() {
            let b = hay_text.as_bytes();
            // A text without brackets holds no mask token and waits for none: searched only when
            // a candidate would wait, since `glued_to_mask` only finds a token at a bracket.
            let mut brackets = None;
            // Such a value still claims its place (as the allowlist does), so that nothing that
            // overlaps it surfaces either.
            for c in cands.iter_mut() {
                match glued_to_mask(b, c.start, c.end, fin) {
                    Some(glued) => c.hidden = glued,
                    None => {
                        if *brackets.get_or_insert_with(|| catalog::contains2(b, b'[', b']')) {
                            wait = wait.min(c.start);
                        }
                    }
                }
            }
        }
        let mut settled = if fin { n } else { wait.min(n).max(from_n) };
        // Settled offsets must be char boundaries in the scanned text.
        settled = floor_boundary(hay_text, settled);
        // Leftmost; then a format-specific credential; then longest; then most specific.
        cands.sort_unstable_by(|a, b| {
            a.start.cmp(&b.start).then(a.tier.cmp(&b.tier)).then(b.end.cmp(&a.end)).then(a.rank.cmp(&b.rank))
        });
        let mut chosen: Vec<Cand> = Vec::with_capacity(cands.len());
        let mut last_end = 0;
        for c in cands {
            if c.start >= last_end || chosen.is_empty() {
                last_end = c.end;
                chosen.push(c);
            }
        }
        // A finding may not straddle the settled point.
        if let Some(c) = chosen.iter().find(|c| c.start < settled && c.end > settled) {
            settled = c.start;
        }
        let map = |i: usize| folded.as_ref().map_or(i, |f| f.orig(i));
        let mut findings = Vec::with_capacity(chosen.len());
        for c in chosen {
            if c.end > settled {
                break;
            }
            if c.hidden || (!self.allow.is_empty() && self.allow.allows(c.det, &hay_text[c.start..c.end])) {
                continue;
            }
            let name = &self.names[c.id as usize];
            findings.push(Finding {
                detector: name.name.clone(),
                start: map(c.start),
                end: map(c.end),
                action: name.action,
            });
        }
        Scan { findings, settled: if fin { text.len() } else { map(settled) } }
    }

    /// The built-in detectors over `text` from `from` (with left context) into the empty
    /// `sink`, on the text as it is or, when it holds a character that folds, on its folded form
    /// (returned).
    #[inline(always)]
    fn run_catalog(&self, text: &str, from: usize, fin: bool, sink: &mut Sink) -> Option<Folded> {
        let loop_start = floor_boundary(text, from.saturating_sub(self.max_left));
        let raw = Hay { b: text.as_bytes(), fin };
        match catalog::scan(raw, loop_start, false, sink) {
            Ok(()) => None,
            Err(catalog::NeedsFold) => {
                let f = Folded::new(text);
                *sink = Sink::new(self.on);
                let hay = Hay { b: f.text.as_bytes(), fin };
                let _ = catalog::scan(hay, f.norm(loop_start), true, sink);
                Some(f)
            }
        }
    }

    /// [`Engine::run_catalog`] once more, on text cut before a `%` or `&` sequence: rare, and
    /// kept out of [`Engine::scan`].
    #[cold]
    #[inline(never)]
    fn run_catalog_again(&self, text: &str, from: usize, fin: bool, sink: &mut Sink) -> Option<Folded> {
        *sink = Sink::new(self.on);
        self.run_catalog(text, from, fin, sink)
    }

    /// Writes `text` with each finding's action applied to `out`. `findings` must be in order,
    /// non-overlapping, with offsets into `text` on char boundaries, as [`Engine::scan`] and
    /// [`Engine::find_all`] return them; a finding that is not is skipped (its text is kept).
    ///
    /// [`Engine::redact`] is `find_all` followed by `render`; a stream renders each settled
    /// part as [`Engine::scan`] reports it.
    ///
    /// # Examples
    ///
    /// ```
    /// use inferguard::detect::{DetectConfig, End, Engine};
    ///
    /// let engine = Engine::new(&DetectConfig::default()).unwrap();
    /// let text = "key AKIAIOSFODNN7EXAMPLE and more";
    /// let scan = engine.scan(text, 0, End::More);
    /// let mut out = String::new();
    /// engine.render(&text[..scan.settled], &scan.findings, &mut out);
    /// assert_eq!(out, "key [REDACTED:AWS_ACCESS_KEY_ID] and ");
    /// ```
    pub fn render(&self, text: &str, findings: &[Finding], out: &mut String) {
        let mut last = 0;
        for f in findings {
            if f.start < last
                || f.end < f.start
                || f.end > text.len()
                || !text.is_char_boundary(f.start)
                || !text.is_char_boundary(f.end)
            {
                continue;
            }
            if !f.action.rewrites() {
                continue;
            }
            out.push_str(&text[last..f.start]);
            let value = &text[f.start..f.end];
            let (label, keep) = self.render_info(&f.detector);
            match f.action {
                Action::Mask => {
                    out.push_str("[REDACTED:");
                    out.push_str(&label);
                    out.push(']');
                }
                Action::Partial => partial(value, keep, out),
                Action::Hash => {
                    let folded = normalize::fold_str(value);
                    let mac = self.hmac.mac(&[folded.as_bytes()]);
                    out.push('[');
                    out.push_str(&label);
                    out.push(':');
                    for b in &mac[..4] {
                        out.push(char::from(HEX[usize::from(b >> 4)]));
                        out.push(char::from(HEX[usize::from(b & 15)]));
                    }
                    out.push(']');
                }
                Action::Remove | Action::Block | Action::Report => {}
            }
            last = f.end;
        }
        out.push_str(&text[last..]);
    }

    fn render_info(&self, detector: &Arc<str>) -> (std::borrow::Cow<'_, str>, u8) {
        if let Some(n) = self
            .names
            .iter()
            .find(|n| Arc::ptr_eq(&n.name, detector))
            .or_else(|| self.names.iter().find(|n| *n.name == **detector))
        {
            return (std::borrow::Cow::Borrowed(&n.label), n.keep_last);
        }
        (std::borrow::Cow::Owned(detector.to_ascii_uppercase()), DEFAULT_KEEP_LAST)
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl Name {
    fn new(name: &str, action: Action, keep_last: u8) -> Name {
        Name { name: Arc::from(name), label: name.to_ascii_uppercase().into_boxed_str(), action, keep_last }
    }
}

fn check_keep(path: &str, k: u8) -> Result<u8, ConfigError> {
    if k > 64 {
        return Err(ConfigError::new(path, format!("must be at most 64, got {k}")));
    }
    Ok(k)
}

fn check_name(path: &str, name: &str, taken: &mut Vec<String>) -> Result<(), ConfigError> {
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

/// Lower-case ASCII, without `_`, `-`, `.` and spaces: `API-Key` and `api_key` are `apikey`.
fn norm_key(k: &str) -> String {
    k.chars().filter(|c| !matches!(c, '_' | '-' | '.' | ' ')).map(|c| c.to_ascii_lowercase()).collect()
}

/// Whether `norm_key(key)` ends with `norm`: `None` if not, `Some(true)` if the two are equal.
fn norm_suffix(key: &str, norm: &str) -> Option<bool> {
    let mut k = key.chars().rev().filter(|c| !matches!(c, '_' | '-' | '.' | ' ')).map(|c| c.to_ascii_lowercase());
    for n in norm.chars().rev() {
        if k.next()? != n {
            return None;
        }
    }
    Some(k.next().is_none())
}

/// Whether the last `n` alphanumeric characters of `key` start at a word boundary: after a
/// separator, or at a camelCase hump.
fn suffix_at_boundary(key: &str, n: usize) -> bool {
    let b = key.as_bytes();
    let mut seen = 0;
    let mut i = b.len();
    while i > 0 && seen < n {
        i -= 1;
        if !matches!(b[i], b'_' | b'-' | b'.' | b' ') {
            seen += 1;
        }
    }
    if i == 0 {
        return true;
    }
    let before = b[i - 1];
    matches!(before, b'_' | b'-' | b'.' | b' ')
        || (b[i].is_ascii_uppercase() && (before.is_ascii_lowercase() || before.is_ascii_digit()))
}

fn floor_boundary(s: &str, mut i: usize) -> usize {
    if i >= s.len() {
        return s.len();
    }
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Stars every letter and digit but the last `keep`, keeping punctuation, spaces and any other
/// character, and dropping invisible ones. A disguised character counts as what it is scanned
/// as: `&#52;` is a digit (starred as one `*`), `%40` is an `@` (kept as written).
fn partial(value: &str, keep: u8, out: &mut String) {
    let units: Vec<(&str, bool)> = normalize::units(value)
        .filter_map(|(u, f)| match f {
            Some(normalize::Fold::Drop) => None,
            Some(normalize::Fold::Ascii(a)) => Some((u, a.is_ascii_alphanumeric())),
            None => Some((u, u.chars().next().is_some_and(char::is_alphanumeric))),
        })
        .collect();
    let total = units.iter().filter(|(_, alnum)| *alnum).count();
    let mut seen = 0;
    for (u, alnum) in units {
        if alnum {
            seen += 1;
            if seen + usize::from(keep) > total {
                out.push_str(u);
            } else {
                out.push('*');
            }
        } else {
            out.push_str(u);
        }
    }
}

fn is_word_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Dictionary matches in `text[from..]`, whole-word filtered, plus the wait for a term that may
/// be completing at the end.
fn dict_scan(d: &Dict, text: &str, from: usize, fin: bool, rank: u32, cands: &mut Vec<Cand>, wait: &mut usize) {
    let b = text.as_bytes();
    let n = b.len();
    let input = Input::new(text).span(from..n);
    let mut state = OverlappingState::start();
    loop {
        if d.nfa.try_find_overlapping(&input, &mut state).is_err() {
            break;
        }
        let Some(m) = state.get_match() else { break };
        let (s, e) = (m.start(), m.end());
        if !text.is_char_boundary(s) || !text.is_char_boundary(e) {
            continue;
        }
        if d.whole_word {
            let left_ok = s == 0 || !is_word_byte(b[s - 1]) || !is_word_byte(b[s]);
            let right_ok = if e == n { true } else { !is_word_byte(b[e]) || !is_word_byte(b[e - 1]) };
            if e == n && !fin {
                *wait = (*wait).min(s);
                continue;
            }
            if !left_ok || !right_ok {
                continue;
            }
        }
        cands.push(Cand { start: s, end: e, id: d.id, tier: 1, hidden: false, rank, det: None });
    }
    if !fin {
        // The earliest start from which the tail is still a prefix of some term.
        let lo = n.saturating_sub(d.max_len).max(from);
        let Ok(start) = d.nfa.start_state(Anchored::Yes) else {
            return;
        };
        for k in lo..n {
            if !text.is_char_boundary(k) {
                continue;
            }
            if d.whole_word && k > 0 && is_word_byte(b[k - 1]) && is_word_byte(b[k]) {
                continue;
            }
            let mut sid = start;
            let mut alive = true;
            for &c in &b[k..] {
                sid = d.nfa.next_state(Anchored::Yes, sid, c);
                if d.nfa.is_dead(sid) {
                    alive = false;
                    break;
                }
            }
            if alive {
                *wait = (*wait).min(k);
                break;
            }
        }
    }
}

/// Custom rule matches from `from` on. When more text may follow, matches that start in the
/// last `max_len` bytes are not final, so the wait starts there.
fn rule_scan(r: &Rule, text: &str, from: usize, fin: bool, rank: u32, cands: &mut Vec<Cand>, wait: &mut usize) {
    let mut at = from;
    while at <= text.len() {
        let Some(m) = r.re.find_at(text, at) else {
            break;
        };
        if m.end() - m.start() <= r.max_len && m.start() < m.end() {
            cands.push(Cand { start: m.start(), end: m.end(), id: r.id, tier: 1, hidden: false, rank, det: None });
        }
        at = if m.end() > m.start() { m.end() } else { next_boundary(text, m.end()) };
    }
    if !fin {
        *wait = (*wait).min(text.len().saturating_sub(r.max_len).max(from));
    }
}

/// Whether the value `b[start..end]` touches one of our mask tokens, directly or across up to
/// three characters that detectors read through (`.`, `,`, `/`, `-`, `:`, `_`, `+`, `%`, `'`,
/// `=`, `~`, and after the value a space, which joins the groups of a spaced number); `None`
/// when the text ends inside what could still become a mask token after it.
fn glued_to_mask(b: &[u8], start: usize, end: usize, fin: bool) -> Option<bool> {
    let glue = |c: u8| matches!(c, b'.' | b',' | b'/' | b'-' | b':' | b'_' | b'+' | b'%' | b'\'' | b'=' | b'~');
    let mut k = start;
    loop {
        if catalog::mask_ends_at(b, k) {
            return Some(true);
        }
        if k == 0 || start - k == 3 || !glue(b[k - 1]) {
            break;
        }
        k -= 1;
    }
    let mut k = end;
    loop {
        match catalog::mask_starts_at(b, k, fin) {
            Some(true) => return Some(true),
            None => return None,
            Some(false) => {}
        }
        match b.get(k) {
            Some(&c) if k - end < 3 && (glue(c) || c == b' ') => k += 1,
            _ => return Some(false),
        }
    }
}

fn next_boundary(s: &str, mut i: usize) -> usize {
    i += 1;
    while i < s.len() && !s.is_char_boundary(i) {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests;
