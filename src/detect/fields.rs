//! JSON field rules: the whole value of a key such as `password` or `dbPassword` is one finding,
//! whatever it holds.

use super::build::{check_keep, DEFAULT_KEEP_LAST};
use super::config::FieldRulesConfig;
use super::{Action, Engine, Finding, Name, Redaction};
use crate::config::ConfigError;

#[derive(Debug, Clone)]
pub(super) struct FieldKey {
    /// Lower-case, separators removed.
    norm: String,
    id: u32,
}

/// Checks `detect.field_rules`, naming each key `field:<key>`.
pub(super) fn compile(cfg: &FieldRulesConfig, names: &mut Vec<Name>) -> Result<Vec<FieldKey>, ConfigError> {
    let mut fields = Vec::new();
    let keep = match cfg.keep_last {
        Some(k) => check_keep("detect.field_rules.keep_last", k)?,
        None => DEFAULT_KEEP_LAST,
    };
    for (i, k) in cfg.keys.iter().enumerate() {
        let norm = norm_key(k);
        if norm.is_empty() {
            return Err(ConfigError::new(format!("detect.field_rules.keys[{i}]"), "must contain a letter or digit"));
        }
        if fields.iter().any(|f: &FieldKey| f.norm == norm) {
            continue;
        }
        let label = format!("field:{}", k.to_ascii_lowercase());
        fields.push(FieldKey { norm, id: names.len() as u32 });
        names.push(Name::new(&label, cfg.action, keep));
    }
    Ok(fields)
}

impl Engine {
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
