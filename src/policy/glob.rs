//! Globs for policy matches: `*` stands for any run of characters, nothing else is special.

/// A compiled glob.
#[derive(Debug, Clone)]
pub(crate) struct Glob {
    /// The literal pieces between the stars (ASCII-lowercased when `fold`).
    parts: Vec<String>,
    /// Compare ignoring ASCII case.
    fold: bool,
}

impl Glob {
    /// Compiles `pattern`; `fold` compares ignoring ASCII case (hosts, model names).
    pub(crate) fn new(pattern: &str, fold: bool) -> Glob {
        let parts = pattern.split('*').map(|p| if fold { p.to_ascii_lowercase() } else { p.to_owned() }).collect();
        Glob { parts, fold }
    }

    /// Does the whole of `text` match?
    pub(crate) fn matches(&self, text: &str) -> bool {
        let lowered;
        let text = if self.fold && text.bytes().any(|b| b.is_ascii_uppercase()) {
            lowered = text.to_ascii_lowercase();
            lowered.as_str()
        } else {
            text
        };
        let (first, rest) = self.parts.split_first().expect("split yields at least one part");
        let Some(mut text) = text.strip_prefix(first.as_str()) else { return false };
        let Some((last, middle)) = rest.split_last() else { return text.is_empty() };
        for m in middle {
            match text.find(m.as_str()) {
                Some(i) => text = &text[i + m.len()..],
                None => return false,
            }
        }
        text.len() >= last.len() && text.ends_with(last.as_str())
    }
}

/// Any of `globs` matches `text`.
pub(crate) fn any(globs: &[Glob], text: &str) -> bool {
    globs.iter().any(|g| g.matches(text))
}

/// Compiles a list.
pub(crate) fn compile(patterns: &[String], fold: bool) -> Vec<Glob> {
    patterns.iter().map(|p| Glob::new(p, fold)).collect()
}

#[cfg(test)]
mod tests {
    use super::Glob;

    #[test]
    fn stars_stand_for_any_run_and_nothing_else_is_special() {
        for (pattern, fold, text, want) in [
            ("gpt-4*", true, "gpt-4o", true),
            ("gpt-4*", true, "GPT-4O-mini", true),
            ("gpt-4*", true, "gpt-3.5", false),
            ("*-uncensored", true, "llama-3-uncensored", true),
            ("*", false, "", true),
            ("a*b*c", false, "abc", true),
            ("a*b*c", false, "aXbYc", true),
            ("a*b*c", false, "acb", false),
            ("ab*ba", false, "aba", false),
            ("*.example.com", true, "api.EXAMPLE.com", true),
            ("*.example.com", true, "example.com", false),
            ("*.example.com", true, "evil-example.com", false),
            ("spiffe://cluster.local/ns/apps/*", false, "spiffe://cluster.local/ns/apps/sa/chat-ui", true),
            ("spiffe://cluster.local/ns/apps/*", false, "spiffe://cluster.local/ns/APPS/sa/x", false),
            ("m.v1", false, "mXv1", false),
        ] {
            assert_eq!(Glob::new(pattern, fold).matches(text), want, "{pattern} {text}");
        }
    }
}
