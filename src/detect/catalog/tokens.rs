//! Credentials recognised by their own prefix or structure: GitHub, GitLab, Slack, OpenAI,
//! Anthropic, Stripe, Google and AWS keys, JWTs, PEM private keys, `Bearer` tokens.

use super::super::validate;
use super::{
    ends_with_ci, eq_ci, example_body, is_alnum, is_b64, is_b64url, is_word, is_word_opt, placeholder, prev,
    starts_word, Det, Hay, Sink,
};

// Prefixed tokens.

/// Reads a token body from `j` made of bytes accepted by `class`, at most `max` long, and
/// returns its end; `None` when the body is longer than `max`.
macro_rules! body {
    ($h:expr, $sink:expr, $j:expr, $start:expr, $max:expr, $class:expr) => {{
        let mut e = $j;
        let mut over = false;
        while let Some(c) = at!($h, $sink, e, $start) {
            if !$class(c) {
                break;
            }
            e += 1;
            if e - $j > $max {
                over = true;
                break;
            }
        }
        if over {
            None
        } else {
            Some(e)
        }
    }};
}

#[inline(never)]
pub(super) fn underscore(h: Hay<'_>, i: usize, sink: &mut Sink) {
    let b = h.b;
    if sink.on(Det::GithubToken) {
        // ghp_ gho_ ghu_ ghs_ ghr_
        if i >= 3
            && eq_ci(&b[i - 3..i - 1], b"gh")
            && matches!(b[i - 1].to_ascii_lowercase(), b'p' | b'o' | b'u' | b's' | b'r')
            && starts_word(b, i - 3)
        {
            let s = i - 3;
            if let Some(e) = body!(h, sink, i + 1, s, 255, |c: u8| c.is_ascii_alphanumeric()) {
                if e - (i + 1) >= 30 && !is_word_opt(b.get(e).copied()) {
                    sink.found(Det::GithubToken, s, e, example_body(&b[i + 1..e]));
                }
            }
        }
        // github_pat_
        if i >= 6 && eq_ci(&b[i - 6..i], b"github") && starts_word(b, i - 6) {
            let s = i - 6;
            if starts_ci!(h, sink, i + 1, b"pat_", s) {
                if let Some(e) = body!(h, sink, i + 5, s, 255, is_word) {
                    if e - (i + 5) >= 22 {
                        sink.found(Det::GithubToken, s, e, example_body(&b[i + 5..e]));
                    }
                }
            }
        }
    }
    if sink.on(Det::StripeKey) {
        // sk_live_ sk_test_ rk_live_ rk_test_, and whsec_ webhook secrets.
        if i >= 2 && (eq_ci(&b[i - 2..i], b"sk") || eq_ci(&b[i - 2..i], b"rk")) && starts_word(b, i - 2) {
            let s = i - 2;
            if starts_ci!(h, sink, i + 1, b"live_", s) || starts_ci!(h, sink, i + 1, b"test_", s) {
                if let Some(e) = body!(h, sink, i + 6, s, 255, |c: u8| c.is_ascii_alphanumeric()) {
                    if e - (i + 6) >= 16 && !is_word_opt(b.get(e).copied()) {
                        sink.found(Det::StripeKey, s, e, example_body(&b[i + 6..e]));
                    }
                }
            }
        }
        if i >= 5 && eq_ci(&b[i - 5..i], b"whsec") && starts_word(b, i - 5) {
            let s = i - 5;
            if let Some(e) = body!(h, sink, i + 1, s, 255, |c: u8| c.is_ascii_alphanumeric()) {
                if e - (i + 1) >= 24 && !is_word_opt(b.get(e).copied()) {
                    sink.yes(Det::StripeKey, s, e);
                }
            }
        }
    }
}

/// GitLab's token prefixes (docs.gitlab.com, "Token prefixes"): personal, project and group
/// access, deploy, runner (and routable runner), CI/CD job, trigger, feed, incoming mail, SCIM,
/// OAuth application secret, agent, feature flags client.
const GITLAB_PREFIXES: &[&[u8]] = &[
    b"glpat", b"gldt", b"glrt", b"glrtr", b"glptt", b"glcbt", b"glimt", b"glft", b"glsoat", b"gloas", b"glagent",
    b"glffct",
];
/// Slack's token kinds: bot, user, app-level, workspace (legacy `xoxa`), refresh, session
/// (`xoxs`), rotating (`xoxe`), client (`xoxc`), cookie (`xoxd`), legacy `xoxo`.
const SLACK_PREFIXES: &[&[u8]] =
    &[b"xoxb", b"xoxp", b"xoxa", b"xoxr", b"xoxs", b"xoxe", b"xoxc", b"xoxd", b"xoxo", b"xapp"];

