//! Rendering: what replaces each finding (`[REDACTED:EMAIL]`, `****1111`, `[EMAIL:3f2a9c1b]`).

use std::sync::Arc;

use super::build::DEFAULT_KEEP_LAST;
use super::{normalize, Action, Engine, Finding};

impl Engine {
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
    /// let text = "key AKIAIOSFODNN7Q2MZ9VK and more";
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
