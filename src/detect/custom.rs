//! Custom rules (regular expressions) and dictionaries (terms matched by Aho-Corasick): compiled
//! from the configuration, and run over the scanned text beside the catalog.

use aho_corasick::automaton::{Automaton, OverlappingState};
use aho_corasick::nfa::contiguous;
use aho_corasick::{Anchored, Input, MatchKind};

use super::build::{check_keep, check_name, DEFAULT_KEEP_LAST};
use super::config::{DictionaryConfig, RuleAllowlistConfig, RuleConfig};
use super::{normalize, Cand, Name};
use crate::config::ConfigError;

const DEFAULT_RULE_MAX_LEN: usize = 128;
const MAX_RULE_MAX_LEN: usize = 4096;
const MAX_TERM_LEN: usize = 256;

#[derive(Debug, Clone)]
pub(super) struct Rule {
    pub(super) re: regex_lite::Regex,
    pub(super) max_len: usize,
    pub(super) id: u32,
    /// Lower-case; a match must hold one.
    keywords: Vec<Box<[u8]>>,
    secret_group: Option<usize>,
    entropy: Option<f64>,
    allow: Vec<RuleAllow>,
}

/// The custom rules, the automaton over their keywords, and the allowlist they share.
#[derive(Debug, Clone, Default)]
pub(super) struct RuleSet {
    pub(super) list: Vec<Rule>,
    keywords: Option<Keywords>,
    shared_allow: RuleAllow,
}

