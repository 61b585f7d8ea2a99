//! What the engine scans: the text with look-alike, invisible and encoded characters folded away.
//!
//! Models (and people trying to get values past a filter) write `４１１１ １１１１ …` in fullwidth
//! digits or `٤١١١` in Arabic-Indic ones, put a zero-width space or a bidi mark inside a token,
//! separate digit groups with no-break spaces, or write `jane%40example&#46;com`. The detectors
//! only understand ASCII, so before scanning, text that contains any such *unit* is copied into a
//! normalised form:
//!
//! - fullwidth forms U+FF01..U+FF5E become their ASCII counterparts (`４` → `4`, `＠` → `@`), and
//!   so do the small form variants U+FE50..U+FE6B that NFKC maps to ASCII (`﹫` → `@`, `﹒` → `.`);
//! - every decimal digit (general category Nd, Unicode 16: Arabic-Indic `٤`, Devanagari `४`,
//!   Thai `๔`, mathematical `𝟒`, ...) becomes its ASCII digit;
//! - the ideographic space and the Unicode spaces U+00A0, U+2002..U+200A, U+202F become `' '`;
//! - the hyphens U+2010..U+2013 and the minus sign U+2212 become `'-'`;
//! - the dots U+2024 `․`, U+3002 `。` and U+FF61 `｡` become `'.'`;
//! - default-ignorable code points are dropped: zero-width characters, the bidi marks,
//!   embeddings, overrides and isolates, the soft hyphen, the combining grapheme joiner,
//!   variation selectors, tag characters, Hangul fillers, and the rest of Unicode's
//!   `Default_Ignorable_Code_Point` list; so is U+FFFD, which is what a JSON reader makes of a
//!   lone surrogate escape such as `\ud800`;
//! - the percent escapes `%40` `@`, `%2E` `.`, `%2B` `+`, `%2D` `-`, `%5F` `_` and `%30`..`%39`
//!   (hex digits in either case), and the HTML character references for the same characters,
//!   decimal or hex (`&#64;`, `&#x40;`, `&#X2e;`, leading zeros and all, at most seven digits),
//!   and by name (`&commat;`, `&period;`, `&plus;`, `&lowbar;`, `&UnderBar;`, `&hyphen;`,
//!   `&dash;`, `&minus;`), become that one character. Only the characters values are made of
//!   are decoded: `%20` or `&amp;` mean nothing to a detector and stay as written.
//!
//! Decisions on the edges, each pinned by a test:
//!
//! - Numeric references fold without their `;`, as browsers decode them (`jane&#64example.com`
//!   renders as an email address); the digits run as far as they go, so `&#6412` is not `@`.
//!   Named references need their `;` (HTML decodes only a few legacy names without one, and
//!   none of these).
//! - `100%40` folds to `100@`, and is still left alone: an `@` with no domain after it is no
//!   email address. Folding only changes what the detectors read; text outside a finding is
//!   never rewritten.
//! - Folds do not compose: the text is read once. `％４０` is `%40` to the detectors, and
//!   `%2540` is `%2540`.
//!
//! Every normalised byte remembers the offset of the original unit it came from (a character,
//! or a whole `%` or `&` sequence), so a finding in the normalised text maps back to the original
//! bytes, disguises inside the value included. Text without any of these units (nearly all of
//! it) is scanned in place: the scanner only stops at the lead bytes [`is_fold_lead`] lists.
//!
//! Normalisation works unit by unit, left to right, and a unit's fold is decided by its own
//! bytes (and, for a numeric reference without `;`, the byte after it), so the normalised form
//! of a prefix is a prefix of the normalised form of the whole: the streaming contract survives
//! it. The one exception is a `%` or `&` sequence cut by the end of what has arrived
//! (`jane&#6`): [`open_tail`] finds it, and a stream scans only the text before it until the
//! rest arrives.

use std::borrow::Cow;

/// How one original unit is scanned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fold {
    /// Scanned as this ASCII byte.
    Ascii(u8),
    /// Not scanned at all (invisible).
    Drop,
}

