//! Numbers: credit cards, SSNs, phones, IBANs, IPv4, all announced by the first digit of a digit
//! group. Most groups need no detector: one lookup in [`NUM_SHAPE`] says which may start there.

use super::super::validate;
use super::{
    eq_ci, is_alnum, is_digit, is_word, is_word_opt, label_before, prev, starts_word, Det, Hay, Sink, MAX_LEFT_CONTEXT,
};
use crate::swar::digit_run;

// Numbers: credit cards, SSNs, phones, IBANs, IPv4. `g` is the first digit of a digit group.

/// Runs the number detectors on the digit group starting at `g`; returns where the group ends.
/// Inlined into the scan loop: most groups need no detector, and one table lookup says so.
#[inline(always)]
pub(super) fn numeric(h: Hay<'_>, g: usize, sink: &mut Sink) -> usize {
    let b = h.b;
    // The shape of this digit group decides which detectors could match at all: most numbers
    // in prose and code ("42,", "2024.", "x = 3") need none.
    let e = digit_run(b, g, 20);
    if g < sink.shadow {
        return e;
    }
    let l = e - g;
    let mut want = match b.get(e) {
        Some(&next) => NUM_SHAPE[num_shape_index(l, NEXT_CLASS[next as usize], b[g])],
        None if h.fin => NUM_SHAPE[num_shape_index(l, NC_END, b[g])],
        // The group may still grow: anything may follow.
        None => N_CARD | N_SSN | N_PHONE | N_IPV4,
    };
    if matches!(prev(b, g), Some(b'+' | b'(')) {
        want |= N_PHONE;
    }
    // An IBAN's check digits follow its two-letter country code.
    if g >= 2 && b[g - 1].is_ascii_alphabetic() && b[g - 2].is_ascii_alphabetic() {
        want |= N_IBAN;
    }
    if want != 0 {
        numbers(h, g, e, want, sink);
    }
    e
}

/// The number detectors `want` lets through, on the digit group `g..e`.
#[inline(never)]
fn numbers(h: Hay<'_>, g: usize, e: usize, want: u8, sink: &mut Sink) {
    let b = h.b;
    if want & N_IBAN != 0 {
        if sink.on(Det::GitlabToken) && eq_ci(&b[g - 2..g], b"GR") && b[g..].starts_with(b"1348941") {
            super::tokens::gitlab_runner_registration(h, g - 2, sink);
            return;
        }
        if sink.on(Det::Iban) {
            iban(h, g, sink);
        }
    }
    // Whether byte `k` is a digit, or the text ends before it and more may follow.
    let digit_or_more = |k: usize| match b.get(k) {
        Some(c) => c.is_ascii_digit(),
        None => !h.fin,
    };
    if want & N_CARD != 0 && sink.on(Det::CreditCard) {
        card(h, g, sink);
    }
    if want & N_SSN != 0 && sink.on(Det::UsSsn) {
        ssn(h, g, sink);
    }
    // A first group alone is too short for a separated phone number: a second group starts
    // after one to three separators.
    let phone_sep = want & N_PHONE_SEP != 0 && (digit_or_more(e + 1) || digit_or_more(e + 2) || digit_or_more(e + 3));
    if (want & N_PHONE != 0 || phone_sep) && sink.on(Det::Phone) {
        phone(h, g, sink);
    }
    // A first octet: not glued to a word or to a previous number, and another octet after the
    // dot (`ipv4` itself rejects the same left edges before reading anything).
    let p = prev(b, g);
    if want & N_IPV4 != 0
        && sink.on(Det::Ipv4)
        && digit_or_more(e + 1)
        && !matches!(p, Some(c) if is_word(c) || c == b'.')
        && !(p == Some(b'-') && is_alnum(prev(b, g - 1)))
    {
        ipv4(h, g, sink);
    }
}

/// Bits of [`NUM_SHAPE`]: which number detectors a digit group of that shape may start.
const N_CARD: u8 = 1;
const N_SSN: u8 = 2;
/// Phone numbers that need no separator: 10 or 11 digits after a label.
const N_PHONE: u8 = 4;
/// Phone numbers whose first group this is (an area code, a trunk `1`), if a group follows.
const N_PHONE_SEP: u8 = 8;
/// IPv4 addresses whose first octet this is, if an octet follows.
const N_IPV4: u8 = 16;
/// IBANs (set apart from the table: two letters before the group).
const N_IBAN: u8 = 32;

