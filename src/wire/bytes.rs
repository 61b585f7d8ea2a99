//! Byte searches eight bytes at a time (SWAR on `u64`): safe code that stays fast in wasm, where
//! `memchr`'s SIMD paths do not apply.

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// The high bit of every byte of `w` that is zero. The lowest flagged byte is always a true
/// zero; a borrow can only flag bytes above it.
#[inline(always)]
fn zeros(w: u64) -> u64 {
    w.wrapping_sub(LO) & !w & HI
}

#[inline(always)]
fn word(b: &[u8], i: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[i..i + 8]);
    u64::from_le_bytes(w)
}

/// The first `c` in `b` at or after `from`.
pub fn find_byte(b: &[u8], from: usize, c: u8) -> Option<usize> {
    let mut i = from;
    while i + 8 <= b.len() {
        let hit = zeros(word(b, i) ^ (LO * u64::from(c)));
        if hit != 0 {
            return Some(i + (hit.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    b.get(i..)?.iter().position(|&x| x == c).map(|p| i + p)
}

/// The first `x` or `y` in `b` at or after `from`.
pub fn find_either(b: &[u8], from: usize, x: u8, y: u8) -> Option<usize> {
    let mut i = from;
    while i + 8 <= b.len() {
        let w = word(b, i);
        let hit = zeros(w ^ (LO * u64::from(x))) | zeros(w ^ (LO * u64::from(y)));
        if hit != 0 {
            return Some(i + (hit.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    b.get(i..)?.iter().position(|&c| c == x || c == y).map(|p| i + p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agree_with_a_byte_loop_at_every_offset() {
        let text = b"ab\rcd\n\nefgh\\ijklmnopq\r\nrstu\x80\xff\n\\";
        for from in 0..=text.len() {
            let want = |f: &dyn Fn(u8) -> bool| text[from..].iter().position(|&c| f(c)).map(|p| from + p);
            assert_eq!(find_byte(text, from, b'\\'), want(&|c| c == b'\\'), "{from}");
            assert_eq!(find_byte(text, from, 0xff), want(&|c| c == 0xff), "{from}");
            assert_eq!(find_either(text, from, b'\n', b'\r'), want(&|c| c == b'\n' || c == b'\r'), "{from}");
        }
    }
}