impl RuleSet {
    pub(super) fn len(&self) -> usize {
        self.list.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

/// Every rule's keywords in one automaton; `rules[pattern]` are the rules a keyword announces.
#[derive(Debug, Clone)]
struct Keywords {
    ac: aho_corasick::AhoCorasick,
    rules: Vec<Vec<u32>>,
}

/// A compiled rule allowlist.
#[derive(Debug, Clone, Default)]
struct RuleAllow {
    regexes: Vec<regex_lite::Regex>,
    stopwords: Vec<Box<[u8]>>,
    target_match: bool,
    all: bool,
}

#[derive(Debug, Clone)]
pub(super) struct Dict {
    pub(super) nfa: contiguous::NFA,
    pub(super) whole_word: bool,
    pub(super) max_len: usize,
    pub(super) terms: usize,
    pub(super) id: u32,
}

/// Checks and compiles `detect.rules`, naming each after the names already `taken`.
pub(super) fn compile_rules(
    cfg: &[RuleConfig],
    shared: &RuleAllowlistConfig,
    names: &mut Vec<Name>,
    taken: &mut Vec<String>,
) -> Result<RuleSet, ConfigError> {
    let mut rules = Vec::new();
    let mut words: Vec<Vec<u8>> = Vec::new();
    let mut word_rules: Vec<Vec<u32>> = Vec::new();
    for (i, r) in cfg.iter().enumerate() {
        let path = format!("detect.rules[{i}]");
        check_name(&format!("{path}.name"), &r.name, taken)?;
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
        if let Some(g) = r.secret_group {
            if g > re.captures_len().saturating_sub(1) {
                return Err(ConfigError::new(format!("{path}.secret_group"), format!("the pattern has no group {g}")));
            }
        }
        let mut keywords = Vec::new();
        for (k, w) in r.keywords.iter().enumerate() {
            if w.is_empty() || !w.is_ascii() {
                return Err(ConfigError::new(format!("{path}.keywords[{k}]"), "must be non-empty ASCII"));
            }
            let w = w.to_ascii_lowercase().into_bytes();
            match words.iter().position(|x| *x == w) {
                Some(p) => word_rules[p].push(rules.len() as u32),
                None => {
                    words.push(w.clone());
                    word_rules.push(vec![rules.len() as u32]);
                }
            }
            keywords.push(w.into_boxed_slice());
        }
        let allow = r
            .allowlists
            .iter()
            .enumerate()
            .map(|(a, c)| RuleAllow::compile(c, &format!("{path}.allowlists[{a}]")))
            .collect::<Result<Vec<_>, _>>()?;
        rules.push(Rule {
            re,
            max_len,
            id: names.len() as u32,
            keywords,
            secret_group: r.secret_group,
            entropy: r.entropy,
            allow,
        });
        names.push(Name::new(&r.name, r.action, keep));
    }
    let keywords = if words.is_empty() {
        None
    } else {
        let ac = aho_corasick::AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            .build(&words)
            .map_err(|e| ConfigError::new("detect.rules", e))?;
        Some(Keywords { ac, rules: word_rules })
    };
    let shared_allow = RuleAllow::compile(shared, "detect.rule_allowlist")?;
    Ok(RuleSet { list: rules, keywords, shared_allow })
}

/// Checks `detect.dictionaries` and builds their automata.
pub(super) fn compile_dicts(
    cfg: &[DictionaryConfig],
    names: &mut Vec<Name>,
    taken: &mut Vec<String>,
) -> Result<Vec<Dict>, ConfigError> {
    let mut dicts = Vec::new();
    for (i, d) in cfg.iter().enumerate() {
        let path = format!("detect.dictionaries[{i}]");
        check_name(&format!("{path}.name"), &d.name, taken)?;
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
    Ok(dicts)
}

fn is_word_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Dictionary matches in `text[from..]`, whole-word filtered, plus the wait for a term that may
/// be completing at the end.
pub(super) fn dict_scan(
    d: &Dict,
    text: &str,
    from: usize,
    fin: bool,
    rank: u32,
    cands: &mut Vec<Cand>,
    wait: &mut usize,
) {
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

/// Every custom rule's matches from `from` on. Rules with keywords run only when one of their
/// keywords is in the text, found by one automaton over all keywords; a match must hold one of
/// them itself, so a rule decides on the bytes of its match alone, as streams need. When more
/// text may follow, matches that start in the last `max_len` bytes are not final, so the wait
/// starts there (for a rule not run too: its keyword may be arriving).
pub(super) fn scan_rules(rules: &RuleSet, text: &str, from: usize, fin: bool, cands: &mut Vec<Cand>, wait: &mut usize) {
    // Where each keyword rule's keywords are: allocated only when some rule has keywords.
    let mut seen: Vec<(u32, usize, usize)> = Vec::new();
    if let Some(kw) = &rules.keywords {
        for m in kw.ac.find_overlapping_iter(&text.as_bytes()[from..]) {
            for &r in &kw.rules[m.pattern().as_usize()] {
                seen.push((r, from + m.start(), from + m.end()));
            }
        }
        seen.sort_unstable();
    }
    for (k, r) in rules.list.iter().enumerate() {
        if r.keywords.is_empty() {
            rule_scan(r, &rules.shared_allow, text, from..text.len(), k as u32, cands);
        } else {
            // A match holds a keyword and is at most `max_len` long, so it lies within
            // `max_len` of one: the rule reads only those windows of the text.
            let lo = seen.partition_point(|o| o.0 < k as u32);
            let hi = seen.partition_point(|o| o.0 <= k as u32);
            let mut window: Option<(usize, usize)> = None;
            for &(_, ks, ke) in &seen[lo..hi] {
                let (ws, we) = (ke.saturating_sub(r.max_len).max(from), (ks + r.max_len).min(text.len()));
                window = match window {
                    Some((s, e)) if ws <= e => Some((s, e.max(we))),
                    Some((s, e)) => {
                        rule_scan(r, &rules.shared_allow, text, s..e, k as u32, cands);
                        Some((ws, we))
                    }
                    None => Some((ws, we)),
                };
            }
            if let Some((s, e)) = window {
                rule_scan(r, &rules.shared_allow, text, s..e, k as u32, cands);
            }
        }
        if !fin {
            *wait = (*wait).min(text.len().saturating_sub(r.max_len).max(from));
        }
    }
}

/// The rule's matches that start in `within` (byte offsets on char boundaries or not: moved to
/// them), read on the text up to the window's end. A match that reaches that end may have been
/// cut by it (a greedy repetition, `$`, `\b`): it is read again on the whole text.
fn rule_scan(
    r: &Rule,
    shared: &RuleAllow,
    text: &str,
    within: std::ops::Range<usize>,
    rank: u32,
    cands: &mut Vec<Cand>,
) {
    let mut at = floor(text, within.start);
    let end = ceil(text, within.end);
    let hay = &text[..end];
    let plain = r.keywords.is_empty() && r.secret_group.is_none() && r.entropy.is_none() && r.allow.is_empty();
    while at <= end {
        let (m, secret) = if plain {
            let Some(m) = r.re.find_at(text, at) else { break };
            (m.range(), m.range())
        } else {
            let Some(mut c) = r.re.captures_at(hay, at) else { break };
            if end < text.len() && c.get(0).is_some_and(|m| m.end() == end) {
                let start = c.get(0).map_or(at, |m| m.start());
                match r.re.captures_at(text, start) {
                    Some(full) => c = full,
                    None => break,
                }
            }
            let Some(m) = c.get(0) else { break };
            let group = match r.secret_group {
                Some(g) => c.get(g),
                None => c.iter().skip(1).flatten().find(|g| !g.is_empty()).or(Some(m)),
            };
            (m.range(), group.map_or(m.range(), |g| g.range()))
        };
        at = if m.end > m.start { m.end } else { next_boundary(text, m.end) };
        if m.end - m.start > r.max_len || secret.start >= secret.end {
            continue;
        }
        if !plain {
            let (whole, value) = (&text[m.clone()], &text[secret.clone()]);
            if !r.keywords.is_empty() && !r.keywords.iter().any(|k| contains_ci(whole.as_bytes(), k)) {
                continue;
            }
            if r.entropy.is_some_and(|min| entropy(value.as_bytes()) < min) {
                continue;
            }
            if r.allow.iter().chain(std::iter::once(shared)).any(|a| a.allows(whole, value)) {
                continue;
            }
        }
        cands.push(Cand { start: secret.start, end: secret.end, id: r.id, tier: 1, hidden: false, rank, det: None });
    }
}

/// Shannon entropy of `v` in bits per byte, as gitleaks measures a secret.
fn entropy(v: &[u8]) -> f64 {
    let mut counts = [0u32; 256];
    for &c in v {
        counts[usize::from(c)] += 1;
    }
    let n = v.len() as f64;
    counts.iter().filter(|&&c| c > 0).map(|&c| f64::from(c) / n).map(|p| -p * p.log2()).sum()
}

/// Whether `hay` contains `needle` (lower-case ASCII), ignoring ASCII case.
fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle))
}

impl RuleAllow {
    fn is_empty(&self) -> bool {
        self.regexes.is_empty() && self.stopwords.is_empty()
    }