/// A GitLab runner registration token, `GR1348941` and twenty more characters, at `s`.
pub(super) fn gitlab_runner_registration(h: Hay<'_>, s: usize, sink: &mut Sink) {
    let b = h.b;
    if !starts_word(b, s) {
        return;
    }
    if let Some(e) = body!(h, sink, s + 9, s, 64, is_b64url) {
        if e - (s + 9) >= 20 {
            sink.yes(Det::GitlabToken, s, e);
        }
    }
}

#[inline(never)]
pub(super) fn dash(h: Hay<'_>, i: usize, sink: &mut Sink) {
    let b = h.b;
    if sink.on(Det::PrivateKey) && prev(b, i) != Some(b'-') {
        pem(h, i, sink);
    }
    // The alphanumeric word before the dash: a token prefix? Every prefix below ends in one of
    // these letters (`sk`, `glpat`, `gloas`, `xoxb`, `xapp`, ...): most dashes follow a digit or
    // another letter.
    if i == 0 || !matches!(b[i - 1] | 0x20, b'k' | b't' | b's' | b'b' | b'p' | b'a' | b'r' | b'e' | b'c' | b'd' | b'o')
    {
        return;
    }
    let mut k = i;
    while k > 0 && b[k - 1].is_ascii_alphanumeric() {
        k -= 1;
        if i - k > 7 {
            return;
        }
    }
    // Every prefix below starts with `s`, `g` or `x`.
    if k == i || !matches!(b[k] | 0x20, b's' | b'g' | b'x') || !starts_word(b, k) || prev(b, k) == Some(b'-') {
        return;
    }
    let w = &b[k..i];
    if eq_ci(w, b"sk") {
        let anthropic = starts_ci!(h, sink, i + 1, b"ant-", k);
        let det = if anthropic { Det::AnthropicApiKey } else { Det::OpenaiApiKey };
        if !sink.on(det) {
            return;
        }
        let from = if anthropic { i + 5 } else { i + 1 };
        if let Some(e) = body!(h, sink, from, k, 300, is_b64url) {
            let v = &b[from..e];
            if v.len() >= 20 && v.iter().any(u8::is_ascii_digit) && v.iter().any(u8::is_ascii_alphabetic) {
                sink.yes(det, k, e);
            }
        }
    } else if sink.on(Det::GitlabToken) && GITLAB_PREFIXES.iter().any(|p| eq_ci(w, p)) {
        if let Some(mut e) = body!(h, sink, i + 1, k, 255, is_b64url) {
            if e - (i + 1) >= 20 {
                // A routable token ends in `.`-separated parts (`glpat-<payload>.01.0k1x2y3z4`).
                for _ in 0..2 {
                    if at!(h, sink, e, k) != Some(b'.') || !is_alnum(at!(h, sink, e + 1, k)) {
                        break;
                    }
                    match body!(h, sink, e + 1, k, 16, |c: u8| c.is_ascii_alphanumeric()) {
                        Some(x) => e = x,
                        None => break,
                    }
                }
                let body_end = b[i + 1..e].iter().position(|&c| c == b'.').map_or(e, |p| i + 1 + p);
                sink.found(Det::GitlabToken, k, e, example_body(&b[i + 1..body_end]));
            }
        }
    } else if sink.on(Det::SlackToken) && SLACK_PREFIXES.iter().any(|p| eq_ci(w, p)) {
        if let Some(e) = body!(h, sink, i + 1, k, 255, |c: u8| c.is_ascii_alphanumeric() || c == b'-') {
            let v = &b[i + 1..e];
            if v.len() >= 10 && v.iter().any(u8::is_ascii_digit) {
                // A rotating token is written `xoxe.xoxp-1-...`.
                let s = if k >= 5 && eq_ci(&b[k - 5..k], b"xoxe.") { k - 5 } else { k };
                sink.yes(Det::SlackToken, s, e);
            }
        }
    }
}

