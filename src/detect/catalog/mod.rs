//! The built-in detectors: how each one is found (its anchor), confirmed (its validator), and
//! how long a tail of unfinished text it may still need to see.
//!
//! # Design
//!
//! Scanning is one pass over the bytes, 64 at a time: per-position tables turn each window into
//! a bitmask of its *anchor* bytes (digits, `@`, `:`, `=`, `_`, `-`, `A`, `J`, `B`, and the `%`,
//! `&` and lead bytes that start what [`super::normalize`] folds), so a window of plain prose
//! costs a few instructions per byte and one branch. The scan then visits the set bits, and each
//! anchor dispatches to the detectors that byte can announce:
//!
//! | anchor | detectors |
//! |---|---|
//! | first digit of a digit group | `credit_card`, `us_ssn`, `phone`, `iban`, `ipv4` |
//! | `@` | `email` |
//! | `:` | `connection_string`, `slack_webhook` (`://`), `ipv6`, labels |
//! | `:` and `=` after a label | `password_assignment`, `aws_secret_access_key` |
//! | `_` | `github_token`, `stripe_key` |
//! | `-` | `gitlab_token`, `slack_token`, `openai_api_key`, `anthropic_api_key`, `private_key` |
//! | `A` | `aws_access_key_id`, `google_api_key` |
//! | `J` (of `eyJ`) | `jwt` |
//! | `B` (of `Bearer`), and `Authorization` labels | `bearer_token` |
//! | `/` after `hooks.slack.com` | `slack_webhook` written without its scheme |
//! | two letters before a digit group | `iban`, `gitlab_token` (`GR1348941...`) |
//!
//! `%`, `&` and `\` are anchors too: they may start an escape that [`super::normalize`] folds
//! (`%40`, `&#64;`, `\u0040`), and the scan then starts over on the folded text.
//!
//! The families live in their own files: `numbers.rs`, `email.rs`, `colon.rs` (URLs with
//! credentials, IPv6), `labels.rs`, `tokens.rs` (prefixed tokens, JWTs, PEM blocks, `Bearer`).
//!
//! Anchors are common (one byte in eighteen of prose, code and tables), so each handler first
//! rejects what cannot be its detector's start with a test or two, inlined into the scan loop:
//! the shape of a digit group (length, next byte, first digit) is one lookup in a table of what
//! each shape may start, and a `:` or `=` reads the word before it only when that word ends in
//! the last two letters of a label.
//!
//! An anchor is a *candidate*: the prefilter may report false candidates, never miss a true
//! one. Each validator then reads a bounded window around its anchor and reports one of three
//! verdicts into a [`Sink`]: a confirmed span, nothing, or *wait*: the decision depends on text
//! past the end of what has arrived, and no match may be released from the given start on. All
//! windows are bounded (the longest is a private key block, which is bounded by its own END
//! line), so scanning is linear in the input; no validator backtracks.
//!
//! Every read past the end of the text goes through the `at!` macro, which turns it into a wait
//! when more text may follow. That is what makes [`crate::detect::Engine::scan`] exact on
//! streams: a validator either decided on bytes that are all present, or it waited.

use super::normalize::is_fold_lead;
use crate::swar::{digit_run, run_of};

/// A built-in detector. The discriminant indexes tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub(crate) enum Det {
    Email,
    Phone,
    CreditCard,
    UsSsn,
    Iban,
    Ipv4,
    Ipv6,
    AwsAccessKeyId,
    AwsSecretAccessKey,
    GithubToken,
    GitlabToken,
    SlackToken,
    SlackWebhook,
    OpenaiApiKey,
    AnthropicApiKey,
    StripeKey,
    GoogleApiKey,
    Jwt,
    PrivateKey,
    BearerToken,
    PasswordAssignment,
    ConnectionString,
}

/// Number of built-in detectors.
pub(crate) const COUNT: usize = 22;