/// If a folded unit starts at `b[i]`, its length in bytes and how it folds.
///
/// Returns `None` at once for any byte [`is_fold_lead`] rejects. A `%` or `&` sequence cut
/// short by the end of `b` is read as it stands (the end of the whole text); streams hold such a
/// tail back with [`open_tail`]. Small enough to inline into the copying loop of
/// [`Folded::new`]: the ASCII sequences and the rare characters are read out of line.
#[inline(always)]
pub(crate) fn fold_at(b: &[u8], i: usize) -> Option<(usize, Fold)> {
    let b0 = *b.get(i)?;
    if !is_fold_lead(b0) {
        return None;
    }
    if b0 < 0x80 {
        return escape(b, i);
    }
    if let Some(&[b1, b2]) = b.get(i + 1..i + 3) {
        if let Some(code) = table3(b0, b1, b2) {
            return from_code(code).map(|f| (3, f));
        }
    }
    if !high_folds(b, i) {
        return None;
    }
    let (cp, n) = decode(b, i)?;
    fold_char(cp).map(|f| (n, f))
}

/// The entry of [`PUNCTUATION`] or [`FORMS`] for the character encoded as `b0 b1 b2`, without
/// decoding it (U+2000..U+207F is E2 80..81 xx, U+FE00..U+FFFF is EF B8..BF xx); `None` when it
/// is in neither table.
#[inline(always)]
fn table3(b0: u8, b1: u8, b2: u8) -> Option<u8> {
    let k = usize::from(b2 & 0x3F);
    match (b0, b1) {
        (0xE2, 0x80..=0x81) => Some(PUNCTUATION[(usize::from(b1 & 1) << 6) | k]),
        (0xEF, 0xB8..=0xBF) => Some(FORMS[(usize::from(b1 - 0xB8) << 6) | k]),
        _ => None,
    }
}

/// True for the bytes a folded unit may start with: `%`, `&`, and the first bytes of the UTF-8
/// encodings of the folded characters (C2: no-break space, soft hyphen; CD: the grapheme joiner;
/// D8, D9, DB, DF: the Arabic letter mark, Arabic-Indic and NKo digits; E0, E1, EA: digits of
/// the scripts of U+0800..U+1FFF and U+A000..U+AFFF, Hangul and Mongolian fillers and
/// selectors; E2, E3: spaces, dashes, dots, bidi controls; EF: fullwidth and small forms,
/// variation selectors, BOM, U+FFFD; F0: digits and format characters above U+FFFF; F3: tags
/// and variation selectors U+E0000..U+E0FFF).
#[inline]
pub(crate) const fn is_fold_lead(b: u8) -> bool {
    LEADS[b as usize]
}

/// [`is_fold_lead`] as a table, derived from [`FOLD_BLOCK`]: one load in the loop that copies
/// text into its folded form.
const LEADS: [bool; 256] = {
    let mut t = [false; 256];
    t[b'%' as usize] = true;
    t[b'&' as usize] = true;
    t[b'\\' as usize] = true;
    // A lead byte starts the characters of a range of blocks: 0xC2..0xDF one block each,
    // 0xE0..0xEF 64 blocks each (E0 only the upper half), F0 the blocks of U+10000..U+1FFFF, F3
    // those of U+C0000..U+FFFFF (the tags among them).
    let mut b = 0xC2;
    while b < 0x100 {
        let (lo, hi) = match b {
            0xC2..=0xDF => (b & 0x1F, (b & 0x1F) + 1),
            0xE0 => (0x20, 0x40),
            0xE1..=0xEF => ((b & 0x0F) << 6, ((b & 0x0F) + 1) << 6),
            0xF0 => (0x400, BLOCKS),
            _ => (0, 0),
        };
        let mut k = lo;
        while k < hi {
            if FOLD_BLOCK[k] != 0 {
                t[b] = true;
            }
            k += 1;
        }
        b += 1;
    }
    t[0xF3] = true;
    t
};

/// The blocks of 64 code points [`FOLD_BLOCK`] covers: U+0000..U+1FFFF. Above, only the tags and
/// variation selectors U+E0000..U+E0FFF fold, all of them.
const BLOCKS: usize = 0x20000 >> 6;

/// For each block of 64 code points, the index in [`FOLD_BITS`] of the set of its characters
/// that fold (0, the empty set, for nearly all blocks).
const FOLD_BLOCK: [u8; BLOCKS] = FOLD_TABLES.0;

/// The distinct sets of folded characters in a block, one bit per character.
const FOLD_BITS: [u64; 128] = FOLD_TABLES.1;

