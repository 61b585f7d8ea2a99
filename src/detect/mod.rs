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
//!   length and mod-97, a JWT header that decodes to JSON with `alg`, ...): see `catalog/`,
//!   one file per anchor family. Placeholders in a detector's format (`ghp_xxxx...`, AWS's
//!   `...EXAMPLE` keys) are reported as `placeholder` with the action `report`.
//! - Custom rules (regular expressions, optionally gated by keywords, with a secret group, an
//!   entropy threshold and allowlists, as gitleaks writes them: `custom.rs`, and
//!   [`gitleaks`] converts gitleaks' TOML), dictionaries of terms (Aho-Corasick,
//!   case-insensitive and whole-word by default), and JSON field rules
//!   ([`Engine::redact_field`], `fields.rs`).
//!
//! `build.rs` compiles a configuration, `allow.rs` holds the allowlist, `render.rs` what replaces
//! a finding.
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

mod allow;
mod build;
mod catalog;
pub mod config;
mod custom;
mod fields;
#[cfg(not(target_arch = "wasm32"))]
pub mod gitleaks;
mod normalize;
mod render;
pub(crate) mod sha256;
mod validate;

use std::sync::Arc;

use allow::Allow;
use catalog::{Det, Hay, Sink};
pub use config::DetectConfig;
use custom::{dict_scan, scan_rules, Dict, RuleSet};
use fields::FieldKey;
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
    rules: RuleSet,
    dicts: Vec<Dict>,
    allow: Allow,
    fields: Vec<FieldKey>,
    hmac: sha256::HmacKey,
    hash_key_configured: bool,
    max_left: usize,
    /// The name placeholders are reported under (`placeholder`, action `report`), unless the
    /// configuration has them found as values (`"placeholders": "redact"`).
    placeholder: Option<u32>,
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

impl Engine {
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
        let mut sink = Sink::new(self.on, self.placeholder.is_some());
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
                    id: match (h.placeholder, self.placeholder) {
                        (true, Some(id)) => id,
                        _ => h.det as u32,
                    },
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
        if !self.rules.is_empty() {
            scan_rules(&self.rules, hay_text, from_n, fin, &mut cands, &mut wait);
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
                        if *brackets.get_or_insert_with(|| crate::swar::contains_either(b, b'[', b']')) {
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
                *sink = Sink::new(self.on, self.placeholder.is_some());
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
        *sink = Sink::new(self.on, self.placeholder.is_some());
        self.run_catalog(text, from, fin, sink)
    }
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

#[cfg(test)]
mod tests;
