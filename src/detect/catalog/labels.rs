//! Labels and their values: `password = value`, `"api_key": "value"`,
//! `AWS_SECRET_ACCESS_KEY=...`, `Authorization: Bearer ...`.

use super::tokens::bearer;
use super::{
    ends_with_ci, eq_ci, example_body, is_b64, is_word, mask_ends_at, placeholder, starts_word, Det, Hay, Sink,
};

// Labels: `password = value`, `"api_key": "value"`, `AWS_SECRET_ACCESS_KEY=...`.

#[derive(Clone, Copy, PartialEq, Eq)]
enum Label {
    /// password, passwd, passphrase, pwd, secret: any value that is not a placeholder.
    Password,
    /// token, api_key, access_key, secret_key, ...: a value that looks like a credential.
    Token,
    /// aws_secret_access_key and friends.
    Aws,
    /// Authorization: the value is `Bearer <token>` or `Basic <credentials>`.
    Authorization,
    /// `_gitlab_session`: GitLab's session cookie, 32 hex digits.
    GitlabSession,
}

/// Labels ending in `y` (the other keywords are listed in [`classify`]).
const AWS_LABELS: &[&[u8]] = &[b"secret_access_key", b"secretaccesskey", b"aws_secret_key", b"awssecretkey"];
const TOKEN_LABELS: &[&[u8]] = &[
    b"api_key",
    b"apikey",
    b"api-key",
    b"access_key",
    b"accesskey",
    b"secret_key",
    b"secretkey",
    b"private_key",
    b"auth_key",
];

/// Whether identifier `id` ends with `kw` at a word boundary: the whole identifier, after a
/// separator (`db_password`, `db-password`, `db.password`), or at a camelCase hump
/// (`dbPassword`).
/// `_` and `-` in `kw` match either (`aws-secret-access-key`, `AWS_SECRET_ACCESS_KEY`).
fn ends_with_kw(id: &[u8], kw: &[u8]) -> bool {
    let same = |a: &u8, k: &u8| a.eq_ignore_ascii_case(k) || (*k == b'_' && *a == b'-');
    if id.len() < kw.len() || !id[id.len() - kw.len()..].iter().zip(kw).all(|(a, k)| same(a, k)) {
        return false;
    }
    let p = id.len() - kw.len();
    if p == 0 {
        return true;
    }
    let before = id[p - 1];
    matches!(before, b'_' | b'-' | b'.')
        || (id[p].is_ascii_uppercase() && (before.is_ascii_lowercase() || before.is_ascii_digit()))
}

/// Whether an identifier whose last two bytes are `y` and `z` (in either case) may end with a
/// label [`classify`] knows: `password`, `passwd`, `pwd`, `passphrase`, `secret`, `pass`,
/// `credential(s)`, `authorization`, `token`, and every `...key`.
#[inline]
fn label_tail(y: u8, z: u8) -> bool {
    matches!(
        (y.to_ascii_lowercase(), z.to_ascii_lowercase()),
        (b'r' | b'w', b'd')
            | (b's', b'e')
            | (b'e', b't')
            | (b's' | b'l', b's')
            | (b'a', b'l')
            | (b'o' | b'e', b'n')
            | (b'e', b'y')
    )
}

/// Tokens that are not secrets by their name: `publicToken`, `csrf-token`, `next_page_token`,
/// `max_tokens`' kin. (`nonce`, `state` and `id` are no labels at all.)
fn public_token(id: &[u8]) -> bool {
    const NOT_SECRET: &[&[u8]] =
        &[b"public", b"csrf", b"xsrf", b"page", b"next", b"continuation", b"cursor", b"sync", b"pagination", b"max"];
    let head = &id[..id.len() - 5];
    let head = head.strip_suffix(b"_").or_else(|| head.strip_suffix(b"-")).unwrap_or(head);
    NOT_SECRET.iter().any(|w| ends_with_kw(head, w))
}

fn classify(id: &[u8]) -> Option<Label> {
    let any = |ks: &[&[u8]]| ks.iter().any(|k| ends_with_kw(id, k));
    // Dispatch on the last letter: most identifiers are ruled out at once.
    match id.last().map(u8::to_ascii_lowercase)? {
        b'd' if any(&[b"password", b"passwd", b"pwd"]) => Some(Label::Password),
        b'e' if any(&[b"passphrase"]) => Some(Label::Password),
        b't' if any(&[b"aws_secret"]) => Some(Label::Aws),
        b't' if any(&[b"secret"]) => Some(Label::Password),
        // "pass" alone is a password label only as a whole identifier ("pass: x", not "bypass").
        b's' if eq_ci(id, b"pass") => Some(Label::Password),
        b's' if any(&[b"credentials"]) => Some(Label::Token),
        b'l' if any(&[b"credential"]) => Some(Label::Token),
        b'n' if any(&[b"authorization"]) => Some(Label::Authorization),
        b'n' if any(&[b"gitlab_session"]) => Some(Label::GitlabSession),
        b'n' if any(&[b"token"]) && !public_token(id) => Some(Label::Token),
        b'y' if any(AWS_LABELS) => Some(Label::Aws),
        b'y' if any(TOKEN_LABELS) => Some(Label::Token),
        _ => None,
    }
}