/// [`FOLD_BLOCK`] and [`FOLD_BITS`], built from [`rule`] and [`DIGIT_ZEROS`].
const FOLD_TABLES: ([u8; BLOCKS], [u64; 128]) = {
    let mut sets = [0u64; BLOCKS];
    let mut cp = 0x80u32;
    while cp < 0x20000 {
        if rule(cp) != 0 {
            sets[(cp >> 6) as usize] |= 1 << (cp & 63);
        }
        cp += 1;
    }
    let mut z = 0;
    while z < DIGIT_ZEROS.len() {
        let mut cp = DIGIT_ZEROS[z];
        while cp < DIGIT_ZEROS[z] + 10 {
            sets[(cp >> 6) as usize] |= 1 << (cp & 63);
            cp += 1;
        }
        z += 1;
    }
    let mut index = [0u8; BLOCKS];
    let mut bits = [0u64; 128];
    let mut n = 1;
    let mut k = 0;
    while k < BLOCKS {
        if sets[k] != 0 {
            let mut j = 1;
            while j < n && bits[j] != sets[k] {
                j += 1;
            }
            if j == n {
                assert!(n < 128, "more than 127 distinct blocks of folded characters");
                bits[n] = sets[k];
                n += 1;
            }
            index[k] = j as u8;
        }
        k += 1;
    }
    (index, bits)
};

/// Whether the character whose UTF-8 encoding starts at `b[i]` (a byte of 0x80 or more) folds:
/// two loads, by its bytes, without decoding it. Arabic, Indic or emoji text passes here one
/// character at a time, and almost all of it does not fold.
#[inline(always)]
fn high_folds(b: &[u8], i: usize) -> bool {
    let low = |k: usize| b.get(i + k).map_or(0, |&c| usize::from(c & 0x3F));
    let b0 = b.get(i).map_or(0, |&c| usize::from(c));
    let (block, k) = if b0 < 0xC0 {
        // ASCII, or the middle of a character.
        return false;
    } else if b0 < 0xE0 {
        (b0 & 0x1F, low(1))
    } else if b0 < 0xF0 {
        (((b0 & 0x0F) << 6) | low(1), low(2))
    } else {
        let block = ((b0 & 0x07) << 12) | (low(1) << 6) | low(2);
        if block >= BLOCKS {
            return (0xE0000 >> 6..0xE1000 >> 6).contains(&block);
        }
        (block, low(3))
    };
    FOLD_BLOCK.get(block).is_some_and(|&s| (FOLD_BITS[usize::from(s) & 127] >> k) & 1 != 0)
}

/// Whether a folded unit starts at `b[i]`, for the scanner, which calls it at every lead byte:
/// inlined into the scanner's loop, with the rest of [`fold_at`] out of it. Curly quotes and
/// dashes, Arabic or Devanagari letters and emoji are answered by [`high_folds`], `%s`,
/// `a && b` and `&amp;` by the byte after the `%` or `&`.
#[inline(always)]
pub(crate) fn folds_at(b: &[u8], i: usize) -> bool {
    match b.get(i) {
        Some(&c) if c >= 0x80 => high_folds(b, i),
        Some(b'%' | b'&' | b'\\') => {
            b.get(i + 1).is_some_and(|&next| ESCAPE_NEXT[usize::from(next)]) && folds_at_rest(b, i)
        }
        _ => false,
    }
}

#[inline(never)]
fn folds_at_rest(b: &[u8], i: usize) -> bool {
    fold_at(b, i).is_some()
}

/// The bytes that may follow the `%` or `&` of a sequence that folds: the first hex digit of
/// an escaped value character, `#`, and the first letter of a named reference.
const ESCAPE_NEXT: [bool; 256] = {
    let mut t = [false; 256];
    let mut v = 0;
    while v < 0x80 {
        if value_char(v).is_some() {
            t[b"0123456789ABCDEF"[(v >> 4) as usize] as usize] = true;
        }
        v += 1;
    }
    t[b'#' as usize] = true;
    // `\u0040` and `\/`: JSON escapes a model writes out in its prose.
    t[b'u' as usize] = true;
    t[b'/' as usize] = true;
    let mut k = 0;
    while k < NAMED.len() {
        t[NAMED[k].0[0] as usize] = true;
        k += 1;
    }
    t
};

/// A `%` escape or an HTML reference at `b[i]` (which is `%` or `&`).
#[inline(never)]
fn escape(b: &[u8], i: usize) -> Option<(usize, Fold)> {
    match b.get(i) {
        Some(b'%') => percent(b, i),
        Some(b'\\') => json_escape(b, i),
        _ => reference(b, i),
    }
}