/// Classes of the byte after a digit group: other, ` `, `-`, `.`, `/`, `(`, `)`, and the end
/// of the whole text.
static NEXT_CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    t[b' ' as usize] = 1;
    t[b'-' as usize] = 2;
    t[b'.' as usize] = 3;
    t[b'/' as usize] = 4;
    t[b'(' as usize] = 5;
    t[b')' as usize] = 6;
    t
};
const NC_END: u8 = 7;

/// Index into [`NUM_SHAPE`]: group length (1 to 20), class of the next byte, first digit (`0`,
/// `1`, other).
#[inline(always)]
const fn num_shape_index(l: usize, next: u8, first: u8) -> usize {
    let f = match first {
        b'0' => 0,
        b'1' => 1,
        _ => 2,
    };
    (l * 8 + next as usize) * 3 + f
}

/// For each shape of a digit group, the number detectors that may start there. Each condition
/// is necessary for its detector to report a match or a wait:
///
/// - a card number is one group of 13 to 19 digits, or groups whose first has 4 to 6 digits,
///   separated by spaces, dashes or dots;
/// - an SSN is 9 digits, or 3 then a space or dash;
/// - a national phone number's first group is an area code (3 digits in North America, 2 to 5
///   starting with 0 in Europe) or the trunk prefix 1, before a separator; or it is one
///   unseparated group of 10 or 11 digits after a label (a `+` or `(` before the group is
///   checked apart);
/// - an IPv4 address starts with 1 to 3 digits and a dot.
static NUM_SHAPE: [u8; 21 * 8 * 3] = {
    let mut t = [0u8; 21 * 8 * 3];
    let mut l = 1;
    while l <= 20 {
        let mut nc = 0;
        while nc < 8 {
            let mut k = 0;
            while k < 3 {
                let first = [b'0', b'1', b'2'][k];
                let sep = nc == 1 || nc == 2;
                let mut v = 0;
                if l >= 13 || (l >= 4 && l <= 6 && (sep || nc == 3)) {
                    v |= N_CARD;
                }
                if l == 9 || (l == 3 && (sep || nc == 3)) {
                    v |= N_SSN;
                }
                if l == 10 || l == 11 || (l == 12 && first == b'0') {
                    v |= N_PHONE;
                }
                let first_ok = l == 3 || (l == 1 && first == b'1') || (l >= 2 && l <= 5 && first == b'0');
                if first_ok && nc >= 1 && nc <= 6 {
                    v |= N_PHONE_SEP;
                }
                if l <= 3 && nc == 3 {
                    v |= N_IPV4;
                }
                t[num_shape_index(l, nc as u8, first)] = v;
                k += 1;
            }
            nc += 1;
        }
        l += 1;
    }
    t
};

/// Left edge of a number: not glued to a word, and not the fraction or continuation of a
/// previous number (`3.14`, `1,234`, UUID segments such as `-446655440000`).
fn number_left_ok(b: &[u8], s: usize) -> bool {
    match prev(b, s) {
        None => true,
        Some(p) if is_word(p) => false,
        Some(b'.') => !is_digit(prev(b, s - 1)),
        Some(b'-' | b'/') => !is_alnum(prev(b, s - 1)),
        Some(_) => true,
    }
}

fn card(h: Hay<'_>, g: usize, sink: &mut Sink) {
    let b = h.b;
    if !number_left_ok(b, g) {
        return;
    }
    let mut digits = [0u8; 19];
    let mut nd = 0usize;
    let mut sep: Option<u8> = None;
    let mut groups = 0usize;
    let mut first_len = 0usize;
    let mut best = None;
    let mut j = g;
    loop {
        let gs = j;
        while let Some(c) = at!(h, sink, j, g) {
            if !c.is_ascii_digit() {
                break;
            }
            if nd == 19 {
                // Twenty digits: no card, and no longer one can grow from here.
                if let Some(e) = best {
                    sink.yes(Det::CreditCard, g, e);
                }
                return;
            }
            digits[nd] = c;
            nd += 1;
            j += 1;
        }
        let glen = j - gs;
        groups += 1;
        if groups == 1 {
            first_len = glen;
        }
        let shape = if groups == 1 { true } else { (4..=6).contains(&first_len) && (3..=6).contains(&glen) };
        if !shape {
            break;
        }
        let next = at!(h, sink, j, g);
        let after = if matches!(next, Some(b' ' | b'-' | b'.' | b',' | b'/')) { at!(h, sink, j + 1, g) } else { None };
        let right_ok = match next {
            None => true,
            Some(c) if is_word(c) => false,
            Some(b'.' | b',' | b'/') => !is_alnum(after),
            Some(b'-') => !is_alnum(after),
            Some(_) => true,
        };
        if (13..=19).contains(&nd) && right_ok && validate::card_ok(&digits[..nd]) {
            best = Some(j);
        }
        match next {
            Some(s @ (b' ' | b'-' | b'.')) if (sep.is_none() || sep == Some(s)) && is_digit(after) => {
                sep = Some(s);
                j += 1;
            }
            _ => break,
        }
    }
    if let Some(e) = best {
        sink.yes(Det::CreditCard, g, e);
    }
}

