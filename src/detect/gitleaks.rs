//! Converts a gitleaks configuration (TOML) into inferguard rules: what
//! `inferguard import-gitleaks FILE.toml` runs. Native only: the filter reads the JSON fragment
//! this writes, never TOML, so the `.wasm` carries no TOML parser.
//!
//! Each `[[rules]]` entry becomes one `detect.rules` entry: `id` is its name, `regex` its
//! pattern, `secretGroup`, `entropy` and `keywords` carry over as they are, and each
//! `[[rules.allowlists]]` keeps its `regexes`, `stopwords`, `regexTarget` and `condition`. The
//! global `[allowlist]` becomes `detect.rule_allowlist`. What traffic has no use for (`path`,
//! `paths`, `commits`) is dropped; a rule is not carried when its meaning would change: a
//! pattern or allowlist expression that `regex-lite` cannot compile (Unicode classes such as
//! `\p{L}`), or a rule that matches file paths only.
//!
//! # Examples
//!
//! ```
//! let toml = r#"
//! [[rules]]
//! id = "demo-key"
//! regex = '''demo_([a-z0-9]{16})'''
//! secretGroup = 1
//! keywords = ["demo_"]
//! "#;
//! let import = inferguard::detect::gitleaks::import(toml).unwrap();
//! assert_eq!(import.carried, ["demo-key"]);
//! assert!(import.skipped.is_empty());
//! ```

use serde_json::{json, Map, Value};
use toml::Table;

/// What imported rule names start with, so that they never take a built-in detector's name
/// (gitleaks has a `jwt` rule too): `gitleaks.github-pat`, masked `[REDACTED:GITLEAKS.GITHUB-PAT]`.
pub const PREFIX: &str = "gitleaks.";

/// The longest match an imported rule is held back for in a stream.
const IMPORTED_MAX_LEN: u64 = 512;

/// The outcome of [`import`].
#[derive(Debug, Clone)]
pub struct Import {
    /// The configuration fragment: `{"detect": {"rules": [...], "rule_allowlist": {...}}}`.
    pub fragment: Value,
    /// The ids of the rules carried, in order.
    pub carried: Vec<String>,
    /// The rules not carried: id (or `#index` when it has none) and why.
    pub skipped: Vec<(String, String)>,
}

/// Why a gitleaks configuration could not be read at all.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ImportError {
    /// The text is not TOML.
    Toml(String),
    /// A field has the wrong type (`rules` not an array of tables, ...).
    Shape(String),
}

impl std::fmt::Display for ImportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ImportError::Toml(e) => write!(f, "not TOML: {e}"),
            ImportError::Shape(e) => write!(f, "not a gitleaks configuration: {e}"),
        }
    }
}

impl std::error::Error for ImportError {}

/// Converts the gitleaks configuration `text`.
pub fn import(text: &str) -> Result<Import, ImportError> {
    let doc: Table = text.parse().map_err(|e: toml::de::Error| ImportError::Toml(e.message().to_string()))?;
    let mut rules = Vec::new();
    let mut carried = Vec::new();
    let mut skipped = Vec::new();
    let list = match doc.get("rules") {
        None => &Vec::new(),
        Some(toml::Value::Array(a)) => a,
        Some(_) => return Err(ImportError::Shape("`rules` is not an array of tables".into())),
    };
    for (i, r) in list.iter().enumerate() {
        let Some(r) = r.as_table() else {
            return Err(ImportError::Shape(format!("rules[{i}] is not a table")));
        };
        let id = r.get("id").and_then(|v| v.as_str()).map_or_else(|| format!("#{i}"), str::to_owned);
        match rule(r, &id) {
            Ok(v) => {
                rules.push(v);
                carried.push(id);
            }
            Err(why) => skipped.push((id, why)),
        }
    }
    // At the same span the earlier rule names the finding: the generic rules (`generic-api-key`)
    // go last, so a value a vendor's own rule knows is named after that vendor.
    let (generic, mut rules): (Vec<Value>, Vec<Value>) = rules.into_iter().partition(|r| {
        r["name"].as_str().is_some_and(|n| n.strip_prefix(PREFIX).is_some_and(|id| id.starts_with("generic")))
    });
    rules.extend(generic);
    let mut detect = Map::new();
    detect.insert("rules".into(), Value::Array(rules));
    let global = doc.get("allowlist").or_else(|| doc.get("allowlists").and_then(|a| a.as_array()?.first()));
    if let Some(g) = global.and_then(|g| g.as_table()) {
        match allowlist(g) {
            Ok(Some(a)) => {
                detect.insert("rule_allowlist".into(), a);
            }
            Ok(None) => {}
            Err(why) => skipped.push(("[allowlist]".into(), why)),
        }
    }
    Ok(Import { fragment: json!({ "detect": detect }), carried, skipped })
}