/// Every built-in detector, in the order of [`Det`].
pub(crate) const ALL: [Det; COUNT] = [
    Det::Email,
    Det::Phone,
    Det::CreditCard,
    Det::UsSsn,
    Det::Iban,
    Det::Ipv4,
    Det::Ipv6,
    Det::AwsAccessKeyId,
    Det::AwsSecretAccessKey,
    Det::GithubToken,
    Det::GitlabToken,
    Det::SlackToken,
    Det::SlackWebhook,
    Det::OpenaiApiKey,
    Det::AnthropicApiKey,
    Det::StripeKey,
    Det::GoogleApiKey,
    Det::Jwt,
    Det::PrivateKey,
    Det::BearerToken,
    Det::PasswordAssignment,
    Det::ConnectionString,
];

impl Det {
    /// The stable snake_case name used in configuration and audit records.
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Det::Email => "email",
            Det::Phone => "phone",
            Det::CreditCard => "credit_card",
            Det::UsSsn => "us_ssn",
            Det::Iban => "iban",
            Det::Ipv4 => "ipv4",
            Det::Ipv6 => "ipv6",
            Det::AwsAccessKeyId => "aws_access_key_id",
            Det::AwsSecretAccessKey => "aws_secret_access_key",
            Det::GithubToken => "github_token",
            Det::GitlabToken => "gitlab_token",
            Det::SlackToken => "slack_token",
            Det::SlackWebhook => "slack_webhook",
            Det::OpenaiApiKey => "openai_api_key",
            Det::AnthropicApiKey => "anthropic_api_key",
            Det::StripeKey => "stripe_key",
            Det::GoogleApiKey => "google_api_key",
            Det::Jwt => "jwt",
            Det::PrivateKey => "private_key",
            Det::BearerToken => "bearer_token",
            Det::PasswordAssignment => "password_assignment",
            Det::ConnectionString => "connection_string",
        }
    }

    /// Whether the default policy runs this detector. Every detector is on: an empty
    /// configuration protects everything the catalog knows about.
    pub(crate) const fn default_on(self) -> bool {
        true
    }

    /// Whether this detector recognises a credential by its own format (a prefix, a structure),
    /// as opposed to a generic shape or a label. At the same start, such a finding wins over a
    /// longer generic one: `ghp_...@github.com` is a GitHub token, not an email address.
    pub(crate) const fn specific(self) -> bool {
        self.rank() <= Det::AwsSecretAccessKey.rank()
    }

    /// Tie-break when two findings start at the same place and have the same length: the more
    /// specific detector names the finding (a JWT after `Authorization: Bearer` is a `jwt`).
    pub(crate) const fn rank(self) -> u8 {
        match self {
            Det::PrivateKey => 0,
            Det::Jwt => 1,
            Det::GithubToken => 2,
            Det::GitlabToken => 3,
            Det::SlackWebhook => 4,
            Det::SlackToken => 5,
            Det::AnthropicApiKey => 6,
            Det::OpenaiApiKey => 7,
            Det::StripeKey => 8,
            Det::GoogleApiKey => 9,
            Det::AwsAccessKeyId => 10,
            Det::AwsSecretAccessKey => 11,
            Det::ConnectionString => 12,
            Det::BearerToken => 13,
            Det::CreditCard => 14,
            Det::UsSsn => 15,
            Det::Iban => 16,
            Det::Email => 17,
            Det::Ipv6 => 18,
            Det::Ipv4 => 19,
            Det::Phone => 20,
            Det::PasswordAssignment => 21,
        }
    }

    /// Looks a detector up by name.
    pub(crate) fn from_name(name: &str) -> Option<Det> {
        ALL.iter().copied().find(|d| d.name() == name)
    }
}

/// How far before a match's start any validator looks (labels such as `SSN:` or
/// `Authorization: Bearer`, word boundaries). Streams keep this much released text.
pub(crate) const MAX_LEFT_CONTEXT: usize = 160;

/// Longest email local part (RFC 5321); also bounds how much of a trailing word is held back.
const MAX_LOCAL: usize = 64;