fn ssn(h: Hay<'_>, g: usize, sink: &mut Sink) {
    let b = h.b;
    if !number_left_ok(b, g) {
        return;
    }
    let mut d = [0u8; 9];
    for (k, slot) in d.iter_mut().enumerate().take(3) {
        match at!(h, sink, g + k, g) {
            Some(c) if c.is_ascii_digit() => *slot = c,
            _ => return,
        }
    }
    let s = at!(h, sink, g + 3, g);
    let end;
    let sep;
    match s {
        Some(c) if c.is_ascii_digit() => {
            for (k, slot) in d.iter_mut().enumerate().skip(3) {
                match at!(h, sink, g + k, g) {
                    Some(c) if c.is_ascii_digit() => *slot = c,
                    _ => return,
                }
            }
            end = g + 9;
            sep = None;
        }
        Some(c @ (b'-' | b' ' | b'.')) => {
            let mut j = g + 4;
            for slot in &mut d[3..5] {
                match at!(h, sink, j, g) {
                    Some(x) if x.is_ascii_digit() => *slot = x,
                    _ => return,
                }
                j += 1;
            }
            if at!(h, sink, j, g) != Some(c) {
                return;
            }
            j += 1;
            for slot in &mut d[5..9] {
                match at!(h, sink, j, g) {
                    Some(x) if x.is_ascii_digit() => *slot = x,
                    _ => return,
                }
                j += 1;
            }
            end = j;
            sep = Some(c);
        }
        _ => return,
    }
    let next = at!(h, sink, end, g);
    match next {
        None => {}
        Some(c) if is_word(c) => return,
        Some(c @ (b'-' | b'.' | b'/' | b' ')) => {
            let after = at!(h, sink, end + 1, g);
            if is_digit(after) && (c != b' ' || sep == Some(b' ')) {
                return;
            }
        }
        Some(_) => {}
    }
    if !validate::ssn_ok(&d) {
        return;
    }
    // Bare nine digits, and dots (which version numbers use too), only after a label.
    if matches!(sep, None | Some(b'.'))
        && !label_before(
            b,
            g,
            &[
                b"ssn",
                b"social security number",
                b"social security no",
                b"social security",
                b"ss#",
                b"ssn#",
                b"social security number is",
                b"social security number was",
                b"ssn is",
            ],
        )
    {
        return;
    }
    sink.yes(Det::UsSsn, g, end);
}

fn nanp(d: &[u8]) -> bool {
    d.len() == 10 && (b'2'..=b'9').contains(&d[0]) && (b'2'..=b'9').contains(&d[3])
}

fn phone(h: Hay<'_>, g: usize, sink: &mut Sink) {
    let b = h.b;
    match prev(b, g) {
        Some(b'+') => phone_at(h, g - 1, g, sink),
        Some(b'(') => {
            // "(415) 555-2671" opens an area code; "(415-555-2671)" is a number in parentheses.
            let s = if prev(b, g - 1) == Some(b'+') { g - 2 } else { g - 1 };
            phone_at(h, s, g, sink);
            phone_at(h, g, g, sink);
        }
        _ => phone_at(h, g, g, sink),
    }
}