/// A PEM or OpenSSH private key block, from `-----BEGIN ... PRIVATE KEY-----` to the matching
/// END line. Lines may be separated by real newlines or by the two characters `\n` (a key inside
/// a JSON or code string). A block whose body is interrupted by something that is not base64 or
/// a PEM header is cut there: the key material up to that line is still a finding.
fn pem(h: Hay<'_>, i: usize, sink: &mut Sink) {
    let b = h.b;
    if !starts_ci!(h, sink, i, b"-----BEGIN ", i) {
        return;
    }
    let mut j = i + 11;
    // The label, up to the closing dashes on the same line.
    loop {
        match at!(h, sink, j, i) {
            Some(c) if c.is_ascii_alphanumeric() || c == b' ' => j += 1,
            Some(b'-') => break,
            _ => return,
        }
        if j - i > 80 {
            return;
        }
    }
    let label = &b[i + 11..j];
    if !label.windows(11).any(|w| eq_ci(w, b"PRIVATE KEY")) {
        return;
    }
    if !starts_ci!(h, sink, j, b"-----", i) {
        return;
    }
    j += 5;
    let header_end = j;
    let mut good_end = None;
    loop {
        // Line separators: CR, LF, the escapes `\n` and `\r`, and indentation.
        loop {
            match at!(h, sink, j, i) {
                Some(b'\n' | b'\r' | b' ' | b'\t') => j += 1,
                Some(b'\\') => match at!(h, sink, j + 1, i) {
                    Some(b'n' | b'r') => j += 2,
                    _ => break,
                },
                _ => break,
            }
        }
        if starts_ci!(h, sink, j, b"-----END ", i) {
            let mut e = j + 9;
            loop {
                match at!(h, sink, e, i) {
                    Some(c) if c.is_ascii_alphanumeric() || c == b' ' => e += 1,
                    Some(b'-') => break,
                    _ => {
                        if let Some(g) = good_end {
                            sink.yes(Det::PrivateKey, i, g);
                        }
                        return;
                    }
                }
                if e - j > 80 {
                    return;
                }
            }
            let mut d = 0;
            while d < 5 && at!(h, sink, e, i) == Some(b'-') {
                e += 1;
                d += 1;
            }
            sink.yes(Det::PrivateKey, i, e);
            return;
        }
        // One body line: base64, or a header such as `Proc-Type: 4,ENCRYPTED`.
        let ls = j;
        let mut header = false;
        let mut eof = false;
        loop {
            match at!(h, sink, j, i) {
                None => {
                    eof = true;
                    break;
                }
                Some(b'\n' | b'\r') => break,
                Some(b'\\') => match at!(h, sink, j + 1, i) {
                    Some(b'n' | b'r') => break,
                    _ => {
                        j = usize::MAX;
                        break;
                    }
                },
                Some(c) if is_b64(c) => j += 1,
                Some(b':' | b',' | b'-' | b' ') if j > ls => {
                    header = true;
                    j += 1;
                }
                Some(_) => {
                    j = usize::MAX;
                    break;
                }
            }
        }
        // A header is `Name: value` with a name of letters, digits and dashes.
        let line_ok = j != usize::MAX
            && j > ls
            && (!header
                || b[ls..j]
                    .iter()
                    .position(|&c| c == b':')
                    .is_some_and(|p| p > 0 && b[ls..ls + p].iter().all(|&c| c.is_ascii_alphanumeric() || c == b'-')));
        if line_ok {
            good_end = Some(j);
        }
        if !line_ok || eof {
            // A line that is no part of a key, or the end of the text: the key is cut there.
            match good_end {
                Some(g) => sink.yes(Det::PrivateKey, i, g),
                // A block whose body is no base64 at all (`...`, `<your key here>`) teaches the
                // format: a placeholder, told by its BEGIN line.
                None if !line_ok && j != ls => sink.found(Det::PrivateKey, i, header_end, true),
                None => {}
            }
            return;
        }
    }
}

