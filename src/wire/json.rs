//! A byte-preserving JSON rewriter.
//!
//! The filter must change only the text it redacts: key order, whitespace, number spelling and
//! the escapes a server chose all stay as they were, so clients, signatures over unrelated
//! fields and byte-level diffs see no noise. [`rewrite_strings`] validates a whole document,
//! hands every string *value* (decoded) to a callback together with its path, and re-encodes
//! only the strings the callback replaces.

use std::borrow::Cow;
use std::fmt;

/// Nesting deeper than this is refused rather than risking the stack on hostile input.
pub const MAX_DEPTH: usize = 128;

/// One step of the path from the document root to a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg<'a> {
    /// A member of an object, by (decoded) key; borrowed from the document unless it had escapes.
    Key(Cow<'a, str>),
    /// An element of an array, by index.
    Index(usize),
}

impl Seg<'_> {
    /// A copy that owns its key.
    pub fn to_static(&self) -> Seg<'static> {
        match self {
            Seg::Key(k) => Seg::Key(Cow::Owned(k.to_string())),
            Seg::Index(i) => Seg::Index(*i),
        }
    }

    /// The key, if this step is an object member.
    pub fn key(&self) -> Option<&str> {
        match self {
            Seg::Key(k) => Some(k),
            Seg::Index(_) => None,
        }
    }
}

/// Why a document could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonError {
    /// The bytes are not one well-formed JSON value.
    Syntax {
        /// Byte offset where reading stopped.
        offset: usize,
    },
    /// Nesting exceeds [`MAX_DEPTH`].
    TooDeep,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JsonError::Syntax { offset } => write!(f, "malformed JSON at byte {offset}"),
            JsonError::TooDeep => write!(f, "JSON nested deeper than {MAX_DEPTH} levels"),
        }
    }
}

impl std::error::Error for JsonError {}

/// Walks `input`, calling `f(path, value)` for every string value (not keys). Where `f` returns
/// `Some(new)`, the string is replaced by `new`, re-encoded. Returns `None` when nothing changed,
/// so callers can forward the original bytes untouched.
///
/// # Examples
///
/// ```
/// use inferguard::wire::json::rewrite_strings;
///
/// let doc = br#"{"a": "x@y.com", "n": 1}"#;
/// let out = rewrite_strings(doc, |path, s| {
///     (path[0].key() == Some("a")).then(|| s.replace("x@y.com", "[REDACTED]"))
/// })
/// .unwrap()
/// .unwrap();
/// assert_eq!(out, br#"{"a": "[REDACTED]", "n": 1}"#);
/// ```
pub fn rewrite_strings<F>(input: &[u8], f: F) -> Result<Option<Vec<u8>>, JsonError>
where
    F: FnMut(&[Seg], &str) -> Option<String>,
{
    let mut f = f;
    rewrite_strings_replacing(input, |path, s| f(path, s).map(Edit::Whole), |_, _| None)
}

/// [`rewrite`] with a closure for [`Rewrite::string`] and one for [`Rewrite::replace`].
pub fn rewrite_strings_replacing<F, P>(input: &[u8], string: F, replace: P) -> Result<Option<Vec<u8>>, JsonError>
where
    F: FnMut(&[Seg], &str) -> Option<Edit>,
    P: FnMut(&[Seg], Container) -> Option<&'static str>,
{
    struct Fns<F, P>(F, P);
    impl<F, P> Rewrite for Fns<F, P>
    where
        F: FnMut(&[Seg], &str) -> Option<Edit>,
        P: FnMut(&[Seg], Container) -> Option<&'static str>,
    {
        fn string(&mut self, path: &[Seg], s: &str) -> Option<Edit> {
            (self.0)(path, s)
        }
        fn replace(&mut self, path: &[Seg], kind: Container) -> Option<&'static str> {
            (self.1)(path, kind)
        }
    }
    rewrite(input, &mut Fns(string, replace))
}