/// One rule as an inferguard rule, or why it cannot be carried.
fn rule(r: &Table, id: &str) -> Result<Value, String> {
    if id.is_empty()
        || id.len() + PREFIX.len() > 64
        || !id.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'))
    {
        return Err("its id is not 1 to 64 ASCII letters, digits, '_', '-' or '.'".into());
    }
    let Some(pattern) = r.get("regex").and_then(|v| v.as_str()) else {
        return Err("no regex: it matches file paths only, and traffic has none".into());
    };
    let pattern = go_braces(pattern);
    let re = regex_lite::Regex::new(&pattern).map_err(|e| format!("regex: {}", first_line(&e.to_string())))?;
    let mut out = Map::new();
    out.insert("name".into(), json!(format!("{PREFIX}{id}")));
    out.insert("pattern".into(), json!(pattern));
    out.insert("max_len".into(), json!(IMPORTED_MAX_LEN));
    if let Some(g) = r.get("secretGroup").and_then(|v| v.as_integer()) {
        if g < 0 || g as usize >= re.captures_len() {
            return Err(format!("secretGroup {g}: the regex has no such group"));
        }
        if g > 0 {
            out.insert("secret_group".into(), json!(g));
        }
    }
    if let Some(e) = r.get("entropy").and_then(|v| v.as_float().or_else(|| v.as_integer().map(|i| i as f64))) {
        out.insert("entropy".into(), json!(e));
    }
    if let Some(k) = r.get("keywords").and_then(|v| v.as_array()) {
        let words: Vec<&str> = k.iter().filter_map(|w| w.as_str()).filter(|w| !w.is_empty()).collect();
        if words.iter().any(|w| !w.is_ascii()) {
            return Err("a keyword is not ASCII".into());
        }
        if !words.is_empty() {
            out.insert("keywords".into(), json!(words));
        }
    }
    let mut lists = Vec::new();
    let old_style = r.get("allowlist").map(|a| std::slice::from_ref(a).to_vec());
    let new_style = r.get("allowlists").and_then(|a| a.as_array().cloned());
    for a in new_style.into_iter().chain(old_style).flatten() {
        let Some(a) = a.as_table() else { continue };
        if let Some(v) = allowlist(a)? {
            lists.push(v);
        }
    }
    if !lists.is_empty() {
        out.insert("allowlists".into(), Value::Array(lists));
    }
    Ok(Value::Object(out))
}

/// An allowlist as inferguard reads it, `None` when nothing of it applies to traffic (only
/// `paths` or `commits`, or an AND with them, which traffic can never satisfy).
fn allowlist(a: &Table) -> Result<Option<Value>, String> {
    let strings = |k: &str| -> Vec<String> {
        a.get(k)
            .and_then(|v| v.as_array())
            .map_or_else(Vec::new, |v| v.iter().filter_map(|s| s.as_str()).map(str::to_owned).collect())
    };
    let regexes: Vec<String> = strings("regexes").iter().map(|p| go_braces(p)).collect();
    let stopwords = strings("stopwords");
    let all = a.get("condition").and_then(|v| v.as_str()).is_some_and(|c| c.eq_ignore_ascii_case("and"));
    let file_only = !strings("paths").is_empty() || !strings("commits").is_empty();
    if (regexes.is_empty() && stopwords.is_empty()) || (all && file_only) {
        return Ok(None);
    }
    for p in &regexes {
        regex_lite::Regex::new(p).map_err(|e| format!("allowlist regex: {}", first_line(&e.to_string())))?;
    }
    let mut out = Map::new();
    if !regexes.is_empty() {
        out.insert("regexes".into(), json!(regexes));
    }
    if !stopwords.is_empty() {
        out.insert("stopwords".into(), json!(stopwords));
    }
    // gitleaks' `line` target is read as the match: a stream decides on the match's bytes.
    if matches!(a.get("regexTarget").and_then(|v| v.as_str()), Some("match" | "line")) {
        out.insert("target".into(), json!("match"));
    }
    if all {
        out.insert("condition".into(), json!("and"));
    }
    Ok(Some(Value::Object(out)))
}

