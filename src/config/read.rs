//! Reading typed settings out of a parsed JSON document, with the path of every field at hand.
//!
//! Each settings type reads itself from a [`Node`] (`DirectionConfig::read`, ...). This is
//! written out by hand rather than derived: the errors name the exact field and say what was
//! wanted, unknown fields are refused everywhere, and the filter carries one small reader
//! instead of a deserializer instantiated per type (a large share of the `.wasm` otherwise).

use serde_json::{Map, Value};

use super::ConfigError;

/// A value in the configuration document, and where it is (`detect.rules[2].pattern`).
pub struct Node<'a> {
    value: &'a Value,
    path: String,
}

impl<'a> Node<'a> {
    /// The document itself.
    pub fn root(value: &'a Value) -> Node<'a> {
        Node { value, path: String::new() }
    }

    /// An error about this node.
    pub fn error(&self, reason: impl std::fmt::Display) -> ConfigError {
        ConfigError::new(self.path.as_str(), reason)
    }

    fn invalid_type(&self, expected: &str) -> ConfigError {
        self.error(format_args!("invalid type: {}, expected {expected}", describe(self.value)))
    }

    fn child(&self, key: &str) -> String {
        key_path(&self.path, key)
    }

    /// This node as an object whose keys must all be among `fields`.
    pub fn object(&self, fields: &'static [&'static str]) -> Result<Object<'a>, ConfigError> {
        let map = self.value.as_object().ok_or_else(|| self.invalid_type("an object"))?;
        if let Some(k) = map.keys().find(|k| !fields.contains(&k.as_str())) {
            return Err(ConfigError::new(self.child(k), format_args!("unknown field `{k}`, {}", one_of(fields))));
        }
        Ok(Object { map, node: Node { value: self.value, path: self.path.clone() } })
    }

    /// This node as an object with keys of the user's choosing (a map).
    pub fn map(&self) -> Result<Object<'a>, ConfigError> {
        let map = self.value.as_object().ok_or_else(|| self.invalid_type("a map"))?;
        Ok(Object { map, node: Node { value: self.value, path: self.path.clone() } })
    }

    /// Is this JSON `null`?
    pub fn is_null(&self) -> bool {
        self.value.is_null()
    }

    pub fn bool(&self) -> Result<bool, ConfigError> {
        self.value.as_bool().ok_or_else(|| self.invalid_type("a boolean"))
    }

    pub fn str(&self) -> Result<&'a str, ConfigError> {
        self.value.as_str().ok_or_else(|| self.invalid_type("a string"))
    }

    /// A finite number.
    pub fn number(&self) -> Result<f64, ConfigError> {
        self.value.as_f64().filter(|n| n.is_finite()).ok_or_else(|| self.invalid_type("a number"))
    }

    /// A non-negative integer no larger than `max`.
    pub fn uint(&self, max: u64) -> Result<u64, ConfigError> {
        match self.value.as_u64() {
            Some(n) if n <= max => Ok(n),
            _ => Err(self.invalid_type(&format!("an integer from 0 to {max}"))),
        }
    }

    /// An integer greater than zero.
    pub fn positive(&self) -> Result<u64, ConfigError> {
        match self.value {
            Value::Number(n) => match n.as_u64() {
                Some(0) => Err(self.error("expected a positive integer, got 0")),
                Some(n) => Ok(n),
                None => Err(self.error(format_args!("expected a positive integer, got {n}"))),
            },
            _ => Err(self.invalid_type("a positive integer")),
        }
    }

    /// One of the names in `choices`, as its value.
    pub fn choice<T: Copy>(&self, choices: &[(&'static str, T)]) -> Result<T, ConfigError> {
        let s = self.str()?;
        match choices.iter().find(|(name, _)| *name == s) {
            Some((_, v)) => Ok(*v),
            None => {
                let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
                Err(self.error(format_args!("unknown variant `{s}`, {}", one_of(&names))))
            }
        }
    }

    /// This node as an array, each element read by `each`.
    pub fn array<T>(&self, mut each: impl FnMut(Node<'a>) -> Result<T, ConfigError>) -> Result<Vec<T>, ConfigError> {
        let items = self.value.as_array().ok_or_else(|| self.invalid_type("a sequence"))?;
        items.iter().enumerate().map(|(i, value)| each(Node { value, path: index_path(&self.path, i) })).collect()
    }

    /// An array of strings.
    pub fn strings(&self) -> Result<Vec<String>, ConfigError> {
        self.array(|n| n.str().map(str::to_owned))
    }
}

/// An object being read field by field.
pub struct Object<'a> {
    map: &'a Map<String, Value>,
    node: Node<'a>,
}

impl<'a> Object<'a> {
    /// The field `key`, if present.
    pub fn get(&self, key: &str) -> Option<Node<'a>> {
        let value = self.map.get(key)?;
        Some(Node { value, path: self.node.child(key) })
    }

    /// The field `key`, which must be present.
    pub fn required(&self, key: &str) -> Result<Node<'a>, ConfigError> {
        self.get(key).ok_or_else(|| self.node.error(format_args!("missing field `{key}`")))
    }

    /// Reads the field `key` with `read` if present.
    pub fn read<T>(
        &self,
        key: &str,
        read: impl FnOnce(&Node<'a>) -> Result<T, ConfigError>,
    ) -> Result<Option<T>, ConfigError> {
        self.get(key).map(|n| read(&n)).transpose()
    }

    /// Every entry, in key order, as nodes.
    pub fn entries(&self) -> impl Iterator<Item = (&'a str, Node<'a>)> + '_ {
        self.map.iter().map(|(k, value)| (k.as_str(), Node { value, path: self.node.child(k) }))
    }
}