/// `input` (a JSON object) with its top-level member `key` set to the integer `value`; `None` if
/// it has no such member that is a number.
///
/// # Examples
///
/// ```
/// use inferguard::wire::json::set_top_level_number;
///
/// let out = set_top_level_number(br#"{"type":"x","sequence_number":7,"n":{"sequence_number":1}}"#, "sequence_number", 9);
/// assert_eq!(out.unwrap(), br#"{"type":"x","sequence_number":9,"n":{"sequence_number":1}}"#);
/// ```
pub fn set_top_level_number(input: &[u8], key: &str, value: u64) -> Option<Vec<u8>> {
    struct Set<'k> {
        key: &'k str,
        value: u64,
    }
    impl Rewrite for Set<'_> {
        fn string(&mut self, _: &[Seg], _: &str) -> Option<Edit> {
            None
        }
        fn number(&mut self, path: &[Seg], _: &[u8]) -> Option<String> {
            matches!(path, [Seg::Key(k)] if k == self.key).then(|| self.value.to_string())
        }
    }
    rewrite(input, &mut Set { key, value }).ok().flatten()
}

/// What [`rewrite`] asks of its caller as it walks a document.
pub trait Rewrite {
    /// A string value (not a key): `Some(edit)` changes it.
    fn string(&mut self, path: &[Seg], s: &str) -> Option<Edit>;

    /// A `true`, `false` or `null`.
    fn literal(&mut self, _path: &[Seg], _lit: Literal) {}

    /// Each member of an object, before its value (`path` ends with the member's key).
    fn member(&mut self, _path: &[Seg]) {}

    /// A number, as written (ASCII): `Some(json)` puts that text in its place.
    fn number(&mut self, _path: &[Seg], _raw: &[u8]) -> Option<String> {
        None
    }

    /// Called before an object or array is read: `Some(json)` puts that JSON text in its place
    /// (the subtree is still checked to be well formed, but nothing in it is handed over).
    fn replace(&mut self, _path: &[Seg], _kind: Container) -> Option<&'static str> {
        None
    }
}

/// How a string value changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    /// It becomes this text, encoded anew.
    Whole(String),
    /// These byte ranges of the decoded text (in order, not overlapping, on char boundaries)
    /// become these texts; everything else keeps its original bytes, escapes included.
    Spans(Vec<(std::ops::Range<usize>, String)>),
}

/// An object or an array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    /// `{...}`
    Object,
    /// `[...]`
    Array,
}

/// Walks `input` like [`rewrite_strings`], with every hook of [`Rewrite`].
///
/// The walker is compiled once and calls `r` through a vtable: a copy per caller type would cost
/// more in module size than the indirect calls cost in time.
pub fn rewrite(input: &[u8], r: &mut dyn Rewrite) -> Result<Option<Vec<u8>>, JsonError> {
    let mut w = Walker { input, pos: 0, out: Vec::new(), copied: 0, changed: false, path: Vec::new(), skipping: 0, r };
    w.ws();
    w.value(0)?;
    w.ws();
    if w.pos != input.len() {
        return Err(JsonError::Syntax { offset: w.pos });
    }
    if !w.changed {
        return Ok(None);
    }
    w.out.extend_from_slice(&input[w.copied..]);
    Ok(Some(w.out))
}

/// A JSON literal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Literal {
    /// `true`
    True,
    /// `false`
    False,
    /// `null`
    Null,
}

struct Walker<'a, 'r> {
    input: &'a [u8],
    pos: usize,
    out: Vec<u8>,
    /// Input before this offset has been copied to (or replaced in) `out`.
    copied: usize,
    changed: bool,
    path: Vec<Seg<'a>>,
    /// Inside this many replaced subtrees: read, but not handed to `r`.
    skipping: usize,
    r: &'r mut dyn Rewrite,
}