#[inline(never)]
pub(super) fn upper_a(h: Hay<'_>, i: usize, sink: &mut Sink) {
    let b = h.b;
    if !starts_word(b, i) {
        return;
    }
    let next = match b.get(i + 1) {
        Some(&c) => c,
        None if h.fin => return,
        None => {
            sink.wait(i);
            return;
        }
    };
    if sink.on(Det::GoogleApiKey) && next == b'I' && starts_ci!(h, sink, i, b"AIza", i) && &b[i..i + 4] == b"AIza" {
        if let Some(e) = body!(h, sink, i + 4, i, 36, is_b64url) {
            if e - (i + 4) == 35 {
                sink.found(Det::GoogleApiKey, i, e, example_body(&b[i + 4..e]));
            }
        }
        return;
    }
    if sink.on(Det::AwsAccessKeyId) && matches!(next, b'K' | b'S' | b'G' | b'I' | b'R' | b'N' | b'B' | b'C') {
        let mut p = [0u8; 4];
        for (k, slot) in p.iter_mut().enumerate() {
            match at!(h, sink, i + k, i) {
                Some(c) => *slot = c,
                None => return,
            }
        }
        const PREFIXES: &[&[u8; 4]] =
            &[b"AKIA", b"ASIA", b"AGPA", b"AIDA", b"AROA", b"AIPA", b"ANPA", b"ANVA", b"ABIA", b"ACCA"];
        if !PREFIXES.contains(&&p) {
            return;
        }
        if let Some(e) = body!(h, sink, i + 4, i, 17, |c: u8| c.is_ascii_alphanumeric()) {
            let v = &b[i + 4..e];
            if v.len() == 16 && v.iter().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()) {
                sink.found(Det::AwsAccessKeyId, i, e, example_body(v));
            }
        }
    }
}

#[inline(never)]
pub(super) fn jwt(h: Hay<'_>, i: usize, sink: &mut Sink) {
    let b = h.b;
    if i < 2 || &b[i - 2..i] != b"ey" {
        return;
    }
    let s = i - 2;
    if prev(b, s).is_some_and(|c| is_b64url(c) || c == b'.') {
        return;
    }
    let Some(e1) = body!(h, sink, i + 1, s, 4096, is_b64url) else {
        return;
    };
    if at!(h, sink, e1, s) != Some(b'.') {
        return;
    }
    let Some(e2) = body!(h, sink, e1 + 1, s, 65536, is_b64url) else {
        return;
    };
    if e2 - (e1 + 1) < 2 || at!(h, sink, e2, s) != Some(b'.') {
        return;
    }
    let Some(e3) = body!(h, sink, e2 + 1, s, 4096, is_b64url) else {
        return;
    };
    if validate::jwt_header_has_alg(&b[s..e1]) {
        sink.yes(Det::Jwt, s, e3);
    }
}

/// `Bearer <token>` (and `Basic <credentials>`) after an `Authorization` label, or a strong
/// looking `Bearer` token without one.
#[inline(never)]
pub(super) fn bearer(h: Hay<'_>, i: usize, sink: &mut Sink) {
    let b = h.b;
    if !starts_word(b, i) {
        return;
    }
    let basic = match at!(h, sink, i + 1, i) {
        Some(b'e' | b'E') => false,
        Some(b'a' | b'A') => true,
        _ => return,
    };
    let word: &[u8] = if basic { b"basic" } else { b"bearer" };
    if !starts_ci!(h, sink, i, word, i) {
        return;
    }
    let mut j = i + word.len();
    let mut spaces = 0;
    while at!(h, sink, j, j) == Some(b' ') {
        j += 1;
        spaces += 1;
        if spaces > 3 {
            return;
        }
    }
    if spaces == 0 {
        return;
    }
    let labelled = {
        let mut k = i;
        let mut skipped = 0;
        while k > 0 && skipped < 8 && matches!(b[k - 1], b' ' | b':' | b'=' | b'"' | b'\'' | b'`' | b'\t') {
            k -= 1;
            skipped += 1;
        }
        ends_with_ci(&b[k.saturating_sub(13)..k], b"authorization")
    };
    if basic && !labelled {
        return;
    }
    let vs = j;
    let Some(mut e) = body!(h, sink, vs, vs, 4096, |c: u8| c.is_ascii_alphanumeric()
        || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'='))
    else {
        return;
    };
    while e > vs && b[e - 1] == b'.' {
        e -= 1;
    }
    let v = &b[vs..e];
    if v.is_empty() || placeholder(v) {
        return;
    }
    let strong = v.len() >= 16 && v.iter().any(u8::is_ascii_digit) && v.iter().any(u8::is_ascii_alphabetic);
    if (labelled && v.len() >= 8) || strong {
        sink.yes(Det::BearerToken, vs, e);
    }
}
