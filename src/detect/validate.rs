//! Validators: the cheap, exact checks that turn a candidate into a finding.
//!
//! Each takes the candidate's characters (already stripped of separators where that applies) and
//! answers yes or no. None of them allocates except [`jwt_header_has_alg`], which only runs on
//! text that already has the shape of a JWT.

/// The Luhn (mod 10) checksum over ASCII digits.
pub(crate) fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, &d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(d.wrapping_sub(b'0'));
        if v > 9 {
            return false;
        }
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum % 10 == 0
}

fn prefix_num(digits: &[u8], n: usize) -> u32 {
    digits.iter().take(n).fold(0u32, |acc, &d| acc * 10 + u32::from(d.wrapping_sub(b'0') % 10))
}

/// Whether `digits` (13 to 19 ASCII digits) starts with a known issuer prefix and has a length
/// that issuer uses.
pub(crate) fn card_brand_ok(digits: &[u8]) -> bool {
    let n = digits.len();
    if !(13..=19).contains(&n) {
        return false;
    }
    let p1 = prefix_num(digits, 1);
    let p2 = prefix_num(digits, 2);
    let p3 = prefix_num(digits, 3);
    let p4 = prefix_num(digits, 4);
    let p6 = prefix_num(digits, 6);
    // Visa
    (p1 == 4 && matches!(n, 13 | 16 | 19))
        // Mastercard, including the 2-series
        || ((51..=55).contains(&p2) && n == 16)
        || ((2221..=2720).contains(&p4) && n == 16)
        // American Express
        || ((p2 == 34 || p2 == 37) && n == 15)
        // Discover, UnionPay, RuPay 60/65
        || ((p4 == 6011 || (644..=649).contains(&p3) || p2 == 65 || p2 == 62 || p2 == 60) && (16..=19).contains(&n))
        // JCB
        || ((3528..=3589).contains(&p4) && (16..=19).contains(&n))
        // Diners Club
        || (((300..=305).contains(&p3) || p2 == 36 || p2 == 38 || p2 == 39) && (14..=19).contains(&n))
        // Maestro
        || ((p2 == 50 || (56..=58).contains(&p2) || p4 == 6304 || p4 == 6759 || p6 == 676770 || p6 == 676774) && (13..=19).contains(&n))
        // Mir
        || ((2200..=2204).contains(&p4) && (16..=19).contains(&n))
        // UATP (airline cards)
        || (p1 == 1 && n == 15)
}

/// A payment card number: issuer prefix and length, and the Luhn checksum.
pub(crate) fn card_ok(digits: &[u8]) -> bool {
    card_brand_ok(digits) && luhn(digits)
}

/// US Social Security number rules on the nine digits: area 001..899 except 666, group 01..99,
/// serial 0001..9999, and not one of the numbers the SSA voided after they were published.
pub(crate) fn ssn_ok(d: &[u8]) -> bool {
    if d.len() != 9 || !d.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let area = prefix_num(d, 3);
    let group = prefix_num(&d[3..], 2);
    let serial = prefix_num(&d[5..], 4);
    if area == 0 || area == 666 || area >= 900 || group == 0 || serial == 0 {
        return false;
    }
    // Woolworth's wallet card and the 1940s Social Security Board pamphlet number.
    !matches!(d, b"078051120" | b"219099999")
}

/// The IBAN length for a country code (upper-case ASCII letters), from the SWIFT IBAN registry.
pub(crate) fn iban_len(cc: [u8; 2]) -> Option<usize> {
    const TABLE: &[(&[u8; 2], u8)] = &[
        (b"AD", 24),
        (b"AE", 23),
        (b"AL", 28),
        (b"AT", 20),
        (b"AZ", 28),
        (b"BA", 20),
        (b"BE", 16),
        (b"BG", 22),
        (b"BH", 22),
        (b"BI", 27),
        (b"BR", 29),
        (b"BY", 28),
        (b"CH", 21),
        (b"CR", 22),
        (b"CY", 28),
        (b"CZ", 24),
        (b"DE", 22),
        (b"DJ", 27),
        (b"DK", 18),
        (b"DO", 28),
        (b"EE", 20),
        (b"EG", 29),
        (b"ES", 24),
        (b"FI", 18),
        (b"FK", 18),
        (b"FO", 18),
        (b"FR", 27),
        (b"GB", 22),
        (b"GE", 22),
        (b"GI", 23),
        (b"GL", 18),
        (b"GR", 27),
        (b"GT", 28),
        (b"HR", 21),
        (b"HU", 28),
        (b"IE", 22),
        (b"IL", 23),
        (b"IQ", 23),
        (b"IS", 26),
        (b"IT", 27),
        (b"JO", 30),
        (b"KW", 30),
        (b"KZ", 20),
        (b"LB", 28),
        (b"LC", 32),
        (b"LI", 21),
        (b"LT", 20),
        (b"LU", 20),
        (b"LV", 21),
        (b"LY", 25),
        (b"MC", 27),
        (b"MD", 24),
        (b"ME", 22),
        (b"MK", 19),
        (b"MN", 20),
        (b"MR", 27),
        (b"MT", 31),
        (b"MU", 30),
        (b"NI", 28),
        (b"NL", 18),
        (b"NO", 15),
        (b"OM", 23),
        (b"PK", 24),
        (b"PL", 28),
        (b"PS", 29),
        (b"PT", 25),
        (b"QA", 29),
        (b"RO", 24),
        (b"RS", 22),
        (b"RU", 33),
        (b"SA", 24),
        (b"SC", 31),
        (b"SD", 18),
        (b"SE", 24),
        (b"SI", 19),
        (b"SK", 24),
        (b"SM", 27),
        (b"SO", 23),
        (b"ST", 25),
        (b"SV", 28),
        (b"TL", 23),
        (b"TN", 24),
        (b"TR", 26),
        (b"UA", 29),
        (b"VA", 22),
        (b"VG", 24),
        (b"XK", 20),
        (b"YE", 30),
    ];
    TABLE.iter().find(|(c, _)| **c == cc).map(|&(_, n)| usize::from(n))
}