/// Whether `c` ends an unquoted password.
fn ends_password(c: u8) -> bool {
    c.is_ascii_whitespace() || matches!(c, b'"' | b'\'' | b'`' | b'<' | b'|' | b';')
}

/// The end of the unquoted value at `vs`, which `ends` ends. The run ends at the same byte
/// wherever in it it starts: it is remembered in `run`, so that a run full of `=` or `:`
/// ("a=a=a=...") is read once, not once per anchor.
fn run_end(b: &[u8], vs: usize, run: &mut (usize, usize), ends: fn(u8) -> bool) -> usize {
    if run.0 <= vs && vs <= run.1 {
        return run.1;
    }
    let mut e = vs;
    while b.get(e).is_some_and(|&c| !ends(c)) {
        e += 1;
    }
    *run = (vs, e);
    e
}

/// Whether an unquoted value is a call or an index (`getpass()`, `os.environ["PW"]`,
/// `vault.read(path)`), not a password: a dotted name right before `(` or `[`.
fn is_call(v: &[u8]) -> bool {
    let Some(p) = v.iter().position(|&c| c == b'(' || c == b'[') else { return false };
    p > 0 && (v[0].is_ascii_alphabetic() || v[0] == b'_') && v[..p].iter().all(|&c| is_word(c) || c == b'.')
}

fn opener(close: u8) -> u8 {
    match close {
        b')' => b'(',
        b']' => b'[',
        _ => b'{',
    }
}

/// Whether `c` ends an unquoted value.
fn ends_value(c: u8) -> bool {
    c.is_ascii_whitespace()
        || matches!(c, b'"' | b'\'' | b'`' | b',' | b';' | b'<' | b'>' | b'(' | b')' | b'[' | b']' | b'{' | b'}' | b'|')
}

/// A label and its value around the `:` or `=` at `i`: `password = value`, `"api_key": "value"`,
/// `AWS_SECRET_ACCESS_KEY=...`. Inlined up to the test of the last two letters of the word
/// before, which rejects most.
#[inline(always)]
pub(super) fn assign(h: Hay<'_>, i: usize, sink: &mut Sink) {
    let b = h.b;
    // Back over `"`, `]`, `*`, spaces to the identifier.
    let mut k = i;
    let (mut skipped, mut spaces) = (0, 0);
    // Any run of spaces (column-aligned HCL, TOML, YAML); `]` only in the
    // `headers["Authorization"]` shape, never after a mask token.
    while k > 0 {
        match b[k - 1] {
            b' ' | b'\t' if spaces < MAX_ALIGN => spaces += 1,
            b'"' | b'\'' | b'`' | b'*' if skipped < 6 => skipped += 1,
            b']' if skipped < 6 && k >= 2 && matches!(b[k - 2], b'"' | b'\'') => skipped += 1,
            _ => break,
        }
        k -= 1;
    }
    // A type between the name and `=`: `var gitlabToken string = "..."`, `apiKey: string = ...`.
    if b[i] == b'='
        && k >= 8
        && b[k - 1] | 0x20 == b'g'
        && ends_with_ci(&b[..k], b"string")
        && matches!(b[k - 7], b' ' | b':')
    {
        k -= 6;
        let mut n = 0;
        while k > 0 && n < 4 && matches!(b[k - 1], b' ' | b':') {
            k -= 1;
            n += 1;
        }
    }
    // [`classify`] knows every label by its last two letters, which most words before a `:` or
    // `=` do not end in: no need to read them back.
    if k >= 2 && label_tail(b[k - 2], b[k - 1]) {
        assign_label(h, i, k, sink);
    }
}

/// The most spaces between a label and its `=` or `:` (column-aligned configuration files).
const MAX_ALIGN: usize = 40;