/// A phone number starting at `s` (`+`, `(` or the first digit) whose first digit is at `g`.
fn phone_at(h: Hay<'_>, s: usize, g: usize, sink: &mut Sink) {
    let b = h.b;
    if !number_left_ok(b, s) || prev(b, s) == Some(b'+') {
        return;
    }
    let intl = b[s] == b'+';
    let mut open = s < g && b[g - 1] == b'(';
    let mut digits = [0u8; 16];
    let mut nd = 0usize;
    let mut glens = [0u8; 8];
    let mut ng = 0usize;
    let mut best = None;
    let mut j = g;
    let mut sep_before_open = open;
    loop {
        let gs = j;
        while let Some(c) = at!(h, sink, j, s) {
            if !c.is_ascii_digit() {
                break;
            }
            if nd == 16 {
                break;
            }
            digits[nd] = c;
            nd += 1;
            j += 1;
        }
        if nd == 16 {
            break;
        }
        let glen = j - gs;
        let next = at!(h, sink, j, s);
        // "+49 (0)30 ...": a trunk zero in parentheses is not dialled from abroad.
        if intl && glen == 1 && digits[nd - 1] == b'0' && sep_before_open && next == Some(b')') && ng > 0 {
            nd -= 1;
        } else {
            if ng == glens.len() {
                break;
            }
            glens[ng] = glen as u8;
            ng += 1;
        }
        let after = if matches!(next, Some(b'.' | b'-' | b'/')) { at!(h, sink, j + 1, s) } else { None };
        let right_ok = match next {
            None => true,
            Some(c) if is_word(c) => false,
            Some(b'.' | b'-' | b'/') => !is_alnum(after),
            Some(_) => true,
        };
        let context = || label_before(b, s, PHONE_LABELS) || contact_context(b, s, next);
        if right_ok && !open && phone_shape(intl, &digits[..nd], &glens[..ng], context) {
            best = Some(j);
        }
        // No longer national number has these groups ("1 2 3 4 ..." is a list, not a phone).
        if !intl && !national_groups_ok(&glens[..ng]) {
            break;
        }
        // A separator of one to three characters from " -./()", then more digits.
        let mut k = j;
        let mut spaces = 0;
        sep_before_open = false;
        while k - j < 3 {
            match at!(h, sink, k, s) {
                Some(b' ') => spaces += 1,
                Some(b'-' | b'.' | b'/') => {}
                Some(b'(') => {
                    if open {
                        break;
                    }
                    open = true;
                    sep_before_open = true;
                }
                Some(b')') => {
                    if !open {
                        break;
                    }
                    open = false;
                }
                _ => break,
            }
            k += 1;
        }
        if k == j || spaces > 1 || !is_digit(at!(h, sink, k, s)) {
            break;
        }
        j = k;
    }
    if let Some(e) = best {
        sink.yes(Det::Phone, s, e);
    }
}

/// Whether national group lengths `g` are those of some number [`phone_shape`] accepts, or
/// could become them with more groups: a prefix of `3 3 4`, `1 3 3 4` or `2 2 2 2 2`, or an
/// area code of 3 to 5 digits followed by groups of at least 3, 12 digits at most.
fn national_groups_ok(g: &[u8]) -> bool {
    let prefix_of = |shape: &[u8]| g.len() <= shape.len() && groups_eq(g, &shape[..g.len()]);
    prefix_of(&[3, 3, 4])
        || prefix_of(&[1, 3, 3, 4])
        || prefix_of(&[2, 2, 2, 2, 2])
        || (g.first().is_some_and(|f| (3..=5).contains(f))
            && g.iter().skip(1).all(|&x| x >= 3)
            && g.iter().map(|&x| usize::from(x)).sum::<usize>() <= 12)
}

/// `g == shape`, element by element: a slice comparison calls `memcmp`, which costs more than
/// these few bytes.
#[inline]
fn groups_eq(g: &[u8], shape: &[u8]) -> bool {
    g.len() == shape.len() && g.iter().zip(shape).all(|(a, b)| a == b)
}

const PHONE_LABELS: &[&[u8]] =
    &[b"phone", b"tel", b"telephone", b"mobile", b"cell", b"call", b"fax", b"ph", b"whatsapp"];