/// The text being scanned, and whether more may follow it.
#[derive(Clone, Copy)]
pub(crate) struct Hay<'a> {
    pub(crate) b: &'a [u8],
    pub(crate) fin: bool,
}

/// A confirmed built-in match (offsets into the scanned text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Hit {
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) det: Det,
    /// A documentation example or a placeholder in the detector's format (`ghp_xxxx...`,
    /// `AKIA...EXAMPLE`): reported as `placeholder`, left alone.
    pub(crate) placeholder: bool,
}

/// Where validators report.
#[derive(Debug)]
pub(crate) struct Sink {
    pub(crate) hits: Vec<Hit>,
    /// The earliest start of a match that cannot be decided yet.
    pub(crate) wait: usize,
    on: [bool; COUNT],
    /// The last unquoted label value run: from `.0` it stops at `.1`.
    run: (usize, usize),
    /// The same for an unquoted password, which runs to whitespace.
    pw_run: (usize, usize),
    /// Digit groups before this offset belong to an IBAN with a bad check number: no number
    /// detector starts there.
    pub(crate) shadow: usize,
    /// Whether placeholders are told apart (the default) or found as values.
    keep_placeholders: bool,
    /// The last `%` or `&` the scan passed (`usize::MAX`: none): one near the end may start a
    /// sequence that more text could still make fold (see `Engine::scan`). Meaningful for a
    /// scan of text as it is, which met nothing that folds.
    pub(crate) escape: usize,
}

impl Sink {
    pub(crate) fn new(on: [bool; COUNT], keep_placeholders: bool) -> Sink {
        Sink {
            hits: Vec::new(),
            wait: usize::MAX,
            on,
            run: (usize::MAX, 0),
            pw_run: (usize::MAX, 0),
            shadow: 0,
            keep_placeholders,
            escape: usize::MAX,
        }
    }

    #[inline]
    fn yes(&mut self, det: Det, start: usize, end: usize) {
        if start < end {
            self.hits.push(Hit { start, end, det, placeholder: false });
        }
    }

    /// A match that is a placeholder when `example` says so (and placeholders are kept).
    #[inline]
    fn found(&mut self, det: Det, start: usize, end: usize, example: bool) {
        if start < end {
            self.hits.push(Hit { start, end, det, placeholder: example && self.keep_placeholders });
        }
    }

    #[inline]
    pub(crate) fn wait(&mut self, at: usize) {
        self.wait = self.wait.min(at);
    }

    #[inline]
    fn on(&self, d: Det) -> bool {
        self.on[d as usize]
    }
}

/// Reads byte `$i`: `Some(byte)`, `None` at the true end of the text, and when more text may
/// follow, records a wait at `$start` and returns from the validator.
macro_rules! at {
    ($h:expr, $sink:expr, $i:expr, $start:expr) => {
        match $h.b.get($i) {
            Some(&c) => Some(c),
            None if $h.fin => None,
            None => {
                $sink.wait($start);
                return;
            }
        }
    };
}

/// Whether the text at `$i` starts with `$lit`, ignoring ASCII case, waiting like `at!` if the
/// text ends inside it while still agreeing.
macro_rules! starts_ci {
    ($h:expr, $sink:expr, $i:expr, $lit:expr, $start:expr) => {{
        let lit: &[u8] = $lit;
        let mut ok = true;
        for (k, &l) in lit.iter().enumerate() {
            match at!($h, $sink, $i + k, $start) {
                Some(c) if c.eq_ignore_ascii_case(&l) => {}
                _ => {
                    ok = false;
                    break;
                }
            }
        }
        ok
    }};
}

// The families, each behind its anchor bytes. Declared after the macros they read text with.
mod colon;
mod email;
mod labels;
mod numbers;
mod tokens;

use colon::{colon, slack_bare};
use email::email;
use labels::assign;
use numbers::numeric;
use tokens::{bearer, dash, jwt, underscore, upper_a};