fn first_line(s: &str) -> &str {
    s.lines().find(|l| !l.trim().is_empty()).unwrap_or(s).trim()
}

/// `p` with the braces Go's RE2 reads as literals escaped for `regex-lite`, which refuses them: a
/// `{` that does not open a repetition (`{n}`, `{n,}`, `{n,m}`) after something to repeat, and
/// a `}` that closes none (`^\$(?:\d+|{\d+})$`, `^\{\d{0,2}}$`).
fn go_braces(p: &str) -> String {
    let b = p.as_bytes();
    let mut out = String::with_capacity(p.len() + 4);
    let mut i = 0;
    let mut in_class = false;
    // Whether the last thing written can be repeated.
    let mut atom = false;
    while i < b.len() {
        let c = b[i];
        match c {
            b'\\' => {
                let n = p[i + 1..].chars().next().map_or(0, char::len_utf8);
                out.push_str(&p[i..i + 1 + n]);
                i += 1 + n;
                atom = true;
                continue;
            }
            b'[' if !in_class => {
                in_class = true;
                // A `]` right after `[` or `[^` is a literal member.
                let mut j = i + 1;
                if b.get(j) == Some(&b'^') {
                    j += 1;
                }
                if b.get(j) == Some(&b']') {
                    j += 1;
                }
                out.push_str(&p[i..j]);
                i = j;
                continue;
            }
            b']' if in_class => {
                in_class = false;
                atom = true;
            }
            b'{' if !in_class => {
                let close = b[i..].iter().position(|&x| x == b'}').map(|k| i + k);
                let counted = close.is_some_and(|e| {
                    let inner = &p[i + 1..e];
                    let mut parts = inner.splitn(2, ',');
                    let lo = parts.next().unwrap_or("");
                    let hi = parts.next();
                    !lo.is_empty()
                        && lo.bytes().all(|d| d.is_ascii_digit())
                        && hi.map_or(true, |h| h.bytes().all(|d| d.is_ascii_digit()))
                });
                match close {
                    Some(e) if counted && atom => {
                        out.push_str(&p[i..=e]);
                        i = e + 1;
                        // `{n}?`: the lazy mark stays with it.
                        atom = false;
                        continue;
                    }
                    _ => {
                        out.push_str("\\{");
                        i += 1;
                        atom = true;
                        continue;
                    }
                }
            }
            b'}' if !in_class => {
                out.push_str("\\}");
                i += 1;
                atom = true;
                continue;
            }
            b'(' | b'|' if !in_class => atom = false,
            b'*' | b'+' | b'?' if !in_class => {}
            _ if !in_class => atom = true,
            _ => {}
        }
        let n = p[i..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&p[i..i + n]);
        i += n;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::go_braces;

    #[test]
    fn braces_go_reads_as_literals_are_escaped() {
        for (go, lite) in [
            (r"a{2,3}b{4}", r"a{2,3}b{4}"),
            (r"^\$(?:\d+|{\d+})$", r"^\$(?:\d+|\{\d+\})$"),
            (r"^\{\d{0,2}}$", r"^\{\d{0,2}\}$"),
            (r"^\{\{[ \t]*[\w ().|]+[ \t]*}}$", r"^\{\{[ \t]*[\w ().|]+[ \t]*\}\}$"),
            (r"[{}]x{1}", r"[{}]x{1}"),
            (r"{x}", r"\{x\}"),
        ] {
            assert_eq!(go_braces(go), lite, "{go}");
            assert!(regex_lite::Regex::new(&go_braces(go)).is_ok(), "{go}");
        }
    }
}