impl<'a> Walker<'a, '_> {
    /// Puts what `write` writes in place of the input from `start` to the current position.
    fn splice(&mut self, start: usize, write: impl FnOnce(&mut Vec<u8>)) {
        if !self.changed {
            // The output is about as long as the input: grow it once.
            self.out.reserve(self.input.len() + 64);
        }
        self.out.extend_from_slice(&self.input[self.copied..start]);
        write(&mut self.out);
        self.copied = self.pos;
        self.changed = true;
    }

    fn err<T>(&self) -> Result<T, JsonError> {
        Err(JsonError::Syntax { offset: self.pos })
    }

    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    fn eat(&mut self, c: u8) -> Result<(), JsonError> {
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            self.err()
        }
    }

    fn value(&mut self, depth: usize) -> Result<(), JsonError> {
        if depth > MAX_DEPTH {
            return Err(JsonError::TooDeep);
        }
        let container = match self.peek() {
            Some(b'{') => Some(Container::Object),
            Some(b'[') => Some(Container::Array),
            _ => None,
        };
        if let Some(kind) = container {
            let start = self.pos;
            let replacement = if self.skipping == 0 { self.r.replace(&self.path, kind) } else { None };
            if replacement.is_some() {
                self.skipping += 1;
            }
            match kind {
                Container::Object => self.object(depth)?,
                Container::Array => self.array(depth)?,
            }
            if let Some(new) = replacement {
                self.skipping -= 1;
                self.splice(start, |out| out.extend_from_slice(new.as_bytes()));
            }
            return Ok(());
        }
        match self.peek() {
            Some(b'"') => {
                let start = self.pos;
                let s = self.string()?;
                if self.skipping == 0 {
                    match self.r.string(&self.path, &s) {
                        Some(Edit::Whole(new)) if new != s => self.splice(start, |out| encode_string_into(&new, out)),
                        Some(Edit::Spans(spans)) if !spans.is_empty() => {
                            let raw = &self.input[start + 1..self.pos - 1];
                            self.splice(start, |out| splice_spans(raw, &s, &spans, out));
                        }
                        _ => {}
                    }
                }
                Ok(())
            }
            Some(b't') => self.literal(b"true", Literal::True),
            Some(b'f') => self.literal(b"false", Literal::False),
            Some(b'n') => self.literal(b"null", Literal::Null),
            Some(b'-' | b'0'..=b'9') => {
                let start = self.pos;
                self.number()?;
                if self.skipping == 0 {
                    if let Some(new) = self.r.number(&self.path, &self.input[start..self.pos]) {
                        self.splice(start, |out| out.extend_from_slice(new.as_bytes()));
                    }
                }
                Ok(())
            }
            _ => self.err(),
        }
    }

    fn object(&mut self, depth: usize) -> Result<(), JsonError> {
        self.pos += 1;
        self.ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            self.ws();
            if self.peek() != Some(b'"') {
                return self.err();
            }
            let key = self.string()?;
            self.ws();
            self.eat(b':')?;
            self.ws();
            self.path.push(Seg::Key(key));
            if self.skipping == 0 {
                self.r.member(&self.path);
            }
            self.value(depth + 1)?;
            self.path.pop();
            self.ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return self.err(),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<(), JsonError> {
        self.pos += 1;
        self.ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(());
        }
        let mut i = 0;
        loop {
            self.ws();
            self.path.push(Seg::Index(i));
            self.value(depth + 1)?;
            self.path.pop();
            i += 1;
            self.ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return self.err(),
            }
        }
    }

    fn literal(&mut self, word: &[u8], lit: Literal) -> Result<(), JsonError> {
        if self.input[self.pos..].starts_with(word) {
            self.pos += word.len();
            if self.skipping == 0 {
                self.r.literal(&self.path, lit);
            }
            Ok(())
        } else {
            self.err()
        }
    }

    fn number(&mut self) -> Result<(), JsonError> {
        let digits = |w: &mut Self| {
            let s = w.pos;
            while let Some(b'0'..=b'9') = w.peek() {
                w.pos += 1;
            }
            w.pos > s
        };
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        if self.peek() == Some(b'0') {
            self.pos += 1;
        } else if !digits(self) {
            return self.err();
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if !digits(self) {
                return self.err();
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if !digits(self) {
                return self.err();
            }
        }
        Ok(())
    }

    /// Reads a string starting at the opening quote and returns it decoded.
    fn string(&mut self) -> Result<Cow<'a, str>, JsonError> {
        let input: &'a [u8] = self.input;
        let (s, used) = decode_str(&input[self.pos..]).map_err(|off| JsonError::Syntax { offset: self.pos + off })?;
        self.pos += used;
        Ok(s)
    }
}