const C_DIGIT: u8 = 1;
const C_AT: u8 = 2;
const C_COLON: u8 = 3;
const C_EQ: u8 = 4;
const C_UNDER: u8 = 5;
const C_DASH: u8 = 6;
const C_A: u8 = 7;
const C_J: u8 = 8;
const C_B: u8 = 9;
const C_HIGH: u8 = 10;
const C_ESC: u8 = 11;
const C_SLASH: u8 = 12;

static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut d = b'0';
    while d <= b'9' {
        t[d as usize] = C_DIGIT;
        d += 1;
    }
    t[b'@' as usize] = C_AT;
    t[b':' as usize] = C_COLON;
    t[b'=' as usize] = C_EQ;
    t[b'_' as usize] = C_UNDER;
    t[b'-' as usize] = C_DASH;
    t[b'A' as usize] = C_A;
    t[b'J' as usize] = C_J;
    t[b'B' as usize] = C_B;
    // The `/` after `hooks.slack.com` of a webhook written without its scheme.
    t[b'/' as usize] = C_SLASH;
    let mut x = 0x80usize;
    while x < 256 {
        if is_fold_lead(x as u8) {
            t[x] = C_HIGH;
        }
        x += 1;
    }
    // `%40`, `&#64;`: ASCII sequences that fold.
    t[b'%' as usize] = C_ESC;
    t[b'&' as usize] = C_ESC;
    // `\u0040`, `\/`: JSON escapes left visible in text.
    t[b'\\' as usize] = C_ESC;
    t
};

/// 1 for anchor bytes (class not 0), else 0.
static ANCHOR: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut x = 0usize;
    while x < 256 {
        t[x] = (CLASS[x] != 0) as u8;
        x += 1;
    }
    t
};

/// `ANCHOR_AT[k][c]`: bit `k` set when `c` is an anchor byte.
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
static ANCHOR_AT: [[u8; 256]; 8] = {
    let mut t = [[0u8; 256]; 8];
    let mut k = 0;
    while k < 8 {
        let mut x = 0usize;
        while x < 256 {
            t[k][x] = ANCHOR[x] << k;
            x += 1;
        }
        k += 1;
    }
    t
};

/// The anchor bytes as two 16-entry tables (low nibbles, high nibbles), for a 16-byte-wide lookup
/// (`i8x16.swizzle`): byte `c` is an anchor exactly when `lo[c & 15] & hi[c >> 4] != 0`. Each
/// high nibble that holds anchors (`2`-`5` for ASCII, `C`-`F` for lead bytes) has a bit of its
/// own, set in `lo` for the low nibbles of its anchors; eight such nibbles, eight bits: exact.
#[cfg(any(test, all(target_arch = "wasm32", target_feature = "simd128")))]
const NIBBLES: ([u8; 16], [u8; 16]) = {
    let (mut lo, mut hi) = ([0u8; 16], [0u8; 16]);
    let mut bits = 0u8;
    let mut h = 0;
    while h < 16 {
        let mut any = false;
        let mut l = 0;
        while l < 16 {
            any |= ANCHOR[h * 16 + l] != 0;
            l += 1;
        }
        if any {
            assert!(bits < 8, "more than eight high nibbles hold anchors");
            hi[h] = 1 << bits;
            let mut l = 0;
            while l < 16 {
                if ANCHOR[h * 16 + l] != 0 {
                    lo[l] |= 1 << bits;
                }
                l += 1;
            }
            bits += 1;
        }
        h += 1;
    }
    (lo, hi)
};

/// The scanner met a character that must be folded first; rescan the folded text.
#[derive(Debug)]
pub(crate) struct NeedsFold;