/// A JSON escape left visible in text (a model quoting JSON, `"ana\u0040shop.example"`,
/// `"https:\/\/hooks.slack.com\/..."`): `\uXXXX` of a character values are made of, and `\/`.
fn json_escape(b: &[u8], i: usize) -> Option<(usize, Fold)> {
    match b.get(i + 1)? {
        b'/' => Some((2, Fold::Ascii(b'/'))),
        b'u' => {
            let h = b.get(i + 2..i + 6)?;
            let v = h.iter().try_fold(0u32, |v, &c| Some(v * 16 + hex_val(c)?))?;
            value_char(v).map(|c| (6, Fold::Ascii(c)))
        }
        _ => None,
    }
}

/// How the character `cp` is scanned, if it is folded.
#[inline(always)]
pub(crate) fn fold_char(cp: u32) -> Option<Fold> {
    // The two blocks most folded characters (and the curly quotes and dashes of prose) come
    // from are looked up in a table; the rest are rare.
    let code = match cp {
        0x2000..=0x207F => PUNCTUATION[(cp - 0x2000) as usize],
        0xFE00..=0xFFFF => FORMS[(cp - 0xFE00) as usize],
        _ => return fold_other(cp),
    };
    from_code(code)
}

#[inline(always)]
fn from_code(code: u8) -> Option<Fold> {
    match code {
        0 => None,
        DROP => Some(Fold::Drop),
        c => Some(Fold::Ascii(c)),
    }
}

/// [`fold_char`] outside the two tables: the rarely met characters, and the digits.
#[inline(never)]
fn fold_other(cp: u32) -> Option<Fold> {
    from_code(rule(cp)).or_else(|| decimal_digit(cp).map(|d| Fold::Ascii(b'0' + d)))
}

/// [`rule`]'s answer for a dropped character.
const DROP: u8 = 0xFF;

/// Every fold but the digits: the ASCII byte a character is scanned as, [`DROP`], or 0.
const fn rule(cp: u32) -> u8 {
    match cp {
        // Fullwidth forms: U+FF01..U+FF5E are U+0021..U+007E shifted by 0xFEE0.
        0xFF01..=0xFF5E => (cp - 0xFEE0) as u8,
        0x00A0 | 0x2002..=0x200A | 0x202F | 0x3000 => b' ',
        0x2010..=0x2013 | 0x2212 => b'-',
        0x2024 | 0x3002 | 0xFF61 => b'.',
        0xFE50..=0xFE6B => SMALL_FORMS[(cp - 0xFE50) as usize],
        0xFFFD => DROP,
        _ if ignorable(cp) => DROP,
        _ => 0,
    }
}

/// [`rule`] for U+2000..U+207F, general punctuation.
const PUNCTUATION: [u8; 0x80] = rules::<0x80>(0x2000);

/// [`rule`] for U+FE00..U+FFFF: variation selectors, small, fullwidth and halfwidth forms,
/// specials.
const FORMS: [u8; 0x200] = rules::<0x200>(0xFE00);

const fn rules<const N: usize>(first: u32) -> [u8; N] {
    let mut t = [0u8; N];
    let mut k = 0;
    while k < N {
        t[k] = rule(first + k as u32);
        k += 1;
    }
    t
}

/// U+FE50..U+FE6B, the small form variants, as NFKC maps them to ASCII (0: not to ASCII).
const SMALL_FORMS: [u8; 28] = *b",\0.\0;:?!\0(){}\0\0#&*+-<>=\0\\$%@";

/// Unicode's `Default_Ignorable_Code_Point` (DerivedCoreProperties, Unicode 16), reserved code
/// points in its ranges included, as the standard asks: what a renderer shows nothing for.
const fn ignorable(cp: u32) -> bool {
    matches!(
        cp,
        0x00AD
            | 0x034F
            | 0x061C
            | 0x115F..=0x1160
            | 0x17B4..=0x17B5
            | 0x180B..=0x180F
            | 0x200B..=0x200F
            | 0x202A..=0x202E
            | 0x2060..=0x206F
            | 0x3164
            | 0xFE00..=0xFE0F
            | 0xFEFF
            | 0xFFA0
            | 0xFFF0..=0xFFF8
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0000..=0xE0FFF
    )
}

