//! What a `:` announces: URLs with credentials in them (connection strings, Slack webhooks),
//! IPv6 addresses, and labels (`password: ...`).

use super::super::validate;
use super::labels::assign;
use super::{eq_ci, is_word, is_word_opt, mask_ends_at, placeholder, prev, starts_word, Det, Hay, Sink};

// `:` — URLs with credentials, IPv6, labels.

#[inline(never)]
pub(super) fn colon(h: Hay<'_>, i: usize, sink: &mut Sink) {
    if sink.on(Det::ConnectionString) || sink.on(Det::SlackWebhook) {
        url(h, i, sink);
    }
    if sink.on(Det::Ipv6) {
        ipv6(h, i, sink);
    }
    if !(h.b.get(i + 1) == Some(&b':') || prev(h.b, i) == Some(b':')) {
        assign(h, i, sink);
    }
}

/// A character of a bracketed IPv6 address.
fn is_hex(c: Option<u8>) -> bool {
    c.is_some_and(|c| c.is_ascii_hexdigit() || c == b':' || c == b'.')
}

fn is_scheme(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'+' | b'.' | b'-')
}

/// The path of a Slack webhook from `p`, the webhook starting at `k`.
fn slack_path(h: Hay<'_>, k: usize, p: usize, sink: &mut Sink) {
    let b = h.b;
    let mut j = p;
    while let Some(c) = at!(h, sink, j, k) {
        if !(c.is_ascii_alphanumeric() || matches!(c, b'/' | b'_' | b'-')) {
            break;
        }
        j += 1;
        if j - k > 512 {
            return;
        }
    }
    while b[j - 1] == b'/' {
        j -= 1;
    }
    if j - p > 20 {
        sink.yes(Det::SlackWebhook, k, j);
    }
}

/// A Slack webhook written without its scheme, `hooks.slack.com/services/...`, at the `/` after
/// the host (with a scheme, [`url`] finds it at the `:`).
#[inline(never)]
pub(super) fn slack_bare(h: Hay<'_>, i: usize, sink: &mut Sink) {
    let b = h.b;
    if i < 15 || !eq_ci(&b[i - 15..i], b"hooks.slack.com") || prev(b, i - 15) == Some(b'/') || !starts_word(b, i - 15) {
        return;
    }
    let k = i - 15;
    let p = i + 1;
    if starts_ci!(h, sink, p, b"services/", k)
        || starts_ci!(h, sink, p, b"workflows/", k)
        || starts_ci!(h, sink, p, b"triggers/", k)
    {
        slack_path(h, k, p, sink);
    }
}

fn url(h: Hay<'_>, i: usize, sink: &mut Sink) {
    let b = h.b;
    if b.get(i + 1).is_some_and(|&c| c != b'/') || (b.get(i + 1).is_none() && h.fin) {
        return;
    }
    let mut k = i;
    while k > 0 && is_scheme(b[k - 1]) && i - k <= 32 {
        k -= 1;
    }
    if k == i || i - k > 32 || !b[k].is_ascii_alphabetic() || !starts_word(b, k) || mask_ends_at(b, k) {
        return;
    }
    if !starts_ci!(h, sink, i + 1, b"//", k) {
        return;
    }
    let u = i + 3;
    let scheme = &b[k..i];
    if sink.on(Det::SlackWebhook)
        && (eq_ci(scheme, b"https") || eq_ci(scheme, b"http"))
        && starts_ci!(h, sink, u, b"hooks.slack.com/", k)
    {
        let p = u + 16;
        let path_ok = starts_ci!(h, sink, p, b"services/", k)
            || starts_ci!(h, sink, p, b"workflows/", k)
            || starts_ci!(h, sink, p, b"triggers/", k);
        if path_ok {
            slack_path(h, k, p, sink);
            return;
        }
    }
    if !sink.on(Det::ConnectionString) {
        return;
    }
    // userinfo `user:password@host`. Passwords hold what URLs forbid (`(x7$Lk9*Qa`,
    // `@r4T#w2@Kp9`, or `p%40ss`, which the scan reads folded as `p@ss`), so the userinfo runs to
    // the last '@' before a host within the authority, which ends at what no password in the
    // wild holds: whitespace, quotes, brackets, a '/' (or the mask token a previous redaction
    // left, so redacting the text again changes nothing).
    let mut j = u;
    let mut end = None;
    loop {
        match at!(h, sink, j, u) {
            Some(b'@') => {
                let host = match at!(h, sink, j + 1, u) {
                    Some(c) => c.is_ascii_alphanumeric() || (c == b'[' && is_hex(at!(h, sink, j + 2, u))),
                    None => false,
                };
                if host {
                    end = Some(j);
                }
            }
            Some(c)
                if c.is_ascii_whitespace()
                    || matches!(c, b'/' | b'"' | b'\'' | b'`' | b'<' | b'>' | b'[' | b']' | b'\\') =>
            {
                break
            }
            None => break,
            Some(_) => {}
        }
        j += 1;
        if j - u > 256 {
            break;
        }
    }
    let Some(j) = end else { return };
    let Some(c) = b[u..j].iter().position(|&c| c == b':') else { return };
    let pass = &b[u + c + 1..j];
    // `host:8080?to=a@b.example` is a port and a query, not a password.
    let port = pass.iter().take_while(|c| c.is_ascii_digit()).count();
    if pass.is_empty() || placeholder(pass) || (port > 0 && matches!(pass.get(port), None | Some(b'?' | b'#'))) {
        return;
    }
    sink.yes(Det::ConnectionString, u, j);
}

fn ipv6(h: Hay<'_>, i: usize, sink: &mut Sink) {
    let b = h.b;
    // The first colon of an address follows a hex digit, or starts "::".
    let after = b.get(i + 1).copied();
    if !(prev(b, i).is_some_and(|c| c.is_ascii_hexdigit()) || after == Some(b':') || (after.is_none() && !h.fin)) {
        return;
    }
    // Back over at most four hex digits; only the first colon of an address does the work.
    let mut k = i;
    while k > 0 && b[k - 1].is_ascii_hexdigit() {
        k -= 1;
        if i - k > 4 {
            return;
        }
    }
    if prev(b, k) == Some(b':') {
        return;
    }
    match prev(b, k) {
        Some(p) if is_word(p) || p == b'.' || p == b'-' => return,
        _ => {}
    }
    let mut j = i;
    while let Some(c) = at!(h, sink, j, k) {
        if !(c.is_ascii_hexdigit() || c == b':' || c == b'.') {
            break;
        }
        j += 1;
        if j - k > 46 {
            return;
        }
    }
    if is_word_opt(b.get(j).copied()) {
        return;
    }
    let mut e = j;
    while e > k && b[e - 1] == b'.' {
        e -= 1;
    }
    if e >= k + 2 && b[e - 1] == b':' && b[e - 2] != b':' {
        e -= 1;
    }
    if validate::ipv6_ok(&b[k..e]) {
        sink.yes(Det::Ipv6, k, e);
    }
}