/// Runs every enabled built-in detector over `h.b[start..]` (reading before `start` for
/// context). Returns `Err(NeedsFold)` as soon as it meets a character that
/// [`super::normalize`] folds, unless `folded` says the text is already folded.
pub(crate) fn scan(h: Hay<'_>, start: usize, folded: bool, sink: &mut Sink) -> Result<(), NeedsFold> {
    let b = h.b;
    // `i`: the first byte not yet handled; `w`: the window whose anchors are being visited.
    let mut i = start;
    let mut w = start;
    while w < b.len() {
        let win = &b[w..];
        let mut m = if win.len() >= WIN { anchors(win) } else { anchors_short(win) };
        // Anchors before `i` were passed over by the handler of an earlier anchor.
        m &= mask_from(i.saturating_sub(w));
        while m != 0 {
            let at = w + m.trailing_zeros() as usize;
            i = step(h, at, folded, sink)?;
            // Most anchors end where they are: clearing the lowest bit is what `mask_from`
            // would do, without its shift.
            if i == at + 1 {
                m &= m - 1;
            } else {
                m &= mask_from(i - w);
            }
        }
        w = i.max(w + WIN);
    }
    if !h.fin {
        tail(h, sink);
    }
    Ok(())
}

/// Bytes per window of [`scan`]: one bit each in a `u32`.
const WIN: usize = 64;

/// The bits of window positions `k..`.
#[inline(always)]
fn mask_from(k: usize) -> u64 {
    if k >= WIN {
        0
    } else {
        u64::MAX << k
    }
}

/// Which of the first [`WIN`] bytes of `w` are anchors, one bit per byte: in wasm with SIMD128,
/// sixteen bytes at a time, each looked up by its two nibbles ([`NIBBLES`]).
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline(always)]
fn anchors(w: &[u8]) -> u64 {
    use crate::swar::word;
    use core::arch::wasm32::{i64x2, u8x16_bitmask, u8x16_ne, u8x16_shr, u8x16_splat, u8x16_swizzle, v128, v128_and};
    const fn table(t: [u8; 16]) -> v128 {
        let mut lo = 0u64;
        let mut hi = 0u64;
        let mut k = 0;
        while k < 8 {
            lo |= (t[k] as u64) << (8 * k);
            hi |= (t[k + 8] as u64) << (8 * k);
            k += 1;
        }
        i64x2(lo as i64, hi as i64)
    }
    let (lo_t, hi_t) = (table(NIBBLES.0), table(NIBBLES.1));
    let mut m = 0u64;
    for k in 0..WIN / 16 {
        let v = i64x2(word(w, 16 * k) as i64, word(w, 16 * k + 8) as i64);
        let lo = u8x16_swizzle(lo_t, v128_and(v, u8x16_splat(0x0F)));
        let hi = u8x16_swizzle(hi_t, u8x16_shr(v, 4));
        m |= u64::from(u8x16_bitmask(u8x16_ne(v128_and(lo, hi), u8x16_splat(0)))) << (16 * k);
    }
    m
}

/// Which of the first [`WIN`] bytes of `w` are anchors, one bit per byte.
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
#[inline(always)]
fn anchors(w: &[u8]) -> u64 {
    let mut m = 0u64;
    for (k, e) in w[..WIN].chunks_exact(8).enumerate() {
        m |= anchors8(e) << (8 * k);
    }
    m
}

/// [`anchors`] of eight bytes: byte `k` looks up its bit in its own table, so the eight bits
/// come together with ORs alone.
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
#[inline(always)]
fn anchors8(e: &[u8]) -> u64 {
    let t = &ANCHOR_AT;
    u64::from(
        t[0][e[0] as usize]
            | t[1][e[1] as usize]
            | t[2][e[2] as usize]
            | t[3][e[3] as usize]
            | t[4][e[4] as usize]
            | t[5][e[5] as usize]
            | t[6][e[6] as usize]
            | t[7][e[7] as usize],
    )
}

/// [`anchors`] for the last, shorter window.
#[inline(never)]
fn anchors_short(w: &[u8]) -> u64 {
    let mut m = 0u64;
    for (k, &c) in w.iter().take(WIN).enumerate() {
        m |= u64::from(ANCHOR[c as usize]) << k;
    }
    m
}

