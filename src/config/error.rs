use std::fmt;

/// A configuration the filter refuses, with the path of the offending field.
///
/// Displayed as `path: reason` (for example `response.max_body_bytes: expected a positive
/// integer, got 0`), the exact line the filter logs and `inferguard check-config` prints. The
/// message never echoes a whole configuration value, so secrets such as a hash key stay out of logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    path: String,
    reason: String,
}

impl ConfigError {
    /// An error about the field at `path` (dotted, with `[i]` for array elements; empty for the
    /// document itself).
    pub fn new(path: impl Into<String>, reason: impl fmt::Display) -> ConfigError {
        ConfigError { path: path.into(), reason: strip_position(&reason.to_string()).to_string() }
    }

    /// The document is not JSON: where in the text it broke is what helps.
    pub(crate) fn syntax(e: serde_json::Error) -> ConfigError {
        ConfigError { path: String::new(), reason: format!("invalid JSON: {e}") }
    }

    /// The same error seen from an enclosing field: `within("policies[2]")` turns
    /// `detect.rules[0].pattern` into `policies[2].detect.rules[0].pattern`.
    pub fn within(mut self, prefix: &str) -> ConfigError {
        self.path = if self.path.is_empty() { prefix.to_owned() } else { format!("{prefix}.{}", self.path) };
        self
    }

    /// The dotted path of the field, empty when the error is about the document as a whole.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Why the field was refused.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

/// serde_json appends " at line L column C"; the path already says where, and for a one-line
/// StringValue the column is noise.
fn strip_position(msg: &str) -> &str {
    match msg.rfind(" at line ") {
        Some(i) if msg[i..].contains(" column ") => &msg[..i],
        _ => msg,
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "configuration: {}", self.reason)
        } else {
            write!(f, "{}: {}", self.path, self.reason)
        }
    }
}

impl std::error::Error for ConfigError {}