/// Decodes the JSON string at the start of `input` (which begins with `"`). Returns the text and
/// the number of bytes consumed, or the offset of the first bad byte. Lone surrogate escapes
/// decode to U+FFFD. The text is borrowed from `input` when the string has no escapes (the
/// common case: no allocation, one pass).
pub fn decode_str(input: &[u8]) -> Result<(Cow<'_, str>, usize), usize> {
    if input.first() != Some(&b'"') {
        return Err(0);
    }
    let first = find_special(input, 1).ok_or(input.len())?;
    if input[first] == b'"' {
        let s = std::str::from_utf8(&input[1..first]).map_err(|e| 1 + e.valid_up_to())?;
        return Ok((Cow::Borrowed(s), first + 1));
    }
    let mut out = String::with_capacity(first - 1 + 16);
    let mut i = first;
    let mut run = 1;
    loop {
        // Skip ordinary bytes in bulk: only quotes, backslashes and control bytes matter here.
        i = find_special(input, i).unwrap_or(input.len());
        let Some(&c) = input.get(i) else {
            return Err(i);
        };
        match c {
            b'"' => {
                push_utf8(&mut out, &input[run..i]).map_err(|e| run + e)?;
                return Ok((Cow::Owned(out), i + 1));
            }
            b'\\' => {
                push_utf8(&mut out, &input[run..i]).map_err(|e| run + e)?;
                let Some(&e) = input.get(i + 1) else {
                    return Err(i);
                };
                i += 2;
                match e {
                    b'"' => out.push('"'),
                    b'\\' => out.push('\\'),
                    b'/' => out.push('/'),
                    b'b' => out.push('\u{8}'),
                    b'f' => out.push('\u{c}'),
                    b'n' => out.push('\n'),
                    b'r' => out.push('\r'),
                    b't' => out.push('\t'),
                    b'u' => {
                        let hi = hex4(input, i).ok_or(i)?;
                        i += 4;
                        let ch = if (0xD800..0xDC00).contains(&hi)
                            && input.get(i) == Some(&b'\\')
                            && input.get(i + 1) == Some(&b'u')
                        {
                            match hex4(input, i + 2) {
                                Some(lo) if (0xDC00..0xE000).contains(&lo) => {
                                    i += 6;
                                    char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))
                                }
                                _ => None,
                            }
                        } else {
                            char::from_u32(hi)
                        };
                        out.push(ch.unwrap_or('\u{FFFD}'));
                    }
                    _ => return Err(i - 1),
                }
                run = i;
            }
            0..=0x1f => return Err(i),
            _ => i += 1,
        }
    }
}

fn push_utf8(out: &mut String, bytes: &[u8]) -> Result<(), usize> {
    match std::str::from_utf8(bytes) {
        Ok(s) => {
            out.push_str(s);
            Ok(())
        }
        Err(e) => Err(e.valid_up_to()),
    }
}

fn hex4(input: &[u8], at: usize) -> Option<u32> {
    let h = input.get(at..at + 4)?;
    let mut v = 0u32;
    for &c in h {
        v = v * 16 + (c as char).to_digit(16)?;
    }
    Some(v)
}

/// Writes the string literal whose original bytes between the quotes are `raw` (decoding to
/// `decoded`), with `spans` of the decoded text replaced: the bytes outside the spans are
/// copied as they were, escapes included, and each replacement is encoded.
fn splice_spans(raw: &[u8], decoded: &str, spans: &[(std::ops::Range<usize>, String)], out: &mut Vec<u8>) {
    let mut bounds: Vec<usize> = spans.iter().flat_map(|(r, _)| [r.start, r.end]).collect();
    if raw.len() != decoded.len() {
        // Escapes: decoded offsets are not raw offsets.
        raw_offsets(raw, &mut bounds);
    }
    out.push(b'"');
    let mut last = 0;
    for ((_, new), b) in spans.iter().zip(bounds.chunks_exact(2)) {
        out.extend_from_slice(&raw[last..b[0]]);
        encode_body_into(new, out);
        last = b[1];
    }
    out.extend_from_slice(&raw[last..]);
    out.push(b'"');
}

/// Turns sorted offsets into the decoded text of a string literal's body `raw` into offsets
/// into `raw`, in place. Between escapes the two advance together, so only escapes are visited.
fn raw_offsets(raw: &[u8], offsets: &mut [usize]) {
    let (mut i, mut d, mut k) = (0usize, 0usize, 0usize);
    while k < offsets.len() {
        let next = super::bytes::find_byte(raw, i, b'\\').unwrap_or(raw.len());
        let run_end = d + (next - i);
        while k < offsets.len() && offsets[k] <= run_end {
            offsets[k] = i + (offsets[k] - d);
            k += 1;
        }
        if next == raw.len() {
            break;
        }
        let (used, len) = if raw.get(next + 1) == Some(&b'u') { unicode_escape_len(raw, next) } else { (2, 1) };
        i = next + used;
        d = run_end + len;
    }
    for o in &mut offsets[k..] {
        *o = raw.len();
    }
}