/// Handles the anchor at `i`; returns the first byte that may still be an anchor of interest.
#[inline(always)]
fn step(h: Hay<'_>, i: usize, folded: bool, sink: &mut Sink) -> Result<usize, NeedsFold> {
    let b = h.b;
    let c = b[i];
    if c.is_ascii_digit() {
        if i == 0 || !b[i - 1].is_ascii_digit() {
            // The rest of the group holds no other group start.
            return Ok(numeric(h, i, sink));
        }
        // Inside a digit group: nothing starts before its end.
        return Ok(digit_run(b, i, usize::MAX));
    }
    if c >= 0x80 {
        // The lead byte of a character that may fold: a curly quote or a dash in English,
        // every letter of Arabic or Devanagari text. No detector starts there.
        if !folded && super::normalize::folds_at(b, i) {
            return Err(NeedsFold);
        }
        return Ok(i + 1);
    }
    match CLASS[c as usize] {
        C_AT if sink.on(Det::Email) => email(h, i, sink),
        C_COLON => colon(h, i, sink),
        // Not `==`, `!=`, `<=`, `>=`.
        C_EQ if !(b.get(i + 1) == Some(&b'=') || (i > 0 && matches!(b[i - 1], b'=' | b'!' | b'<' | b'>'))) => {
            assign(h, i, sink)
        }
        C_UNDER => underscore(h, i, sink),
        C_DASH => {
            dash(h, i, sink);
            // Inside a run of dashes (a table rule, "-----") no later dash starts anything.
            return Ok(run_of(b, i + 1, b'-'));
        }
        C_A => upper_a(h, i, sink),
        C_J if sink.on(Det::Jwt) => jwt(h, i, sink),
        C_B if sink.on(Det::BearerToken) => bearer(h, i, sink),
        // Most slashes follow no `m`: only `...slack.com/` reads further.
        C_SLASH if i > 0 && b[i - 1] | 0x20 == b'm' && sink.on(Det::SlackWebhook) => slack_bare(h, i, sink),
        // `%` and `&` start a folded sequence only before the right two or three bytes: most
        // (`50%`, `%s`, `a && b`, `&amp;`) are rejected by the first of them.
        C_ESC => {
            sink.escape = i;
            if !folded && super::normalize::folds_at(b, i) {
                return Err(NeedsFold);
            }
        }
        _ => {}
    }
    Ok(i + 1)
}

/// The pre-anchor holdback: a match whose anchor has not arrived yet can only start in the
/// trailing run of characters that may precede an anchor (an email local part, a token prefix
/// such as `ghp`, IPv6 hex digits, a URL scheme, `eyJ`'s `ey`, an IBAN country code), or at a
/// trailing `(` or `+(` of a phone number.
#[inline(never)]
fn tail(h: Hay<'_>, sink: &mut Sink) {
    let b = h.b;
    let n = b.len();
    let mut k = n;
    while k > 0 && is_local(b[k - 1]) && n - k < MAX_LOCAL {
        k -= 1;
    }
    if k == n && n > 0 && b[n - 1] == b'(' {
        k = n - 1;
        if k > 0 && b[k - 1] == b'+' {
            k -= 1;
        }
    }
    sink.wait(k);
}

// ---------------------------------------------------------------------------------------------
// Character classes.

#[inline]
fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

#[inline]
pub(crate) fn is_local(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'%' | b'+' | b'-' | b'\'')
}

#[inline]
fn is_b64url(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'-' || c == b'_'
}

#[inline]
fn is_b64(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'+' || c == b'/' || c == b'='
}

#[inline]
fn prev(b: &[u8], i: usize) -> Option<u8> {
    if i == 0 {
        None
    } else {
        Some(b[i - 1])
    }
}

#[inline]
fn is_digit(c: Option<u8>) -> bool {
    c.is_some_and(|c| c.is_ascii_digit())
}

#[inline]
fn is_alnum(c: Option<u8>) -> bool {
    c.is_some_and(|c| c.is_ascii_alphanumeric())
}

