//! Email addresses, announced by `@`.

use super::{eq_ci, is_local, mask_ends_at, Det, Hay, Sink, MAX_LOCAL};

// Email.

/// File extensions that follow `@` in names such as `icon@2x.png`; not top-level domains.
const NOT_TLDS: &[&[u8]] = &[
    b"png", b"jpg", b"jpeg", b"gif", b"svg", b"webp", b"bmp", b"ico", b"tif", b"tiff", b"js", b"mjs", b"ts", b"css",
    b"json", b"yaml", b"yml", b"toml", b"lock", b"txt", b"html", b"htm", b"exe", b"dll", b"so", b"dylib", b"jar",
    b"whl", b"tgz",
];

#[inline(never)]
pub(super) fn email(h: Hay<'_>, i: usize, sink: &mut Sink) {
    let b = h.b;
    let mut s = i;
    while s > 0 && is_local(b[s - 1]) {
        s -= 1;
        if i - s > MAX_LOCAL {
            return;
        }
    }
    if mask_ends_at(b, s) {
        return;
    }
    while s < i && matches!(b[s], b'.' | b'-' | b'+' | b'\'') {
        s += 1;
    }
    if s == i || b[i - 1] == b'.' {
        return;
    }
    // Domain: labels of letters, digits and hyphens separated by single dots.
    let mut j = i + 1;
    let mut last_dot = None;
    let mut label_start = j;
    loop {
        if j - i > 254 {
            return;
        }
        match at!(h, sink, j, s) {
            Some(c) if c.is_ascii_alphanumeric() || c == b'-' => j += 1,
            Some(b'.') => {
                if j == label_start || b[j - 1] == b'-' {
                    break;
                }
                match at!(h, sink, j + 1, s) {
                    Some(c) if c.is_ascii_alphanumeric() => {
                        last_dot = Some(j);
                        j += 1;
                        label_start = j;
                    }
                    _ => break,
                }
            }
            _ => break,
        }
    }
    let Some(dot) = last_dot else { return };
    let tld = &b[dot + 1..j];
    let tld_ok =
        (tld.len() >= 2 && tld.iter().all(u8::is_ascii_alphabetic)) || (tld.len() > 4 && eq_ci(&tld[..4], b"xn--"));
    if !tld_ok || NOT_TLDS.iter().any(|t| eq_ci(tld, t)) || b[j - 1] == b'-' || b[i + 1] == b'-' {
        return;
    }
    // scp-style `git@github.com:org/repo.git` is a login, not a mailbox.
    if at!(h, sink, j, s) == Some(b':') && at!(h, sink, j + 1, s).is_some_and(|c| !c.is_ascii_whitespace()) {
        return;
    }
    sink.yes(Det::Email, s, j);
}