/// The raw length and the decoded UTF-8 length of the `\u` escape at `raw[i]`, decoded the way
/// [`decode_str`] does (a surrogate pair is one escape; a lone surrogate becomes U+FFFD).
fn unicode_escape_len(raw: &[u8], i: usize) -> (usize, usize) {
    let Some(hi) = hex4(raw, i + 2) else { return (2, 1) };
    if (0xD800..0xDC00).contains(&hi) && raw.get(i + 6) == Some(&b'\\') && raw.get(i + 7) == Some(&b'u') {
        if let Some(lo) = hex4(raw, i + 8) {
            if (0xDC00..0xE000).contains(&lo) {
                return (12, 4);
            }
        }
    }
    (6, char::from_u32(hi).map_or('\u{FFFD}'.len_utf8(), char::len_utf8))
}

/// Appends `s` as a JSON string literal (quotes included), escaping only what JSON requires.
pub fn encode_string_into(s: &str, out: &mut Vec<u8>) {
    out.reserve(s.len() + 2);
    out.push(b'"');
    encode_body_into(s, out);
    out.push(b'"');
}

/// Appends `s` escaped for the inside of a JSON string literal.
fn encode_body_into(s: &str, out: &mut Vec<u8>) {
    let b = s.as_bytes();
    let mut run = 0;
    let mut from = 0;
    while let Some(i) = find_special(b, from) {
        from = i + 1;
        let c = b[i];
        let esc: &[u8] = match c {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            _ => b"",
        };
        out.extend_from_slice(&b[run..i]);
        if esc.is_empty() {
            out.extend_from_slice(format!("\\u{:04x}", c).as_bytes());
        } else {
            out.extend_from_slice(esc);
        }
        run = i + 1;
    }
    out.extend_from_slice(&b[run..]);
}