/// Whether a token starting at `s` has a word boundary before it.
#[inline]
fn starts_word(b: &[u8], s: usize) -> bool {
    !prev(b, s).is_some_and(is_word)
}

fn eq_ci(a: &[u8], lit: &[u8]) -> bool {
    a.len() == lit.len() && a.iter().zip(lit).all(|(x, y)| x.eq_ignore_ascii_case(y))
}

fn ends_with_ci(a: &[u8], lit: &[u8]) -> bool {
    a.len() >= lit.len() && eq_ci(&a[a.len() - lit.len()..], lit)
}

/// Whether a label keyword such as `ssn` or `phone` ends just before `g`, with only label
/// punctuation (`:`, `#`, `=`, quotes, `*`, `|`, spaces) between. Reads at most 48 bytes back.
fn label_before(b: &[u8], g: usize, words: &[&[u8]]) -> bool {
    let mut k = g;
    let mut skipped = 0;
    while k > 0
        && skipped < 8
        && matches!(
            b[k - 1],
            b' ' | b'\t' | b':' | b'#' | b'=' | b'"' | b'\'' | b'`' | b'*' | b'|' | b'-' | b'.' | b'('
        )
    {
        k -= 1;
        skipped += 1;
    }
    let lo = k.saturating_sub(40);
    let before = &b[lo..k];
    words.iter().any(|w| {
        ends_with_ci(before, w) && {
            let s = k - w.len();
            !prev(b, s).is_some_and(|c| c.is_ascii_alphabetic()) && !mask_ends_at(b, s)
        }
    })
}

#[inline]
fn is_word_opt(c: Option<u8>) -> bool {
    c.is_some_and(is_word)
}

/// Whether a token body is a documentation placeholder: one character repeated (`ghp_xxxx...`,
/// `AIzaaaa...`, `glpat-XXXX...`), or a vendor's published example (AWS's keys end in `EXAMPLE`
/// or `EXAMPLEKEY`).
fn example_body(v: &[u8]) -> bool {
    let repeated = v.len() >= 8 && v.iter().all(|c| c.eq_ignore_ascii_case(&v[0]));
    repeated || ends_with_ci(v, b"EXAMPLE") || ends_with_ci(v, b"EXAMPLEKEY")
}

/// Values that stand for a secret rather than being one: `$DB_PASSWORD`, `<your-token>`,
/// `{{ secret }}`, `********`, `null`, `YOUR_API_KEY`, our own `[REDACTED:...]` masks.
fn placeholder(v: &[u8]) -> bool {
    let Some(&first) = v.first() else { return true };
    let last = v[v.len() - 1];
    // Templates and references: `<your-token>`, `{{ secret }}`, `[REDACTED:...]`, `(hidden)`,
    // `%DB_PASS%`, `%(pw)s`, `$DB_PASSWORD`, `${PW}`, `$(cat pw)`. A real password may start with
    // `(`, `%` or `$` (`(Tq8#vLw2!mZ`, `%%x9Kp$2rQ`): those need their closing half.
    let ident = |w: &[u8]| !w.is_empty() && w.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'_');
    let template = match first {
        b'<' | b'{' | b'[' => true,
        b'(' => last == b')',
        b'%' => (v.len() > 2 && last == b'%' && ident(&v[1..v.len() - 1])) || v.get(1) == Some(&b'(') || v.len() == 2,
        b'$' => matches!(v.get(1), Some(b'{' | b'(')) || (ident(&v[1..]) && !v[1].is_ascii_digit()),
        _ => false,
    };
    if template {
        return true;
    }
    if v.iter().all(|&c| c == first) && matches!(first, b'*' | b'x' | b'X' | b'.' | b'-' | b'_' | b'#' | b'?') {
        return true;
    }
    const WORDS: &[&[u8]] = &[
        b"null",
        b"none",
        b"nil",
        b"true",
        b"false",
        b"undefined",
        b"redacted",
        b"hidden",
        b"secret",
        b"password",
        b"token",
        b"string",
        b"required",
        b"optional",
    ];
    if WORDS.iter().any(|w| eq_ci(v, w)) {
        return true;
    }
    if v.len() >= 4 && eq_ci(&v[..4], b"your") {
        return true;
    }
    // An environment-variable name: upper-case words joined by underscores.
    v.contains(&b'_')
        && v.iter().all(|&c| c.is_ascii_uppercase() || c == b'_' || c.is_ascii_digit())
        && !v.iter().all(|&c| c.is_ascii_digit() || c == b'_')
}

