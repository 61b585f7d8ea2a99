//! What the engine scans: the text with look-alike and invisible characters folded away.
//!
//! Models (and people trying to get values past a filter) write `４１１１ １１１１ …` in fullwidth
//! digits, put a zero-width space inside a token, or separate digit groups with no-break spaces.
//! The detectors only understand ASCII, so before scanning, text that contains any such character
//! is copied into a normalised form:
//!
//! - fullwidth forms U+FF01..U+FF5E become their ASCII counterparts (`４` → `4`, `＠` → `@`);
//! - the ideographic space and the Unicode spaces U+00A0, U+2002..U+200A, U+202F become `' '`;
//! - the hyphens U+2010..U+2013 and the minus sign U+2212 become `'-'`;
//! - invisible characters (U+200B..U+200D, U+2060..U+2064, U+FEFF, U+00AD, U+180E) are dropped.
//!
//! Every normalised byte remembers the offset of the original character it came from, so a finding
//! in the normalised text maps back to the original bytes, zero-width characters inside the value
//! included. Text without any of these characters (nearly all of it) is scanned in place.
//!
//! Normalisation works character by character, so the normalised form of a prefix is a prefix of
//! the normalised form of the whole: the streaming contract survives it.

use std::borrow::Cow;

/// How one original character is scanned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fold {
    /// Scanned as this ASCII byte.
    Ascii(u8),
    /// Not scanned at all (invisible).
    Drop,
}

/// If the character starting at `b[i]` is folded, its length in bytes and how it folds.
///
/// Only looks at lead bytes 0xC2, 0xE1, 0xE2, 0xE3 and 0xEF; anything else returns `None` at
/// once, which keeps the check cheap in the scanner's inner loop.
#[inline]
pub(crate) fn fold_at(b: &[u8], i: usize) -> Option<(usize, Fold)> {
    let b0 = *b.get(i)?;
    match b0 {
        0xC2 => match b.get(i + 1)? {
            0xA0 => Some((2, Fold::Ascii(b' '))),
            0xAD => Some((2, Fold::Drop)),
            _ => None,
        },
        0xE1 => (b.get(i + 1) == Some(&0xA0) && b.get(i + 2) == Some(&0x8E)).then_some((3, Fold::Drop)),
        0xE2 => {
            let (b1, b2) = (*b.get(i + 1)?, *b.get(i + 2)?);
            match (b1, b2) {
                (0x80, 0x82..=0x8A) | (0x80, 0xAF) => Some((3, Fold::Ascii(b' '))),
                (0x80, 0x8B..=0x8D) => Some((3, Fold::Drop)),
                (0x80, 0x90..=0x93) => Some((3, Fold::Ascii(b'-'))),
                (0x81, 0xA0..=0xA4) => Some((3, Fold::Drop)),
                (0x88, 0x92) => Some((3, Fold::Ascii(b'-'))),
                _ => None,
            }
        }
        0xE3 => (b.get(i + 1) == Some(&0x80) && b.get(i + 2) == Some(&0x80)).then_some((3, Fold::Ascii(b' '))),
        0xEF => {
            let (b1, b2) = (*b.get(i + 1)?, *b.get(i + 2)?);
            match (b1, b2) {
                // U+FF01..U+FF3F: EF BC 81..BF -> 0x21..0x5F
                (0xBC, 0x81..=0xBF) => Some((3, Fold::Ascii(b2 - 0x81 + 0x21))),
                // U+FF40..U+FF5E: EF BD 80..9E -> 0x60..0x7E
                (0xBD, 0x80..=0x9E) => Some((3, Fold::Ascii(b2 - 0x80 + 0x60))),
                (0xBB, 0xBF) => Some((3, Fold::Drop)),
                _ => None,
            }
        }
        _ => None,
    }
}

/// True for the lead bytes [`fold_at`] may fold.
#[inline]
pub(crate) const fn is_fold_lead(b: u8) -> bool {
    matches!(b, 0xC2 | 0xE1 | 0xE2 | 0xE3 | 0xEF)
}

/// The first folded character at or after `start`, if any.
pub(crate) fn first_fold(b: &[u8], start: usize) -> Option<usize> {
    let mut i = start;
    while i < b.len() {
        if is_fold_lead(b[i]) && fold_at(b, i).is_some() {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// Normalised text plus, for each of its bytes, the offset of the original character it came
/// from; `map[text.len()]` is the original length.
#[derive(Debug)]
pub(crate) struct Folded {
    pub(crate) text: String,
    pub(crate) map: Vec<usize>,
}

impl Folded {
    /// Folds `text`.
    pub(crate) fn new(text: &str) -> Folded {
        let b = text.as_bytes();
        let mut out: Vec<u8> = Vec::with_capacity(b.len());
        let mut map = Vec::with_capacity(b.len() + 1);
        let mut i = 0;
        while i < b.len() {
            if is_fold_lead(b[i]) {
                if let Some((n, f)) = fold_at(b, i) {
                    if let Fold::Ascii(c) = f {
                        out.push(c);
                        map.push(i);
                    }
                    i += n;
                    continue;
                }
            }
            out.push(b[i]);
            map.push(i);
            i += 1;
        }
        map.push(b.len());
        // Folding replaces whole characters by ASCII or nothing, and copies the rest verbatim.
        let text = String::from_utf8(out).unwrap_or_default();
        Folded { text, map }
    }

    /// The original offset of normalised offset `i` (a position between characters).
    #[inline]
    pub(crate) fn orig(&self, i: usize) -> usize {
        self.map.get(i).copied().unwrap_or_else(|| self.map.last().copied().unwrap_or(0))
    }

    /// The normalised offset of original offset `o`: the first normalised byte whose
    /// character starts at or after `o`.
    pub(crate) fn norm(&self, o: usize) -> usize {
        self.map.partition_point(|&m| m < o).min(self.text.len())
    }
}

/// The normalised form of one value, as hashed and as compared with the allowlist.
pub(crate) fn fold_str(s: &str) -> Cow<'_, str> {
    if first_fold(s.as_bytes(), 0).is_none() {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(Folded::new(s).text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_fullwidth_spaces_hyphens_and_drops_invisibles() {
        let s = "４１１１\u{00A0}1111\u{200B}-x＠ｙ．ｃｏ\u{2013}\u{FEFF}z\u{3000}!";
        let f = Folded::new(s);
        assert_eq!(f.text, "4111 1111-x@y.co-z !");
        // Every normalised byte maps to the start of an original character.
        for (j, &o) in f.map.iter().enumerate().take(f.text.len()) {
            assert!(s.is_char_boundary(o), "byte {j} maps to {o}");
        }
        assert_eq!(f.orig(f.text.len()), s.len());
        assert_eq!(f.norm(0), 0);
        assert_eq!(f.norm(s.len()), f.text.len());
    }

    #[test]
    fn leaves_other_text_alone() {
        for s in ["plain ascii", "“smart quotes” — and é, 中文, emoji 🎉", "≥ ≤ ±"] {
            assert_eq!(first_fold(s.as_bytes(), 0), None, "{s}");
            assert_eq!(fold_str(s), s);
        }
    }

    #[test]
    fn every_fullwidth_ascii_form_folds_to_its_counterpart() {
        for c in 0x21u32..=0x7E {
            let wide = char::from_u32(0xFF00 + c - 0x20).unwrap_or(' ');
            let s = wide.to_string();
            assert_eq!(fold_at(s.as_bytes(), 0), Some((3, Fold::Ascii(c as u8))), "{wide}");
        }
    }
}