/// The zero of every run of decimal digits (general category Nd, Unicode 16) outside ASCII, in
/// order. Unicode encodes each script's digits as ten consecutive code points from zero to nine,
/// so these zeros are the whole category; a test checks the table against the `regex` crate's.
const DIGIT_ZEROS: [u32; 75] = [
    0x0660, 0x06F0, 0x07C0, 0x0966, 0x09E6, 0x0A66, 0x0AE6, 0x0B66, 0x0BE6, 0x0C66, 0x0CE6, 0x0D66, 0x0DE6, 0x0E50,
    0x0ED0, 0x0F20, 0x1040, 0x1090, 0x17E0, 0x1810, 0x1946, 0x19D0, 0x1A80, 0x1A90, 0x1B50, 0x1BB0, 0x1C40, 0x1C50,
    0xA620, 0xA8D0, 0xA900, 0xA9D0, 0xA9F0, 0xAA50, 0xABF0, 0xFF10, 0x104A0, 0x10D30, 0x10D40, 0x11066, 0x110F0,
    0x11136, 0x111D0, 0x112F0, 0x11450, 0x114D0, 0x11650, 0x116C0, 0x116D0, 0x116DA, 0x11730, 0x118E0, 0x11950,
    0x11BF0, 0x11C50, 0x11D50, 0x11DA0, 0x11F50, 0x16130, 0x16A60, 0x16AC0, 0x16B50, 0x16D70, 0x1CCF0, 0x1D7CE,
    0x1D7D8, 0x1D7E2, 0x1D7EC, 0x1D7F6, 0x1E140, 0x1E2F0, 0x1E4F0, 0x1E5F1, 0x1E950, 0x1FBF0,
];

/// The value of the non-ASCII decimal digit `cp`.
fn decimal_digit(cp: u32) -> Option<u8> {
    // No script puts digits between Ol Chiki (U+1C50) and Vai (U+A620): the punctuation,
    // symbols and CJK of U+2000..U+9FFF never search the table.
    if cp < DIGIT_ZEROS[0] || (0x1C5A..0xA620).contains(&cp) {
        return None;
    }
    let k = DIGIT_ZEROS.partition_point(|&z| z <= cp);
    let d = cp - DIGIT_ZEROS[k.checked_sub(1)?];
    (d < 10).then_some(d as u8)
}

/// The code point of the character whose UTF-8 encoding starts at `b[i]` with a lead byte (the
/// text is a `str`, so the continuation bytes that follow are its own), and its length.
#[inline(always)]
fn decode(b: &[u8], i: usize) -> Option<(u32, usize)> {
    let low = |c: u8| u32::from(c & 0x3F);
    match *b.get(i..)? {
        [b0 @ 0xE0..=0xEF, c1, c2, ..] => Some(((u32::from(b0 & 0x0F) << 12) | (low(c1) << 6) | low(c2), 3)),
        [b0 @ 0xC0..=0xDF, c1, ..] => Some(((u32::from(b0 & 0x1F) << 6) | low(c1), 2)),
        [b0 @ 0xF0..=0xF7, c1, c2, c3, ..] => {
            Some(((u32::from(b0 & 0x07) << 18) | (low(c1) << 12) | (low(c2) << 6) | low(c3), 4))
        }
        _ => None,
    }
}

/// The characters a `%` escape or an HTML reference is decoded to: those values are made of.
#[inline]
const fn value_char(v: u32) -> Option<u8> {
    match v {
        0x30..=0x39 | 0x40 | 0x2E | 0x2B | 0x2D | 0x5F => Some(v as u8),
        _ => None,
    }
}

#[inline]
fn hex_val(c: u8) -> Option<u32> {
    char::from(c).to_digit(16)
}

/// `%` and two hex digits.
fn percent(b: &[u8], i: usize) -> Option<(usize, Fold)> {
    let hi = hex_val(*b.get(i + 1)?)?;
    let lo = hex_val(*b.get(i + 2)?)?;
    value_char(hi * 16 + lo).map(|c| (3, Fold::Ascii(c)))
}

/// The most digits a numeric reference may have (leading zeros included).
const MAX_REF_DIGITS: usize = 7;

/// The named references that fold, `;` included.
const NAMED: [(&[u8], u8); 8] = [
    (b"commat;", b'@'),
    (b"period;", b'.'),
    (b"plus;", b'+'),
    (b"lowbar;", b'_'),
    (b"UnderBar;", b'_'),
    (b"hyphen;", b'-'),
    (b"dash;", b'-'),
    (b"minus;", b'-'),
];

/// The longest `%` or `&` sequence that is still open (`&#x` and seven digits).
pub(crate) const MAX_OPEN: usize = 3 + MAX_REF_DIGITS;