    /// Whether the match `whole` with value `value` is left alone.
    fn allows(&self, whole: &str, value: &str) -> bool {
        if self.is_empty() {
            return false;
        }
        let target = if self.target_match { whole } else { value };
        let by_regex = (!self.regexes.is_empty()).then(|| self.regexes.iter().any(|re| re.is_match(target)));
        let by_word =
            (!self.stopwords.is_empty()).then(|| self.stopwords.iter().any(|w| contains_ci(value.as_bytes(), w)));
        let said = [by_regex, by_word].into_iter().flatten();
        if self.all {
            said.clone().count() > 0 && said.into_iter().all(|x| x)
        } else {
            said.into_iter().any(|x| x)
        }
    }

    /// Checks and compiles an allowlist at `path`.
    fn compile(cfg: &RuleAllowlistConfig, path: &str) -> Result<RuleAllow, ConfigError> {
        let mut regexes = Vec::new();
        for (i, p) in cfg.regexes.iter().enumerate() {
            regexes.push(
                regex_lite::Regex::new(p)
                    .map_err(|e| ConfigError::new(format!("{path}.regexes[{i}]"), format!("invalid regex: {e}")))?,
            );
        }
        Ok(RuleAllow {
            regexes,
            stopwords: cfg.stopwords.iter().map(|w| w.to_ascii_lowercase().into_bytes().into_boxed_slice()).collect(),
            target_match: cfg.target_match,
            all: cfg.all,
        })
    }
}

fn next_boundary(s: &str, mut i: usize) -> usize {
    i += 1;
    while i < s.len() && !s.is_char_boundary(i) {
        i += 1;
    }
    i
}

fn floor(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i += 1;
    }
    i
}