/// The ISO 13616 check: move the first four characters to the end, read letters as 10..35, and
/// the number mod 97 must be 1. `iban` is upper-case alphanumeric ASCII without separators.
pub(crate) fn iban_mod97_ok(iban: &[u8]) -> bool {
    if iban.len() < 5 {
        return false;
    }
    let mut rem = 0u32;
    for &c in iban[4..].iter().chain(&iban[..4]) {
        match c {
            b'0'..=b'9' => rem = (rem * 10 + u32::from(c - b'0')) % 97,
            b'A'..=b'Z' => rem = (rem * 100 + u32::from(c - b'A' + 10)) % 97,
            _ => return false,
        }
    }
    rem == 1
}

/// A complete IBAN (upper-case, no separators): known country, its exact length, numeric check
/// digits, and the mod-97 check.
pub(crate) fn iban_ok(iban: &[u8]) -> bool {
    if iban.len() < 5 || !iban[2].is_ascii_digit() || !iban[3].is_ascii_digit() {
        return false;
    }
    iban_len([iban[0], iban[1]]) == Some(iban.len()) && iban_mod97_ok(iban)
}

/// A dotted-quad IPv4 address (exactly four decimal octets, no leading zeros) that is worth
/// hiding: the unspecified address, loopback, broadcast and netmask-looking values are not.
pub(crate) fn ipv4_ok(s: &[u8]) -> bool {
    let mut oct = [0u32; 4];
    let mut n = 0;
    for part in s.split(|&c| c == b'.') {
        if n == 4 || part.is_empty() || part.len() > 3 || !part.iter().all(u8::is_ascii_digit) {
            return false;
        }
        if part.len() > 1 && part[0] == b'0' {
            return false;
        }
        oct[n] = prefix_num(part, 3);
        if oct[n] > 255 {
            return false;
        }
        n += 1;
    }
    n == 4 && oct != [0, 0, 0, 0] && oct[0] != 127 && oct[0] != 255
}

/// An IPv6 address in any RFC 4291 text form (with `::` compression and an optional trailing
/// dotted IPv4), that is not the unspecified or loopback address and contains at least one digit
/// (so that words such as `cafe::face` are not mistaken for addresses).
pub(crate) fn ipv6_ok(s: &[u8]) -> bool {
    if s.len() < 3 || s.len() > 45 || !s.iter().any(u8::is_ascii_digit) {
        return false;
    }
    // Counts the groups of one side of "::" (or of the whole address), an embedded IPv4 address
    // counting for two; None when a group is malformed.
    fn side(part: &[u8], last: bool) -> Option<(usize, bool)> {
        if part.is_empty() {
            return Some((0, false));
        }
        let pieces: Vec<&[u8]> = part.split(|&c| c == b':').collect();
        let mut n = 0;
        let mut nonzero = false;
        for (k, p) in pieces.iter().enumerate() {
            if last && k + 1 == pieces.len() && p.contains(&b'.') {
                if !ipv4_any(p) {
                    return None;
                }
                n += 2;
                nonzero = true;
            } else if p.is_empty() || p.len() > 4 || !p.iter().all(u8::is_ascii_hexdigit) {
                return None;
            } else {
                n += 1;
                nonzero |= p.iter().any(|&c| c != b'0');
            }
        }
        Some((n, nonzero))
    }
    let dc = s.windows(2).position(|w| w == b"::");
    match dc {
        Some(at) => {
            let (left, right) = (&s[..at], &s[at + 2..]);
            if right.windows(2).any(|w| w == b"::") {
                return false;
            }
            let (Some((l, lz)), Some((r, rz))) = (side(left, false), side(right, true)) else {
                return false;
            };
            if l + r > 7 || !(lz || rz) {
                return false;
            }
            // "::1" (loopback) is not worth hiding.
            !(l == 0 && r == 1 && right == b"1")
        }
        None => matches!(side(s, true), Some((8, true))),
    }
}