/// The digits of a numeric reference at `j`: hex when `hex`, else decimal.
#[inline]
fn ref_digit(c: u8, hex: bool) -> Option<u32> {
    if hex {
        hex_val(c)
    } else {
        char::from(c).to_digit(10)
    }
}

/// `&#NN;`, `&#xHH;` (the `;` optional) or `&name;`.
fn reference(b: &[u8], i: usize) -> Option<(usize, Fold)> {
    if b.get(i + 1) != Some(&b'#') {
        let rest = b.get(i + 1..)?;
        let (name, c) = NAMED.iter().find(|(name, _)| rest.starts_with(name))?;
        return Some((1 + name.len(), Fold::Ascii(*c)));
    }
    let hex = matches!(b.get(i + 2), Some(b'x' | b'X'));
    let start = if hex { i + 3 } else { i + 2 };
    let mut j = start;
    let mut v = 0u32;
    while let Some(d) = b.get(j).and_then(|&c| ref_digit(c, hex)) {
        if j - start == MAX_REF_DIGITS {
            return None;
        }
        v = v * if hex { 16 } else { 10 } + d;
        j += 1;
    }
    if j == start {
        return None;
    }
    if b.get(j) == Some(&b';') {
        j += 1;
    }
    value_char(v).map(|c| (j - i, Fold::Ascii(c)))
}

/// Where a `%` or `&` sequence starts that the end of `b` cuts short: one that more bytes could
/// still make fold, or fold differently (`%4`, `&#6`, `&#64`, `&comm`). A stream scans only the
/// text before it: until the sequence is complete, the normalised form of what follows it is
/// unknown.
///
/// Such a sequence runs to the end of the text, and after its `%` or `&` holds only letters,
/// digits and `#`; so its start is the first byte before that tail of letters, digits and `#`
/// (never longer than a sequence), if it is a `%` or `&`. A stream calls this at every chunk,
/// and the walk back is a word long at most.
#[inline]
pub(crate) fn open_tail(b: &[u8]) -> Option<usize> {
    let mut k = b.len();
    while k > 0 && b.len() - k < MAX_OPEN && (b[k - 1].is_ascii_alphanumeric() || b[k - 1] == b'#') {
        k -= 1;
    }
    let s = k.checked_sub(1)?;
    (matches!(b[s], b'%' | b'&' | b'\\') && is_open(&b[s..])).then_some(s)
}

/// Whether `s`, a `%` or `&` and what follows it up to the end of the text, may still grow into
/// a sequence that folds.
fn is_open(s: &[u8]) -> bool {
    let rest = &s[1..];
    if s[0] == b'%' {
        return rest.len() < 2 && rest.iter().all(u8::is_ascii_hexdigit);
    }
    if s[0] == b'\\' {
        return rest.is_empty() || (rest[0] == b'u' && rest.len() < 5 && rest[1..].iter().all(u8::is_ascii_hexdigit));
    }
    match rest.first() {
        None => true,
        Some(b'#') => {
            let hex = matches!(rest.get(1), Some(b'x' | b'X'));
            let skip = if hex { 2 } else { 1 };
            let digits = rest.get(skip..).unwrap_or_default();
            digits.len() <= MAX_REF_DIGITS && digits.iter().all(|&c| ref_digit(c, hex).is_some())
        }
        Some(_) => NAMED.iter().any(|(name, _)| name.len() > rest.len() && name.starts_with(rest)),
    }
}

/// The first folded unit at or after `start`, if any.
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

/// The units of `s` in order: a folded unit with its fold, or one character that is not folded.
pub(crate) fn units(s: &str) -> impl Iterator<Item = (&str, Option<Fold>)> {
    let mut i = 0;
    std::iter::from_fn(move || {
        let c = s.get(i..)?.chars().next()?;
        let (n, f) = match fold_at(s.as_bytes(), i) {
            Some((n, f)) => (n, Some(f)),
            None => (c.len_utf8(), None),
        };
        let unit = s.get(i..i + n)?;
        i += n;
        Some((unit, f))
    })
}