/// `parent` extended by the member `key`: `detect.rules`, or `detect` at the top.
// Configuration is read once: one out-of-line copy is worth more than speed here.
#[inline(never)]
fn key_path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// `parent` extended by the array element `i`: `detect.rules[2]`.
#[inline(never)]
fn index_path(parent: &str, i: usize) -> String {
    format!("{parent}[{i}]")
}

/// Refuses a document (already parsed as JSON) that gives a key twice in one object: which of
/// the two a reader honours is a guess, and a reviewer who sees the first may not see the second.
pub(crate) fn refuse_duplicate_keys(text: &str) -> Result<(), ConfigError> {
    use crate::wire::json::{Seg, Tape};

    // The document was already read by serde; an error here cannot happen.
    let Ok(mut tape) = Tape::read(text.as_bytes()) else { return Ok(()) };
    tape.mark_shadowed();
    // The first value shadowed by a later one of the same key.
    let Some(first) = tape.nodes.iter().position(|n| n.shadowed) else { return Ok(()) };
    let mut path = Vec::new();
    tape.path_into(first, &mut path);
    let mut at = String::new();
    for s in &path {
        match s {
            Seg::Key(k) => at = key_path(&at, k),
            Seg::Index(i) => at = index_path(&at, *i),
        }
    }
    let key = tape.nodes[first].key.as_deref().unwrap_or_default();
    Err(ConfigError::new(at, format_args!("duplicate field `{key}`")))
}

/// How serde words the list of what was allowed.
fn one_of(names: &[&str]) -> String {
    match names {
        [] => "there are no fields".to_owned(),
        [one] => format!("expected `{one}`"),
        _ => {
            let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
            format!("expected one of {}", quoted.join(", "))
        }
    }
}

/// What a value is, for a type error. Strings are cut short, so a misplaced secret is not
/// copied whole into a log line.
fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => format!("boolean `{b}`"),
        Value::Number(n) if n.is_f64() => format!("floating point `{n}`"),
        Value::Number(n) => format!("integer `{n}`"),
        Value::String(s) if s.chars().count() > 24 => {
            format!("string \"{}...\"", s.chars().take(12).collect::<String>())
        }
        Value::String(s) => format!("string {s:?}"),
        Value::Array(_) => "sequence".to_owned(),
        Value::Object(_) => "map".to_owned(),
    }
}