fn ipv4_any(s: &[u8]) -> bool {
    let mut n = 0;
    for part in s.split(|&c| c == b'.') {
        if part.is_empty() || part.len() > 3 || !part.iter().all(u8::is_ascii_digit) || prefix_num(part, 3) > 255 {
            return false;
        }
        n += 1;
    }
    n == 4
}

/// Whether a JWT header segment (base64url, unpadded) decodes to a JSON object with a string
/// `alg` member.
pub(crate) fn jwt_header_has_alg(seg: &[u8]) -> bool {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    if seg.len() > 2048 {
        return false;
    }
    let Ok(raw) = URL_SAFE_NO_PAD.decode(seg) else {
        return false;
    };
    let header = serde_json::from_slice::<serde_json::Value>(&raw);
    header.is_ok_and(|h| h.get("alg").and_then(serde_json::Value::as_str).is_some_and(|alg| !alg.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_table() {
        for (n, ok) in [
            ("4111111111111111", true),
            ("4111111111111112", false),
            ("79927398713", true),
            ("79927398710", false),
            ("0", true),
            ("12a4", false),
        ] {
            assert_eq!(luhn(n.as_bytes()), ok, "{n}");
        }
    }

    #[test]
    fn cards_by_brand() {
        for (n, ok) in [
            ("4111111111111111", true),  // Visa 16
            ("4222222222222", true),     // Visa 13
            ("5555555555554444", true),  // Mastercard
            ("2223003122003222", true),  // Mastercard 2-series
            ("378282246310005", true),   // Amex
            ("6011111111111117", true),  // Discover
            ("3530111333300000", true),  // JCB
            ("30569309025904", true),    // Diners 14
            ("6200000000000005", true),  // UnionPay
            ("4111111111111", false),    // Visa prefix, 13 digits, Luhn fails
            ("1234567812345670", false), // Luhn ok, no issuer starts with 1
            ("3782822463100051", false), // Amex prefix but 16 digits
            ("9111111111111111", false),
        ] {
            assert_eq!(card_ok(n.as_bytes()), ok, "{n}");
        }
    }

    #[test]
    fn ssn_rules() {
        for (n, ok) in [
            ("123456789", true),
            ("001010001", true),
            ("899999999", true),
            ("000123456", false),
            ("666123456", false),
            ("900123456", false),
            ("123006789", false),
            ("123450000", false),
            ("078051120", false),
            ("12345678", false),
        ] {
            assert_eq!(ssn_ok(n.as_bytes()), ok, "{n}");
        }
    }

    #[test]
    fn iban_table_and_checksum() {
        for (n, ok) in [
            ("DE89370400440532013000", true),
            ("GB82WEST12345698765432", true),
            ("FR1420041010050500013M02606", true),
            ("NL91ABNA0417164300", true),
            ("NO9386011117947", true),
            ("DE89370400440532013001", false), // checksum
            ("DE8937040044053201300", false),  // length
            ("XX89370400440532013000", false), // country
            ("DEAB370400440532013000", false), // check digits not numeric
        ] {
            assert_eq!(iban_ok(n.as_bytes()), ok, "{n}");
        }
    }

    #[test]
    fn ipv4_table() {
        for (n, ok) in [
            ("192.168.1.10", true),
            ("8.8.8.8", true),
            ("10.0.0.1", true),
            ("127.0.0.1", false),
            ("0.0.0.0", false),
            ("255.255.255.0", false),
            ("256.1.1.1", false),
            ("01.2.3.4", false),
            ("1.2.3", false),
            ("1.2.3.4.5", false),
        ] {
            assert_eq!(ipv4_ok(n.as_bytes()), ok, "{n}");
        }
    }

    #[test]
    fn ipv6_table() {
        for (n, ok) in [
            ("2001:db8::1", true),
            ("2001:0db8:85a3:0000:0000:8a2e:0370:7334", true),
            ("fe80::1ff:fe23:4567:890a", true),
            ("::ffff:192.0.2.128", true),
            ("2001:db8::", true),
            ("::1", false),
            ("::", false),
            ("12:30:45", false),
            ("00:1a:2b:3c:4d:5e", false),
            ("cafe::face", false),
            ("1::2::3", false),
            ("2001:db8:::1", false),
            ("1:2:3:4:5:6:7:8:9", false),
            ("12345::1", false),
        ] {
            assert_eq!(ipv6_ok(n.as_bytes()), ok, "{n}");
        }
    }

    #[test]
    fn jwt_headers() {
        // {"alg":"HS256","typ":"JWT"}
        assert!(jwt_header_has_alg(b"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"));
        // {"typ":"JWT"}
        assert!(!jwt_header_has_alg(b"eyJ0eXAiOiJKV1QifQ"));
        assert!(!jwt_header_has_alg(b"eyJub3QganNvbg"));
        assert!(!jwt_header_has_alg(b"eyJ!!"));
    }
}