/// The first byte at or after `from` that is `"`, `\\` or a control byte (below 0x20): the only
/// bytes JSON string scanning has to stop at. Checks eight bytes at a time.
fn find_special(b: &[u8], from: usize) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let zero = |x: u64| x.wrapping_sub(LO) & !x;
    let mut i = from;
    while i + 8 <= b.len() {
        let mut word = [0u8; 8];
        word.copy_from_slice(&b[i..i + 8]);
        let w = u64::from_le_bytes(word);
        // Bytes below 0x20, and bytes equal to '"' or '\\' (zero after xor). The lowest flagged
        // byte is always a true match; borrows can only flag bytes above it.
        let below = w.wrapping_sub(LO * 0x20) & !w;
        let hit = (below | zero(w ^ (LO * u64::from(b'"'))) | zero(w ^ (LO * u64::from(b'\\')))) & HI;
        if hit != 0 {
            return Some(i + (hit.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    b.get(i..)?.iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20).map(|p| i + p)
}

/// `s` as a JSON string literal.
pub fn encode_string(s: &str) -> String {
    let mut v = Vec::with_capacity(s.len() + 2);
    encode_string_into(s, &mut v);
    // Only valid UTF-8 went in and only ASCII was added.
    String::from_utf8(v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keep(input: &str) -> Result<Option<Vec<u8>>, JsonError> {
        rewrite_strings(input.as_bytes(), |_, _| None)
    }

    #[test]
    fn accepts_well_formed_documents_and_changes_nothing() {
        for doc in [
            "{}",
            "[]",
            "0",
            "-1.5e+3",
            "\"x\"",
            "true",
            " null ",
            r#"{"a":[1,2,{"b":"c\u00e9\ud83d\ude00"}],"d":false}"#,
        ] {
            assert_eq!(keep(doc), Ok(None), "{doc}");
        }
    }

    #[test]
    fn rejects_malformed_documents() {
        for doc in ["", "{", "[1,]", "{\"a\"}", "01", "1.", "\"\\x\"", "\"a", "{} x", "\"\u{1}\"", "tru"] {
            assert!(keep(doc).is_err(), "{doc:?}");
        }
        let deep = "[".repeat(MAX_DEPTH + 2) + &"]".repeat(MAX_DEPTH + 2);
        assert_eq!(keep(&deep), Err(JsonError::TooDeep));
    }

    #[test]
    fn decodes_escapes_and_reports_paths() {
        let doc = br#"{"m":[{"c":"a\u0040b.com \/ \"q\" \ud83d\ude00"}], "k":"v"}"#;
        let mut seen = Vec::new();
        rewrite_strings(doc, |p, s| {
            seen.push((p.iter().map(Seg::to_static).collect::<Vec<_>>(), s.to_string()));
            None
        })
        .unwrap();
        assert_eq!(
            seen,
            vec![
                (vec![Seg::Key("m".into()), Seg::Index(0), Seg::Key("c".into())], "a@b.com / \"q\" 😀".into()),
                (vec![Seg::Key("k".into())], "v".into()),
            ]
        );
    }

    #[test]
    fn rewrites_only_the_replaced_string_and_keeps_the_rest_byte_for_byte() {
        let doc = "{ \"a\" : \"x\\u0041\",\n  \"b\":\"y\", \"c\": 1.50 }";
        let out = rewrite_strings(doc.as_bytes(), |p, s| (p[0].key() == Some("b")).then(|| format!("{s}\"\n\u{1}é")))
            .unwrap()
            .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{ \"a\" : \"x\\u0041\",\n  \"b\":\"y\\\"\\n\\u0001é\", \"c\": 1.50 }"
        );
    }

    #[test]
    fn find_special_agrees_with_a_byte_loop_at_every_offset() {
        let mut bytes: Vec<u8> = (0u8..=255).collect();
        bytes.extend_from_slice(b"plain ascii text with no specials at all, then \\ and \" and \x01 and \x7f\xff");
        for from in 0..bytes.len() {
            for end in from..=bytes.len().min(from + 40) {
                let b = &bytes[..end];
                let want = b[from..].iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20).map(|p| from + p);
                assert_eq!(find_special(b, from), want, "{from} {end}");
            }
        }
    }

    #[test]
    fn spans_replace_only_their_text_and_keep_every_other_byte() {
        // Escapes of every kind before, inside and after the spans.
        let literals = [
            r#""plain text, no escapes""#,
            r#""a\nb \"q\" \\ \/ \t\u0040\u00e9 \ud83d\ude00 end""#,
            r#""\u0062ob@x.io\n""#,
            r#""lone \ud800 surrogate é ü""#,
        ];
        for lit in literals {
            let (decoded, _) = decode_str(lit.as_bytes()).unwrap();
            let raw = &lit.as_bytes()[1..lit.len() - 1];
            let bounds: Vec<usize> = (0..=decoded.len()).filter(|&i| decoded.is_char_boundary(i)).collect();
            for (a, &start) in bounds.iter().enumerate() {
                for &end in &bounds[a..] {
                    for (second, new) in [(None, "[X]"), (Some(decoded.len()), "")] {
                        let mut spans = vec![(start..end, new.to_string())];
                        if let Some(e) = second.filter(|&e| e > end) {
                            spans.push((e..e, "!".to_string()));
                        }
                        let mut out = Vec::new();
                        splice_spans(raw, &decoded, &spans, &mut out);
                        let (got, used) = decode_str(&out).unwrap();
                        let want = crate::stream::apply_spans(&decoded, &spans);
                        assert_eq!((got.as_ref(), used), (want.as_str(), out.len()), "{lit} {spans:?}");
                        // The bytes before the first span are the original bytes.
                        let mut prefix = [start];
                        raw_offsets(raw, &mut prefix);
                        assert_eq!(&out[1..1 + prefix[0]], &raw[..prefix[0]], "{lit} {spans:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_redacted_value_keeps_the_escapes_around_it() {
        struct Spans1;
        impl Rewrite for Spans1 {
            fn string(&mut self, _: &[Seg], s: &str) -> Option<Edit> {
                let start = s.find("a@b.io")?;
                Some(Edit::Spans(vec![(start..start + 6, "[X]".into())]))
            }
        }
        let doc = br#"{"c":"caf\u00e9: mail a@b.io\nbye \u2014 \"ok\""}"#;
        let out = rewrite(doc, &mut Spans1).unwrap().unwrap();
        assert_eq!(out, br#"{"c":"caf\u00e9: mail [X]\nbye \u2014 \"ok\""}"#.to_vec());
    }

    #[test]
    fn encode_then_decode_round_trips() {
        for s in ["", "plain", "q\"b\\s/ \n\t\r\u{0}\u{1f} é 😀"] {
            let enc = encode_string(s);
            assert_eq!(decode_str(enc.as_bytes()).map(|(d, n)| (d.into_owned(), n)), Ok((s.to_string(), enc.len())));
        }
    }
}