// ---------------------------------------------------------------------------------------------
// Our own mask tokens. Redacting redacted text must change nothing, so a value that starts or
// ends right at a mask token counts as glued to it, as it was glued to the value the token
// replaced.

/// Whether a mask token this engine writes, `[REDACTED:LABEL]` or `[LABEL:1a2b3c4d]`, ends
/// at `i`.
pub(crate) fn mask_ends_at(b: &[u8], i: usize) -> bool {
    if i < 3 || b[i - 1] != b']' {
        return false;
    }
    let mut k = i - 1;
    while k > 0 && is_label_byte(b[k - 1]) && i - k < MAX_MASK {
        k -= 1;
    }
    k > 0 && b[k - 1] == b'[' && is_mask_body(&b[k..i - 1])
}

/// Whether a mask token starts at `i`: `Some(true)` or `Some(false)`, or `None` when the text
/// ends inside what could still become one.
pub(crate) fn mask_starts_at(b: &[u8], i: usize, fin: bool) -> Option<bool> {
    match b.get(i) {
        Some(b'[') => {}
        None if !fin => return None,
        _ => return Some(false),
    }
    let mut k = i + 1;
    while k < b.len() && is_label_byte(b[k]) && k - i < MAX_MASK {
        k += 1;
    }
    match b.get(k) {
        Some(b']') => Some(is_mask_body(&b[i + 1..k])),
        None if !fin && k - i < MAX_MASK => None,
        _ => Some(false),
    }
}

const MAX_MASK: usize = 96;

fn is_label_byte(c: u8) -> bool {
    c.is_ascii_uppercase() || c.is_ascii_digit() || matches!(c, b'_' | b'.' | b'-' | b':' | b'a'..=b'f')
}

/// `REDACTED:LABEL` or `LABEL:` plus eight lower-case hex digits.
fn is_mask_body(body: &[u8]) -> bool {
    let upper = |s: &[u8]| {
        !s.is_empty()
            && s.iter().all(|&c| c.is_ascii_uppercase() || c.is_ascii_digit() || matches!(c, b'_' | b'.' | b'-' | b':'))
    };
    if let Some(label) = body.strip_prefix(b"REDACTED:") {
        return upper(label);
    }
    body.len() > 9
        && body[body.len() - 9] == b':'
        && body[body.len() - 8..].iter().all(|&c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
        && upper(&body[..body.len() - 9])
}

#[cfg(test)]
mod tests {
    use super::{anchors, ANCHOR, NIBBLES, WIN};

    #[test]
    fn the_nibble_tables_classify_every_byte_as_the_anchor_table_does() {
        for c in 0..=255u8 {
            let by_nibbles = NIBBLES.0[usize::from(c & 15)] & NIBBLES.1[usize::from(c >> 4)] != 0;
            assert_eq!(by_nibbles, ANCHOR[usize::from(c)] != 0, "byte {c:#04x}");
        }
    }

    #[test]
    fn anchors_sets_one_bit_per_anchor_byte_of_the_window() {
        // Every byte value at every position of a window.
        for shift in 0..WIN {
            let w: Vec<u8> = (0..WIN).map(|k| (k * 4 + shift) as u8).collect();
            let want = w.iter().enumerate().fold(0u64, |m, (k, &c)| m | u64::from(ANCHOR[usize::from(c)]) << k);
            assert_eq!(anchors(&w), want, "shift {shift}");
        }
    }
}