/// Whether the digits `d` of an unseparated national number fit a numbering plan: North
/// America (10 digits, area code and exchange from 2 to 9, or 11 with the trunk `1`); the UK
/// (11 digits: `01`, `02` geographic, `03`, `07` mobile, `08`); France (10 digits, `01` to `09`);
/// Germany (a trunk `0`, an area code from `2` to `9` or a mobile `015`, `016`, `017`, 10 to 12
/// digits).
fn national_plan(d: &[u8]) -> bool {
    let n = d.len();
    match (d.first(), d.get(1)) {
        (Some(b'0'), Some(&x)) => {
            // 10: France, Germany; 11: the UK (01, 02, 03, 07, 08), Germany; 12: German mobiles.
            ((n == 10 || n == 11) && x != b'0') || (n == 12 && x == b'1' && matches!(d[2], b'5' | b'6' | b'7'))
        }
        (Some(b'1'), _) => n == 11 && nanp(&d[1..]),
        _ => n == 10 && nanp(d),
    }
}

/// Words that announce a phone number in the text before it (English, German, French).
const CONTACT_WORDS: &[&[u8]] = &[
    b"phone",
    b"telephone",
    b"tel",
    b"mobile",
    b"cell",
    b"cellphone",
    b"call",
    b"calls",
    b"fax",
    b"whatsapp",
    b"line",
    b"landline",
    b"ring",
    b"dial",
    b"text",
    b"sms",
    b"reach",
    b"hotline",
    b"helpline",
    b"telefon",
    b"telefonnummer",
    b"rufnummer",
    b"handy",
    b"mobil",
    b"mobilnummer",
    b"anrufen",
    b"erreichbar",
    b"erreichen",
    b"portable",
    b"appeler",
    b"appelez",
    b"joindre",
    b"numero",
    b"t\xc3\xa9l\xc3\xa9phone",
    b"t\xc3\xa9l",
    b"num\xc3\xa9ro",
    b"fixe",
];

/// Whether the text before a number at `s` announces a phone number, within the left context
/// a stream keeps: a contact word earlier in the same sentence ("you can call her on ...", "the
/// office line is ..."); a number alone on its line (`next` ends it) after a line with a contact
/// word ("Reach the desk at:"); or a Markdown table cell under a Phone or Tel heading.
fn contact_context(b: &[u8], s: usize, next: Option<u8>) -> bool {
    let lo = s.saturating_sub(MAX_LEFT_CONTEXT - 8);
    let line = b[lo..s].iter().rposition(|&c| c == b'\n').map_or(lo, |p| lo + p + 1);
    let before = &b[line..s];
    if before.iter().rev().find(|c| !c.is_ascii_whitespace()) == Some(&b'|') {
        return table_heading(b, lo, line, before.iter().filter(|&&c| c == b'|').count());
    }
    // Back to the start of the sentence.
    let from = before.windows(2).rposition(|w| matches!(w[0], b'.' | b'!' | b'?') && w[1] == b' ').map_or(0, |p| p + 2);
    if has_contact_word(&before[from..]) {
        return true;
    }
    let alone = before.iter().all(|&c| matches!(c, b' ' | b'\t' | b'-' | b'*' | b'>'));
    if alone && matches!(next, None | Some(b'\n' | b'\r')) && line > lo {
        let prev_start = b[lo..line - 1].iter().rposition(|&c| c == b'\n').map_or(lo, |p| lo + p + 1);
        return has_contact_word(&b[prev_start..line - 1]);
    }
    false
}

fn has_contact_word(text: &[u8]) -> bool {
    text.split(|c| !(c.is_ascii_alphanumeric() || *c >= 0x80))
        .any(|w| !w.is_empty() && CONTACT_WORDS.iter().any(|k| eq_ci(w, k)))
}

/// Whether column `col` (1-based, by the `|` before it) of the table whose row starts at `row`
/// has a contact word in its heading: the row above the `|---|` rule, within the context from
/// `lo`.
fn table_heading(b: &[u8], lo: usize, row: usize, col: usize) -> bool {
    let mut end = row;
    // Walk up at most a few rows to the rule, then take the heading above it.
    for _ in 0..4 {
        if end <= lo + 1 {
            return false;
        }
        let start = b[lo..end - 1].iter().rposition(|&c| c == b'\n').map_or(lo, |p| lo + p + 1);
        let l = &b[start..end - 1];
        let rule = l.contains(&b'-') && l.iter().all(|&c| matches!(c, b'|' | b'-' | b':' | b' ' | b'\t' | b'\r'));
        if rule {
            if start <= lo + 1 || start == lo {
                return false;
            }
            let hs = b[lo..start - 1].iter().rposition(|&c| c == b'\n').map_or(lo, |p| lo + p + 1);
            if hs == lo && lo > 0 {
                // The heading may be cut by the edge of the context: not read.
                return false;
            }
            let cell = b[hs..start - 1].split(|&c| c == b'|').nth(col);
            return cell.is_some_and(has_contact_word);
        }
        end = start;
    }
    false
}

