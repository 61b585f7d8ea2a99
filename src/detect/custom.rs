//! Custom rules (regular expressions) and dictionaries (terms matched by Aho-Corasick): compiled
//! from the configuration, and run over the scanned text beside the catalog.

use aho_corasick::automaton::{Automaton, OverlappingState};
use aho_corasick::nfa::contiguous;
use aho_corasick::{Anchored, Input, MatchKind};

use super::build::{check_keep, check_name, DEFAULT_KEEP_LAST};
use super::config::{DictionaryConfig, RuleConfig};
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
    names: &mut Vec<Name>,
    taken: &mut Vec<String>,
) -> Result<Vec<Rule>, ConfigError> {
    let mut rules = Vec::new();
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
        rules.push(Rule { re, max_len, id: names.len() as u32 });
        names.push(Name::new(&r.name, r.action, keep));
    }
    Ok(rules)
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

/// Custom rule matches from `from` on. When more text may follow, matches that start in the
/// last `max_len` bytes are not final, so the wait starts there.
pub(super) fn rule_scan(
    r: &Rule,
    text: &str,
    from: usize,
    fin: bool,
    rank: u32,
    cands: &mut Vec<Cand>,
    wait: &mut usize,
) {
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

fn next_boundary(s: &str, mut i: usize) -> usize {
    i += 1;
    while i < s.len() && !s.is_char_boundary(i) {
        i += 1;
    }
    i
}