/// Normalised text plus, for each of its bytes, the offset of the original unit it came from;
/// `map[text.len()]` is the original length.
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
        // Folding replaces whole units by ASCII or nothing, and copies the rest verbatim.
        let text = String::from_utf8(out).unwrap_or_default();
        Folded { text, map }
    }

    /// The original offset of normalised offset `i` (a position between characters).
    #[inline]
    pub(crate) fn orig(&self, i: usize) -> usize {
        self.map.get(i).copied().unwrap_or_else(|| self.map.last().copied().unwrap_or(0))
    }

    /// The normalised offset of original offset `o`: the first normalised byte whose
    /// unit starts at or after `o`.
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

    fn folded(s: &str) -> String {
        Folded::new(s).text
    }

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
        for s in [
            "plain ascii",
            "“smart quotes” — and é, 中文, emoji 🎉",
            "≥ ≤ ±",
            "AT&amp;T, &lt;b&gt;, &nbsp;, 50% off, 100%, %s, %d%%, a&&b, &#x, &#;",
            "%20 %2F %3A %41 &#65; &#x41; &#60; &#12345678; &commat &Commat; &period",
            "Ⅻ ½ ² ① 〇 一二三",
            "ﹰ ﹱ ﹷ ﹑ ﹘ ﹝",
            "مرحبا بالعالم، नमस्ते दुनिया, สวัสดีชาวโลก, 안녕하세요 세계, Привет, 𝐀𝐁𝐂 𝔸",
        ] {
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

    /// Every character the `regex` crate (a dev-dependency, never linked into the filter) calls a
    /// decimal digit folds to its digit, every default-ignorable one is dropped, and the fold
    /// leads cover every folded character.
    #[test]
    fn unicode_tables_agree_with_the_regex_crate() {
        let nd = regex::Regex::new(r"^\p{Nd}$").unwrap();
        let di = regex::Regex::new(r"^\p{Default_Ignorable_Code_Point}$").unwrap();
        let (mut digits, mut drops) = (0, 0);
        // The start of the current run of consecutive Nd code points: runs of ten, or of several
        // tens (the five styles of mathematical digits follow each other).
        let mut run = 0;
        for c in (0..=0x10FFFFu32).filter_map(char::from_u32).filter(|c| !c.is_ascii()) {
            let s = c.to_string();
            let cp = u32::from(c);
            let f = fold_char(cp);
            if nd.is_match(&s) {
                if digits == 0 || !nd.is_match(&char::from_u32(cp - 1).unwrap_or('x').to_string()) {
                    run = cp;
                }
                let want = b'0' + ((cp - run) % 10) as u8;
                assert_eq!(f, Some(Fold::Ascii(want)), "{c:?} U+{cp:04X}");
                digits += 1;
            } else if di.is_match(&s) {
                assert_eq!(f, Some(Fold::Drop), "U+{:04X}", u32::from(c));
                drops += 1;
            } else if let Some(Fold::Ascii(a)) = f {
                // The other folds are to ASCII spaces and punctuation, never to a digit.
                assert!(!a.is_ascii_digit(), "U+{:04X}", u32::from(c));
            }
            // The scanner's way in (lead byte, then the tables) agrees with the rules.
            assert!(f.is_none() || is_fold_lead(s.as_bytes()[0]), "lead of U+{cp:04X}");
            assert_eq!(fold_at(s.as_bytes(), 0), f.map(|f| (s.len(), f)), "U+{cp:04X}");
            assert_eq!(folds_at(s.as_bytes(), 0), f.is_some(), "U+{cp:04X}");
        }
        assert_eq!(digits, 10 * DIGIT_ZEROS.len());
        assert!(drops > 4000, "{drops}");
        // The zeros are sorted, and each is a digit zero by the regex crate's table too.
        assert!(DIGIT_ZEROS.windows(2).all(|w| w[0] + 10 <= w[1]));
    }

    #[test]
    fn folds_each_disguise() {
        for (name, s, want) in [
            ("arabic-indic", "٤١١١ ١١١١", "4111 1111"),
            ("extended arabic-indic", "۴۱۱۱", "4111"),
            ("devanagari", "४१११", "4111"),
            ("bengali", "৪১১১", "4111"),
            ("thai", "๔๑๑๑", "4111"),
            ("math bold", "𝟒𝟏𝟏𝟏", "4111"),
            ("math double-struck", "𝟜𝟙𝟙𝟙", "4111"),
            ("math sans-serif", "𝟦𝟣𝟣𝟣", "4111"),
            ("math monospace", "𝟺𝟷𝟷𝟷 𝟶𝟿", "4111 09"),
            ("bidi marks", "41\u{200E}11\u{200F}x\u{061C}y", "4111xy"),
            ("embeddings and isolates", "\u{202A}a\u{202E}b\u{2066}c\u{2069}d", "abcd"),
            ("joiners and selectors", "a\u{034F}b\u{FE0F}c\u{E0100}d\u{2060}e", "abcde"),
            ("tags", "a\u{E0041}\u{E007F}b", "ab"),
            ("fillers", "a\u{115F}\u{1160}\u{3164}\u{FFA0}\u{17B4}\u{17B5}\u{180B}\u{180F}b", "ab"),
            ("replacement character", "41\u{FFFD}11", "4111"),
            ("compatibility at", "a﹫b＠c", "a@b@c"),
            ("compatibility dots", "a。b．c｡d﹒e․f", "a.b.c.d.e.f"),
            ("small forms", "﹢﹣﹕﹦﹟﹪﹠", "+-:=#%&"),
            ("percent", "a%40b%2Ec%2ed%2Be%2bf%2Dg%2dh%5Fi%5fj%34%31", "a@b.c.d+e+f-g-h_i_j41"),
            ("decimal references", "a&#64;b&#46;c&#43;d&#45;e&#95;f&#52;&#49;", "a@b.c+d-e_f41"),
            ("hex references", "a&#x40;b&#X2E;c&#x2e;d&#x5f;e&#x34;", "a@b.c.d_e4"),
            ("leading zeros", "a&#0064;b&#x00002E;c&#0000046;d", "a@b.c.d"),
            ("no semicolon", "a&#64b&#46", "a@b."),
            ("named", "a&commat;b&period;c&plus;d&lowbar;e&UnderBar;f&hyphen;g&dash;h&minus;i", "a@b.c+d_e_f-g-h-i"),
            ("not composed", "％４０ %2540 &amp;#64;", "%40 %2540 &amp;#64;"),
            ("digits run on", "&#6412; &#x40e; &#12345678;", "&#6412; &#x40e; &#12345678;"),
        ] {
            assert_eq!(folded(s), want, "{name}: {s:?}");
            // The scanner's quick answer agrees at every byte.
            for i in 0..s.len() {
                assert_eq!(folds_at(s.as_bytes(), i), fold_at(s.as_bytes(), i).is_some(), "{name} at {i}");
            }
            // Offsets map back to unit starts, and the whole maps to the whole.
            let f = Folded::new(s);
            assert!(f.map.iter().all(|&o| s.is_char_boundary(o)), "{name}");
            assert_eq!(f.orig(f.text.len()), s.len(), "{name}");
        }
    }

    #[test]
    fn a_sequence_folds_to_one_byte_mapped_to_its_start() {
        let s = "x%40y&#46;z&commat;";
        let f = Folded::new(s);
        assert_eq!(f.text, "x@y.z@");
        assert_eq!(f.map, [0, 1, 4, 5, 10, 11, s.len()]);
        assert_eq!(f.norm(2), 2); // inside `%40`: the next unit
        assert_eq!(units(s).map(|(u, _)| u).collect::<Vec<_>>(), ["x", "%40", "y", "&#46;", "z", "&commat;"]);
    }

    #[test]
    fn open_tails_are_the_sequences_more_text_could_complete() {
        for (s, want) in [
            ("abc", None),
            ("a%", Some(1)),
            ("a%4", Some(1)),
            ("a%40", None),
            ("a%4z", None),
            ("a%zz", None),
            ("a&", Some(1)),
            ("a&#", Some(1)),
            ("a&#x", Some(1)),
            ("a&#X4", Some(1)),
            ("a&#6", Some(1)),
            ("a&#64", Some(1)),
            ("a&#64;", None),
            ("a&#1234567", Some(1)),
            ("a&#12345678", None),
            ("a&#6a", None),
            ("a&comm", Some(1)),
            ("a&commat", Some(1)),
            ("a&commat;", None),
            ("a&amp", None),
            ("a&U", Some(1)),
            ("a&&", Some(2)),
            ("a%%4", Some(2)),
            ("a&#64&#", Some(5)),
            ("%40&", Some(3)),
        ] {
            assert_eq!(open_tail(s.as_bytes()), want, "{s:?}");
        }
        // A tail that is not open folds the same way whatever follows it; an open one is the
        // first place where the fold of a longer text may differ.
        for s in ["a%4", "a&#6", "a&#64", "a&comm", "a&#x2"] {
            let k = open_tail(s.as_bytes()).unwrap_or(s.len());
            for more in ["0", ";", "4;", "at;", "e", " ", "x"] {
                let whole = format!("{s}{more}");
                assert!(folded(&whole).starts_with(&folded(&s[..k])), "{whole:?}");
            }
        }
    }
}
