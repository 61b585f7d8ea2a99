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
use super::validate;

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
    /// The last `%` or `&` the scan passed (`usize::MAX`: none): one near the end may start a
    /// sequence that more text could still make fold (see `Engine::scan`). Meaningful for a
    /// scan of text as it is, which met nothing that folds.
    pub(crate) escape: usize,
}

impl Sink {
    pub(crate) fn new(on: [bool; COUNT]) -> Sink {
        Sink { hits: Vec::new(), wait: usize::MAX, on, run: (usize::MAX, 0), escape: usize::MAX }
    }

    #[inline]
    fn yes(&mut self, det: Det, start: usize, end: usize) {
        if start < end {
            self.hits.push(Hit { start, end, det });
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

/// Which of the first [`WIN`] bytes of `w` are anchors, one bit per byte.
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

/// Whether `b` contains byte `x` or byte `y`, sixteen bytes at a time (a `str` search for two
/// `char`s decodes every character; this runs at memory speed on native and wasm alike).
pub(crate) fn contains2(b: &[u8], x: u8, y: u8) -> bool {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    #[inline(always)]
    fn word(w: &[u8]) -> u64 {
        u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]])
    }
    // A byte of `v` is zero exactly when the expression has its high bit (as a whole: some byte
    // of `v` is zero iff the result is not 0).
    #[inline(always)]
    fn zero(v: u64) -> u64 {
        v.wrapping_sub(LO) & !v & HI
    }
    let (rx, ry) = (LO * u64::from(x), LO * u64::from(y));
    let mut chunks = b.chunks_exact(16);
    for c in &mut chunks {
        let (a, d) = (word(&c[..8]), word(&c[8..]));
        if zero(a ^ rx) | zero(a ^ ry) | zero(d ^ rx) | zero(d ^ ry) != 0 {
            return true;
        }
    }
    chunks.remainder().iter().any(|&c| c == x || c == y)
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

// ---------------------------------------------------------------------------------------------
// Numbers: credit cards, SSNs, phones, IBANs, IPv4. `g` is the first digit of a digit group.

/// Runs the number detectors on the digit group starting at `g`; returns where the group ends.
/// Inlined into the scan loop: most groups need no detector, and one table lookup says so.
#[inline(always)]
fn numeric(h: Hay<'_>, g: usize, sink: &mut Sink) -> usize {
    let b = h.b;
    // The shape of this digit group decides which detectors could match at all: most numbers
    // in prose and code ("42,", "2024.", "x = 3") need none.
    let e = digit_run(b, g, 20);
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
    if want & N_IBAN != 0 && sink.on(Det::Iban) {
        iban(h, g, sink);
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
                if l == 9 || (l == 3 && sep) {
                    v |= N_SSN;
                }
                if l == 10 || l == 11 {
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

/// The end of the run of ASCII digits at `g`, looking at no more than `max` of them. Eight
/// bytes at a time where the text has them: the end of a number is as unpredictable as its
/// length, and one branch per digit mispredicts on every number.
#[inline]
fn digit_run(b: &[u8], g: usize, max: usize) -> usize {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let mut e = g;
    while let Some(w) = b.get(e..e + 8) {
        let v = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
        // Per byte, with the top bit set aside: at least '0', and at least ':'.
        let low = (v & !HI) | HI;
        let ge0 = low.wrapping_sub(LO * 0x30);
        let ge_colon = low.wrapping_sub(LO * 0x3A);
        // A digit: top bit clear, >= '0', < ':'.
        let digit = ge0 & !ge_colon & !v & HI;
        let n = (!digit & HI).trailing_zeros() as usize / 8;
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

/// The end of the run of byte `c` from `e`, eight bytes at a time: a loop of one byte per turn
/// runs at half its speed or at full speed as the code around it happens to be aligned.
#[inline]
fn run_of(b: &[u8], mut e: usize, c: u8) -> usize {
    let pattern = u64::from_le_bytes([c; 8]);
    while let Some(w) = b.get(e..e + 8) {
        let v = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]) ^ pattern;
        if v != 0 {
            return e + v.trailing_zeros() as usize / 8;
        }
        e += 8;
    }
    while b.get(e) == Some(&c) {
        e += 1;
    }
    e
}

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
        Some(c @ (b'-' | b' ')) => {
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
    if sep.is_none()
        && !label_before(
            b,
            g,
            &[b"ssn", b"social security number", b"social security no", b"social security", b"ss#", b"ssn#"],
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
        if right_ok && !open && phone_shape(intl, &digits[..nd], &glens[..ng], || label_before(b, s, PHONE_LABELS)) {
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
        // An unseparated number is a phone number only right after a label such as "Tel:".
        return ((n == 10 && nanp(d))
            || (n == 11 && d[0] == b'1' && nanp(&d[1..]))
            || ((10..=11).contains(&n) && d[0] == b'0' && d[1] != b'0'))
            && label();
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
    while n < len {
        match at!(h, sink, j, s) {
            Some(c) if c.is_ascii_alphanumeric() => {
                buf[n] = c.to_ascii_uppercase();
                n += 1;
                j += 1;
            }
            Some(b' ') if n >= 4 => match at!(h, sink, j + 1, s) {
                Some(c) if c.is_ascii_alphanumeric() => j += 1,
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

#[inline]
fn is_word_opt(c: Option<u8>) -> bool {
    c.is_some_and(is_word)
}

// ---------------------------------------------------------------------------------------------
// Email.

/// File extensions that follow `@` in names such as `icon@2x.png`; not top-level domains.
const NOT_TLDS: &[&[u8]] = &[
    b"png", b"jpg", b"jpeg", b"gif", b"svg", b"webp", b"bmp", b"ico", b"tif", b"tiff", b"js", b"mjs", b"ts", b"css",
    b"json", b"yaml", b"yml", b"toml", b"lock", b"txt", b"html", b"htm", b"exe", b"dll", b"so", b"dylib", b"jar",
    b"whl", b"tgz",
];

#[inline(never)]
fn email(h: Hay<'_>, i: usize, sink: &mut Sink) {
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

// ---------------------------------------------------------------------------------------------
// `:` — URLs with credentials, IPv6, labels.

#[inline(never)]
fn colon(h: Hay<'_>, i: usize, sink: &mut Sink) {
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

/// A character of a URL's host name or port (a bracketed IPv6 address is read apart).
fn is_host(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_' | b'~' | b'%' | b':')
}

/// A character of a bracketed IPv6 address.
fn is_hex(c: Option<u8>) -> bool {
    c.is_some_and(|c| c.is_ascii_hexdigit() || c == b':' || c == b'.')
}

fn is_scheme(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'+' | b'.' | b'-')
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
            return;
        }
    }
    if !sink.on(Det::ConnectionString) {
        return;
    }
    // userinfo `user:password@host`. A password may hold an '@' (`p%40ss`, which the scan reads
    // folded as `p@ss`), so the userinfo ends at the first '@' before a host that no further '@'
    // follows, as URL parsers split it; when every host runs into another '@', at the first '@'
    // before a host. The choice reads only the authority, up to a character that ends it (or
    // the mask token a previous redaction left), so redacting the text again changes nothing.
    let mut j = u;
    let mut first_host = None;
    let end = loop {
        match at!(h, sink, j, u) {
            Some(b'@') => {
                let host = match at!(h, sink, j + 1, u) {
                    Some(c) => c.is_ascii_alphanumeric() || (c == b'[' && is_hex(at!(h, sink, j + 2, u))),
                    None => false,
                };
                if host {
                    let mut k = j + 1;
                    if at!(h, sink, k, u) == Some(b'[') {
                        k += 1;
                        while is_hex(at!(h, sink, k, u)) && k - u <= 256 {
                            k += 1;
                        }
                        if at!(h, sink, k, u) == Some(b']') {
                            k += 1;
                        }
                    }
                    while let Some(c) = at!(h, sink, k, u) {
                        if !is_host(c) || k - u > 256 {
                            break;
                        }
                        k += 1;
                    }
                    if at!(h, sink, k, u) != Some(b'@') {
                        break Some(j);
                    }
                    first_host.get_or_insert(j);
                    // Go on at the next '@' (a host holds no character that ends the authority).
                    j = k;
                    continue;
                }
            }
            Some(c)
                if c.is_ascii_whitespace()
                    || matches!(c, b'/' | b'?' | b'#' | b'"' | b'\'' | b'`' | b'<' | b'>' | b'[' | b']' | b'\\') =>
            {
                break first_host
            }
            None => break first_host,
            Some(_) => {}
        }
        j += 1;
        if j - u > 256 {
            break first_host;
        }
    };
    let Some(j) = end else { return };
    let Some(c) = b[u..j].iter().position(|&c| c == b':') else { return };
    let pass = &b[u + c + 1..j];
    if pass.is_empty() || placeholder(pass) {
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

// ---------------------------------------------------------------------------------------------
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
}

/// Labels ending in `y` (the other keywords are listed in [`classify`]).
const AWS_LABELS: &[&[u8]] = &[b"secret_access_key", b"secretaccesskey", b"aws_secret_key"];
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
fn ends_with_kw(id: &[u8], kw: &[u8]) -> bool {
    if !ends_with_ci(id, kw) {
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
        b'n' if any(&[b"token"]) => Some(Label::Token),
        b'y' if any(AWS_LABELS) => Some(Label::Aws),
        b'y' if any(TOKEN_LABELS) => Some(Label::Token),
        _ => None,
    }
}

/// Whether `c` ends an unquoted value.
fn ends_value(c: u8) -> bool {
    c.is_ascii_whitespace()
        || matches!(c, b'"' | b'\'' | b'`' | b',' | b';' | b'<' | b'>' | b'(' | b')' | b'[' | b']' | b'{' | b'}' | b'|')
}

/// Values that stand for a secret rather than being one: `$DB_PASSWORD`, `<your-token>`,
/// `{{ secret }}`, `********`, `null`, `YOUR_API_KEY`, our own `[REDACTED:...]` masks.
fn placeholder(v: &[u8]) -> bool {
    let Some(&first) = v.first() else { return true };
    if matches!(first, b'$' | b'<' | b'{' | b'%' | b'[' | b'(') {
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

/// A label and its value around the `:` or `=` at `i`: `password = value`, `"api_key": "value"`,
/// `AWS_SECRET_ACCESS_KEY=...`. Inlined up to the test of the last two letters of the word
/// before, which rejects most.
#[inline(always)]
fn assign(h: Hay<'_>, i: usize, sink: &mut Sink) {
    let b = h.b;
    // Back over `"`, `]`, `*`, spaces to the identifier.
    let mut k = i;
    let mut skipped = 0;
    // `]` only in the `headers["Authorization"]` shape, never after a mask token.
    while k > 0
        && skipped < 6
        && (matches!(b[k - 1], b' ' | b'\t' | b'"' | b'\'' | b'`' | b'*')
            || (b[k - 1] == b']' && k >= 2 && matches!(b[k - 2], b'"' | b'\'')))
    {
        k -= 1;
        skipped += 1;
    }
    // [`classify`] knows every label by its last two letters, which most words before a `:` or
    // `=` do not end in: no need to read them back.
    if k >= 2 && label_tail(b[k - 2], b[k - 1]) {
        assign_label(h, i, k, sink);
    }
}

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
            Some(b' ' | b'\t' | b'*') if spaces < 8 => {
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
        // The run ends at the same byte wherever in it it starts: remember it, so that a run
        // full of `=` or `:` ("a=a=a=...") is read once, not once per anchor.
        let stop = if sink.run.0 <= vs && vs <= sink.run.1 {
            sink.run.1
        } else {
            let mut e = vs;
            while b.get(e).is_some_and(|&c| !ends_value(c)) {
                e += 1;
            }
            sink.run = (vs, e);
            e
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
        if matches!(b.get(e), Some(b'(' | b'[')) {
            return;
        }
        let stop = e;
        while e > vs && matches!(b[e - 1], b'.' | b':' | b'*') {
            e -= 1;
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
    if label == Label::Aws && aws && v.len() == 40 && v.iter().all(|&c| is_b64(c)) {
        sink.yes(Det::AwsSecretAccessKey, vs, ve);
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
        Label::Token | Label::Aws | Label::Authorization => v.len() >= 8 && has_digit && !v.contains(&b' '),
    };
    if ok {
        sink.yes(Det::PasswordAssignment, vs, ve);
    }
}

// ---------------------------------------------------------------------------------------------
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
fn underscore(h: Hay<'_>, i: usize, sink: &mut Sink) {
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
                    sink.yes(Det::GithubToken, s, e);
                }
            }
        }
        // github_pat_
        if i >= 6 && eq_ci(&b[i - 6..i], b"github") && starts_word(b, i - 6) {
            let s = i - 6;
            if starts_ci!(h, sink, i + 1, b"pat_", s) {
                if let Some(e) = body!(h, sink, i + 5, s, 255, is_word) {
                    if e - (i + 5) >= 22 {
                        sink.yes(Det::GithubToken, s, e);
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
                        sink.yes(Det::StripeKey, s, e);
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

const GITLAB_PREFIXES: &[&[u8]] =
    &[b"glpat", b"gldt", b"glrt", b"glptt", b"glcbt", b"glimt", b"glft", b"glsoat", b"gloas", b"glagent", b"glffct"];
const SLACK_PREFIXES: &[&[u8]] = &[b"xoxb", b"xoxp", b"xoxa", b"xoxr", b"xoxs", b"xoxe", b"xapp"];

#[inline(never)]
fn dash(h: Hay<'_>, i: usize, sink: &mut Sink) {
    let b = h.b;
    if sink.on(Det::PrivateKey) && prev(b, i) != Some(b'-') {
        pem(h, i, sink);
    }
    // The alphanumeric word before the dash: a token prefix? Every prefix below ends in one of
    // these letters (`sk`, `glpat`, `gloas`, `xoxb`, `xapp`, ...): most dashes follow a digit or
    // another letter.
    if i == 0 || !matches!(b[i - 1] | 0x20, b'k' | b't' | b's' | b'b' | b'p' | b'a' | b'r' | b'e') {
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
        if let Some(e) = body!(h, sink, i + 1, k, 255, is_b64url) {
            if e - (i + 1) >= 20 {
                sink.yes(Det::GitlabToken, k, e);
            }
        }
    } else if sink.on(Det::SlackToken) && SLACK_PREFIXES.iter().any(|p| eq_ci(w, p)) {
        if let Some(e) = body!(h, sink, i + 1, k, 255, |c: u8| c.is_ascii_alphanumeric() || c == b'-') {
            let v = &b[i + 1..e];
            if v.len() >= 10 && v.iter().any(u8::is_ascii_digit) {
                sink.yes(Det::SlackToken, k, e);
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
            if let Some(g) = good_end {
                sink.yes(Det::PrivateKey, i, g);
            }
            return;
        }
    }
}

#[inline(never)]
fn upper_a(h: Hay<'_>, i: usize, sink: &mut Sink) {
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
                sink.yes(Det::GoogleApiKey, i, e);
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
                sink.yes(Det::AwsAccessKeyId, i, e);
            }
        }
    }
}

#[inline(never)]
fn jwt(h: Hay<'_>, i: usize, sink: &mut Sink) {
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
fn bearer(h: Hay<'_>, i: usize, sink: &mut Sink) {
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