fn phone_shape(intl: bool, d: &[u8], g: &[u8], label: impl Fn() -> bool) -> bool {
    let n = d.len();
    if intl {
        return match (d.first(), d.get(1)) {
            (Some(b'1'), _) => n == 11 && nanp(&d[1..]),
            (Some(b'4'), Some(b'4')) => (11..=12).contains(&n) && d[2] != b'0',
            (Some(b'4'), Some(b'9')) => (8..=14).contains(&n) && d[2] != b'0',
            (Some(b'3'), Some(b'3')) => n == 11 && d[2] != b'0',
            (Some(b'0'), _) => false,
            _ => (8..=15).contains(&n),
        };
    }
    if g.len() == 1 {
        // An unseparated number is a phone number only in a contact context ("Tel:", "call her
        // on", a Phone column), and only as a numbering plan allows it.
        return national_plan(d) && label();
    }
    if nanp(d) && groups_eq(g, &[3, 3, 4]) {
        return true;
    }
    if n == 11 && d[0] == b'1' && nanp(&d[1..]) && groups_eq(g, &[1, 3, 3, 4]) {
        return true;
    }
    if d.first() == Some(&b'0') && d.get(1).is_some_and(|&c| c != b'0') {
        // France: 0X XX XX XX XX.
        if n == 10 && groups_eq(g, &[2, 2, 2, 2, 2]) {
            return true;
        }
        // UK (11 digits) and Germany (10 to 12): an area code of 3 to 5 digits, then the rest.
        return (10..=12).contains(&n) && (3..=5).contains(&g[0]) && g.iter().skip(1).all(|&x| x >= 3);
    }
    false
}

fn iban(h: Hay<'_>, g: usize, sink: &mut Sink) {
    let b = h.b;
    let (c0, c1) = (b[g - 2], b[g - 1]);
    if !c0.is_ascii_alphabetic() || !c1.is_ascii_alphabetic() {
        return;
    }
    let s = g - 2;
    if !starts_word(b, s) {
        return;
    }
    let cc = [c0.to_ascii_uppercase(), c1.to_ascii_uppercase()];
    let Some(len) = validate::iban_len(cc) else {
        return;
    };
    let mut buf = [0u8; 34];
    buf[0] = cc[0];
    buf[1] = cc[1];
    let mut n = 2;
    let mut j = g;
    let mut sep = None;
    while n < len {
        match at!(h, sink, j, s) {
            Some(c) if c.is_ascii_alphanumeric() => {
                buf[n] = c.to_ascii_uppercase();
                n += 1;
                j += 1;
            }
            // Grouped with spaces or dashes, one kind throughout.
            Some(c @ (b' ' | b'-')) if n >= 4 && sep.map_or(true, |x| x == c) => match at!(h, sink, j + 1, s) {
                Some(d) if d.is_ascii_alphanumeric() => {
                    sep = Some(c);
                    j += 1
                }
                _ => return,
            },
            _ => return,
        }
    }
    if is_alnum(at!(h, sink, j, s)) {
        return;
    }
    if validate::iban_ok(&buf[..n]) {
        sink.yes(Det::Iban, s, j);
    } else {
        // An IBAN with a bad check number is still an IBAN's digits, not a card or a phone
        // number: the number detectors pass over its groups.
        sink.shadow = j;
    }
}

fn ipv4(h: Hay<'_>, g: usize, sink: &mut Sink) {
    let b = h.b;
    match prev(b, g) {
        Some(p) if is_word(p) || p == b'.' => return,
        Some(b'-') if is_alnum(prev(b, g - 1)) => return,
        _ => {}
    }
    let mut j = g;
    while let Some(c) = at!(h, sink, j, g) {
        if !(c.is_ascii_digit() || c == b'.') {
            break;
        }
        j += 1;
        if j - g > 16 {
            return;
        }
    }
    if is_word_opt(b.get(j).copied()) {
        return;
    }
    let mut e = j;
    if b[e - 1] == b'.' {
        e -= 1;
    }
    if validate::ipv4_ok(&b[g..e]) {
        sink.yes(Det::Ipv4, g, e);
    }
}
