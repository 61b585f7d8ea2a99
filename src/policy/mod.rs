//! A compiled policy: configuration turned into matchers and limits, once per configuration.
//!
//! The filter's root context builds one [`Policy`] when Envoy (re)configures it and shares it with
//! every request; nothing here is rebuilt per request.

use crate::config::{Config, ConfigError, DirectionConfig};
use crate::detect::Engine;

/// Everything a request needs to be judged.
#[derive(Debug)]
pub struct Policy {
    /// The detection engine.
    pub engine: Engine,
    /// Prompt-side settings.
    pub request: DirectionConfig,
    /// Response-side settings.
    pub response: DirectionConfig,
}

impl Policy {
    /// Compiles a parsed configuration.
    pub fn new(cfg: &Config) -> Result<Policy, ConfigError> {
        Ok(Policy { engine: Engine::new(&cfg.detect)?, request: cfg.request.clone(), response: cfg.response.clone() })
    }

    /// Parses and compiles a configuration document in one step: what the filter does in
    /// `on_configure` and what `inferguard check-config` does.
    ///
    /// # Examples
    ///
    /// ```
    /// use inferguard::policy::Policy;
    ///
    /// assert!(Policy::from_json("").is_ok());
    /// let err = Policy::from_json(r#"{"respones": {}}"#).unwrap_err();
    /// assert!(err.to_string().contains("unknown field `respones`"));
    /// ```
    pub fn from_json(text: &str) -> Result<Policy, ConfigError> {
        Policy::new(&Config::parse(text)?)
    }

    /// A one-line description for logs and `check-config`.
    pub fn summary(&self) -> String {
        format!(
            "{}; request max_body_bytes={}, response max_body_bytes={}",
            self.engine.summary(),
            self.request.max_body_bytes.get(),
            self.response.max_body_bytes.get()
        )
    }
}
