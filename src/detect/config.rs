//! The `detect` section of the configuration.

use serde::Deserialize;
use std::collections::BTreeMap;

use super::Action;

/// What the engine looks for, and what it does with each kind of finding.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectConfig {
    /// Per built-in detector settings, keyed by detector name (`email`, `credit_card`, ...).
    pub detectors: BTreeMap<String, DetectorSetting>,
}

/// Settings for one built-in detector.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectorSetting {
    /// Turn the detector on or off; unset keeps its default.
    pub enabled: Option<bool>,
    /// What to do with what it finds; unset keeps its default (`mask`).
    pub action: Option<Action>,
}