/// [`assign`] once the identifier before `i` ends at `id_end` in the letters of a label.
#[inline(never)]
fn assign_label(h: Hay<'_>, i: usize, id_end: usize, sink: &mut Sink) {
    let (pw, aws) = (sink.on(Det::PasswordAssignment), sink.on(Det::AwsSecretAccessKey));
    if !pw && !aws && !sink.on(Det::BearerToken) {
        return;
    }
    let b = h.b;
    let mut k = id_end;
    while k > 0 && (b[k - 1].is_ascii_alphanumeric() || matches!(b[k - 1], b'_' | b'-' | b'.')) {
        k -= 1;
        if id_end - k > 64 {
            return;
        }
    }
    let id = &b[k..id_end];
    if id.len() < 3 || !starts_word(b, k) || mask_ends_at(b, k) {
        return;
    }
    let Some(label) = classify(id) else { return };
    if label == Label::Authorization {
        // `Authorization: bearer ...` in any case; a capital `B` is an anchor of its own.
        if sink.on(Det::BearerToken) {
            let mut j = i + 1;
            while matches!(b.get(j), Some(b' ' | b'\t' | b'"' | b'\'' | b'`')) && j - i < 8 {
                j += 1;
            }
            match b.get(j) {
                Some(b'b') => bearer(h, j, sink),
                None if !h.fin => sink.wait(j),
                _ => {}
            }
        }
        return;
    }
    // Forward to the value.
    let mut j = i + 1;
    if let Some(c) = b.get(j) {
        if (b[i] == b'=' && *c == b'>') || (b[i] == b':' && *c == b'=') {
            j += 1;
        }
    }
    let mut spaces = 0;
    loop {
        match at!(h, sink, j, j) {
            Some(b' ' | b'\t' | b'*') if spaces < MAX_ALIGN => {
                j += 1;
                spaces += 1;
            }
            _ => break,
        }
    }
    let quote = match at!(h, sink, j, j) {
        Some(q @ (b'"' | b'\'' | b'`')) => Some(q),
        _ => None,
    };
    let (vs, ve, tail_ok) = if let Some(q) = quote {
        let vs = j + 1;
        let mut e = vs;
        loop {
            match at!(h, sink, e, vs) {
                Some(c) if c == q => break,
                Some(b'\n' | b'\r') | None => return,
                Some(b'\\') => e += 2,
                Some(_) => e += 1,
            }
            if e - vs > 256 {
                return;
            }
        }
        (vs, e, true)
    } else {
        let vs = j;
        // A password runs to whitespace whatever it holds (`&k2P(vn9*W`); other values stop at
        // punctuation too.
        let pw_label = label == Label::Password;
        let stop = if pw_label {
            run_end(b, vs, &mut sink.pw_run, ends_password)
        } else {
            run_end(b, vs, &mut sink.run, ends_value)
        };
        // Too long is decided even if more text follows: the run can only grow.
        if stop - vs > 256 {
            return;
        }
        if stop == b.len() && !h.fin {
            sink.wait(vs);
            return;
        }
        let mut e = stop;
        // A call or an index, not a value: `password = getpass()`, `os.environ["PW"]`.
        if matches!(b.get(e), Some(b'(' | b'[')) || (pw_label && is_call(&b[vs..e])) {
            return;
        }
        let stop = e;
        while e > vs && matches!(b[e - 1], b'.' | b':' | b'*') {
            e -= 1;
        }
        if pw_label {
            // Punctuation that closes the sentence or the bracket around the value.
            loop {
                match b[vs..e].last() {
                    Some(b',' | b';' | b'.' | b':') => e -= 1,
                    Some(&c @ (b')' | b']' | b'}')) if !b[vs..e].contains(&opener(c)) => e -= 1,
                    _ => break,
                }
            }
        }
        // After `:` in prose ("password: use a strong one") a plain word is only a value when
        // nothing else follows it on the line, as in YAML or "Password: hunter".
        let mut t = stop;
        let tail_ok = loop {
            match at!(h, sink, t, vs) {
                Some(b' ' | b'\t' | b'*') => t += 1,
                Some(b'\n' | b'\r' | b'|') | None => break true,
                Some(_) => break false,
            }
        };
        (vs, e, tail_ok)
    };
    let v = &b[vs..ve];
    if v.is_empty() || placeholder(v) {
        return;
    }
    // A value with one of our masks inside had a finding inside: it is not a new value.
    if v.iter().enumerate().any(|(k, &c)| c == b']' && mask_ends_at(b, vs + k + 1)) {
        return;
    }
    if label == Label::GitlabSession {
        if sink.on(Det::GitlabToken) && v.len() == 32 && v.iter().all(u8::is_ascii_hexdigit) {
            sink.yes(Det::GitlabToken, vs, ve);
        }
        return;
    }
    if label == Label::Aws && aws && v.len() == 40 && v.iter().all(|&c| is_b64(c)) {
        sink.found(Det::AwsSecretAccessKey, vs, ve, example_body(v));
        return;
    }
    if !pw {
        return;
    }
    let has_digit = v.iter().any(u8::is_ascii_digit);
    let all_alpha = v.iter().all(u8::is_ascii_alphabetic);
    if quote.is_none() {
        // A dotted identifier is a reference (`config.password`), not a value.
        let dotted = v.contains(&b'.')
            && v.split(|&c| c == b'.').all(|p| {
                !p.is_empty() && (p[0].is_ascii_alphabetic() || p[0] == b'_') && p.iter().all(|&c| is_word(c))
            });
        if dotted || (all_alpha && b[i] == b':' && !tail_ok) {
            return;
        }
    }
    let ok = match label {
        Label::Password => v.len() >= 3 && !v.contains(&b' ') || (quote.is_some() && v.len() >= 3),
        Label::Token | Label::Aws | Label::Authorization | Label::GitlabSession => {
            v.len() >= 8 && has_digit && !v.contains(&b' ')
        }
    };
    if ok {
        sink.yes(Det::PasswordAssignment, vs, ve);
    }
}
