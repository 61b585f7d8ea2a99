//! Byte searches eight bytes at a time (SWAR on `u64`): safe code that stays fast in wasm, where
//! `memchr`'s SIMD paths do not apply. The one home of these tricks for the whole crate: the
//! wire readers (line ends, escapes, JSON string ends) and the detectors (digit runs, dash runs,
//! brackets) all search with them.
//!
//! Each search flags bytes in a word with [`eq`] or [`below`]: the lowest flagged byte is always a
//! true match, while a borrow may flag bytes above it, so only the lowest flag is ever read.

/// `0x01` in every byte.
pub(crate) const LO: u64 = 0x0101_0101_0101_0101;
/// `0x80` in every byte.
pub(crate) const HI: u64 = 0x8080_8080_8080_8080;

/// The eight bytes of `b` at `i`, little-endian (byte `i` is the lowest).
#[inline(always)]
pub(crate) fn word(b: &[u8], i: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[i..i + 8]);
    u64::from_le_bytes(w)
}

/// The high bit of every byte of `w` that is zero (exact up to the lowest one).
#[inline(always)]
pub(crate) fn zeros(w: u64) -> u64 {
    w.wrapping_sub(LO) & !w & HI
}

/// The high bit of every byte of `w` equal to `c` (exact up to the lowest one).
#[inline(always)]
pub(crate) fn eq(w: u64, c: u8) -> u64 {
    zeros(w ^ (LO * u64::from(c)))
}

/// The high bit of every byte of `w` below `n` (`n` at most 0x80; exact up to the lowest one).
#[inline(always)]
pub(crate) fn below(w: u64, n: u8) -> u64 {
    w.wrapping_sub(LO * u64::from(n)) & !w & HI
}

/// The offset of the lowest flagged byte of a non-zero flag word.
#[inline(always)]
pub(crate) fn first(flags: u64) -> usize {
    (flags.trailing_zeros() / 8) as usize
}

/// The first `c` in `b` at or after `from`.
pub(crate) fn find_byte(b: &[u8], from: usize, c: u8) -> Option<usize> {
    let mut i = from;
    while i + 8 <= b.len() {
        let hit = eq(word(b, i), c);
        if hit != 0 {
            return Some(i + first(hit));
        }
        i += 8;
    }
    b.get(i..)?.iter().position(|&x| x == c).map(|p| i + p)
}

/// The first `x` or `y` in `b` at or after `from`.
pub(crate) fn find_either(b: &[u8], from: usize, x: u8, y: u8) -> Option<usize> {
    let mut i = from;
    while i + 8 <= b.len() {
        let w = word(b, i);
        let hit = eq(w, x) | eq(w, y);
        if hit != 0 {
            return Some(i + first(hit));
        }
        i += 8;
    }
    b.get(i..)?.iter().position(|&c| c == x || c == y).map(|p| i + p)
}

/// Whether `b` contains byte `x` or byte `y` (a `str` search for two `char`s decodes every
/// character; this runs at memory speed on native and wasm alike).
/// Sixteen bytes a turn: it reads whole texts, and only needs a yes or no.
pub(crate) fn contains_either(b: &[u8], x: u8, y: u8) -> bool {
    let mut chunks = b.chunks_exact(16);
    for c in &mut chunks {
        let (a, d) = (word(c, 0), word(c, 8));
        if eq(a, x) | eq(a, y) | eq(d, x) | eq(d, y) != 0 {
            return true;
        }
    }
    chunks.remainder().iter().any(|&c| c == x || c == y)
}

/// The end of the run of ASCII digits at `g`, looking at no more than `max` of them. The end of
/// a number is as unpredictable as its length, and one branch per digit mispredicts on every
/// number.
#[inline]
pub(crate) fn digit_run(b: &[u8], g: usize, max: usize) -> usize {
    let mut e = g;
    while e + 8 <= b.len() {
        let v = word(b, e);
        // Per byte, with the top bit set aside: at least '0', and at least ':'.
        let low = (v & !HI) | HI;
        let ge0 = low.wrapping_sub(LO * 0x30);
        let ge_colon = low.wrapping_sub(LO * 0x3A);
        // A digit: top bit clear, >= '0', < ':'. Exact in every byte (no borrow crosses bytes).
        let digit = ge0 & !ge_colon & !v & HI;
        let n = first(!digit & HI);
        e += n;
        if n < 8 || e - g >= max {
            return e.min(g.saturating_add(max));
        }
    }
    while e < b.len() && e - g < max && b[e].is_ascii_digit() {
        e += 1;
    }
    e
}

/// The end of the run of byte `c` from `e`: a loop of one byte per turn runs at half its speed
/// or at full speed as the code around it happens to be aligned.
#[inline]
pub(crate) fn run_of(b: &[u8], mut e: usize, c: u8) -> usize {
    let pattern = LO * u64::from(c);
    while e + 8 <= b.len() {
        let v = word(b, e) ^ pattern;
        if v != 0 {
            return e + first(v);
        }
        e += 8;
    }
    while b.get(e) == Some(&c) {
        e += 1;
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn searches_agree_with_a_byte_loop_at_every_offset() {
        let text = b"ab\rcd\n\nefgh\\ijklmnopq\r\nrstu\x80\xff\n\\[x]";
        for from in 0..=text.len() {
            let want = |f: &dyn Fn(u8) -> bool| text[from..].iter().position(|&c| f(c)).map(|p| from + p);
            assert_eq!(find_byte(text, from, b'\\'), want(&|c| c == b'\\'), "{from}");
            assert_eq!(find_byte(text, from, 0xff), want(&|c| c == 0xff), "{from}");
            assert_eq!(find_either(text, from, b'\n', b'\r'), want(&|c| c == b'\n' || c == b'\r'), "{from}");
            assert_eq!(contains_either(&text[from..], b'[', b']'), want(&|c| c == b'[' || c == b']').is_some());
        }
    }

    #[test]
    fn runs_end_where_a_byte_loop_ends_them() {
        let text = b"12345678901234567890x--------------------y0123456789\xb0123";
        for g in 0..text.len() {
            let digits = text[g..].iter().take_while(|c| c.is_ascii_digit()).count();
            for max in [1, 3, 8, 20, 100] {
                assert_eq!(digit_run(text, g, max), g + digits.min(max), "{g} {max}");
            }
            let dashes = text[g..].iter().take_while(|&&c| c == b'-').count();
            assert_eq!(run_of(text, g, b'-'), g + dashes, "{g}");
        }
    }

    #[test]
    fn below_flags_the_first_control_byte() {
        let text = b"abcdefg\x1fhijklmno";
        let hit = below(word(text, 0), 0x20);
        assert_eq!(first(hit), 7);
    }
}
