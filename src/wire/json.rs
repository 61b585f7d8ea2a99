//! The one JSON reader: every JSON body, event, line and prompt is read here, the way clients
//! read it, and rewritten byte for byte.
//!
//! [`Tape::read`] reads a whole document into a flat list of [`Node`]s in document order: every
//! value with its raw span, its decoded text, its parent, and its member key (decoded, with its own
//! span). One pass gives the redactor every string with its path and gives stream classification
//! the facts it needs (`type`, indexes, done flags, sequence numbers) by lookup, with no second
//! parse and no `serde_json::Value`.
//!
//! The reader is as tolerant as the clients are (Python's `json`, which the official SDKs use):
//! `NaN`, `Infinity` and `-Infinity`, numbers of any size (`1e400`), lone surrogate escapes
//! (decoded to U+FFFD) and duplicate keys (the last one wins; earlier ones are marked
//! [`Node::shadowed`]) are read. It is bounded: nesting deeper than [`MAX_DEPTH`] is refused.
//! Anything it cannot read is an error, never a guess.
//!
//! [`Tape::render`] applies edits to raw spans: key order, whitespace, number spelling and the
//! escapes a server chose all stay as they were outside the edited spans.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

/// Nesting deeper than this is refused rather than risking the stack on hostile input.
pub const MAX_DEPTH: usize = 128;

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

/// What a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `{...}`; its members are the nodes up to [`Node::end`].
    Object,
    /// `[...]`; its elements are the nodes up to [`Node::end`].
    Array,
    /// A string; [`Node::text`] is decoded.
    Str,
    /// A number as written, `NaN`, `Infinity` or `-Infinity`; [`Node::text`] is the raw spelling.
    Num,
    /// `true`, `false` or `null`.
    Lit,
}

/// One value of a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node<'a> {
    /// What it is.
    pub kind: Kind,
    /// The raw bytes of the value (quotes and brackets included).
    pub span: Range<usize>,
    /// A string's decoded text (borrowed when it has no escapes); a number's or literal's
    /// spelling; empty for containers.
    pub text: Cow<'a, str>,
    /// The member key, decoded, when the parent is an object.
    pub key: Option<Cow<'a, str>>,
    /// The raw bytes of the key literal, quotes included (empty when there is no key).
    pub key_span: Range<usize>,
    /// The parent node; `usize::MAX` for the root.
    pub parent: usize,
    /// The position among the parent's children (the array index for an element).
    pub index: usize,
    /// One past the last node of this value's subtree.
    pub end: usize,
    /// A later member of the same object has the same key: clients that keep the last one never
    /// see this value (or anything inside it). Set by [`Tape::mark_shadowed`].
    pub shadowed: bool,
}

/// One step of the path from the document root to a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seg<'t> {
    /// A member of an object, by decoded key.
    Key(&'t str),
    /// An element of an array, by index.
    Index(usize),
}

/// A document read whole: its nodes in document order (the root is node 0).
///
/// # Examples
///
/// ```text
/// use inferguard::wire::json::{Kind, Tape};
///
/// let mut t = Tape::read(br#"{"type":"x","n":NaN,"d":{"t":"a\u0040b.io"},"type":"y"}"#).unwrap();
/// t.mark_shadowed();
/// assert_eq!(t.str_at(0, "type"), Some("y")); // the last duplicate wins
/// let inner = t.get(0, "d").and_then(|d| t.get(d, "t")).unwrap();
/// assert_eq!(t.nodes[inner].text, "a@b.io");
/// assert_eq!(t.nodes[t.get(0, "n").unwrap()].kind, Kind::Num);
/// ```
#[derive(Debug, Clone)]
pub struct Tape<'a> {
    /// The document's bytes.
    pub input: &'a [u8],
    /// Every value, in document order.
    pub nodes: Vec<Node<'a>>,
}

impl<'a> Tape<'a> {
    /// Reads one JSON document (surrounding whitespace and a leading UTF-8 byte-order mark
    /// allowed, as `json.loads` on bytes allows them).
    pub fn read(input: &'a [u8]) -> Result<Tape<'a>, JsonError> {
        // About one value per 16 bytes of typical JSON, but no more up front than a small event
        // needs: a large answer is mostly one long string, and memory asked for is memory the
        // VM keeps.
        let mut r = Reader { input, pos: 0, nodes: Vec::with_capacity((8 + input.len() / 16).min(256)) };
        if input.starts_with(b"\xEF\xBB\xBF") {
            r.pos = 3;
        }
        r.ws();
        r.value(usize::MAX, 0, None, 0..0, 0)?;
        r.ws();
        if r.pos != input.len() {
            return Err(JsonError::Syntax { offset: r.pos });
        }
        Ok(Tape { input, nodes: r.nodes })
    }

    /// Marks every value a later member of the same object overrides ([`Node::shadowed`]): a
    /// separate pass, for the readers that must tell (stream events, the configuration).
    pub fn mark_shadowed(&mut self) {
        for i in 0..self.nodes.len() {
            if self.nodes[i].kind == Kind::Object && self.nodes[i].end > i + 2 {
                self.shadow_duplicates(i);
            }
        }
    }

    /// Marks every member whose key is given again later in the same object, with its subtree.
    fn shadow_duplicates(&mut self, object: usize) {
        let (mut small, mut n) = ([0usize; 16], 0);
        let mut next = object + 1;
        while next < self.nodes[object].end && n < small.len() {
            small[n] = next;
            n += 1;
            next = self.nodes[next].end;
        }
        if next >= self.nodes[object].end {
            // Small objects (nearly all): compare pairs, no allocation.
            for k in 0..n {
                let a = small[k];
                if small[k + 1..n].iter().any(|&b| self.nodes[a].key == self.nodes[b].key) {
                    let end = self.nodes[a].end;
                    for node in &mut self.nodes[a..end] {
                        node.shadowed = true;
                    }
                }
            }
            return;
        }
        let mut order: Vec<usize> = self.children(object).collect();
        // Equal keys in document order, so all but the last of a run are shadowed.
        order.sort_unstable_by(|&a, &b| self.nodes[a].key.cmp(&self.nodes[b].key).then(a.cmp(&b)));
        for w in order.windows(2) {
            if self.nodes[w[0]].key == self.nodes[w[1]].key {
                let end = self.nodes[w[0]].end;
                for n in &mut self.nodes[w[0]..end] {
                    n.shadowed = true;
                }
            }
        }
    }

    /// The children of container `node` (none for a scalar), skipping nothing.
    pub fn children(&self, node: usize) -> Children<'_, 'a> {
        Children { tape: self, next: node + 1, end: self.nodes.get(node).map_or(0, |n| n.end) }
    }

    /// The member `key` of object `node` that clients read (the last one given).
    pub fn get(&self, node: usize, key: &str) -> Option<usize> {
        if self.nodes.get(node)?.kind != Kind::Object {
            return None;
        }
        self.children(node).filter(|&c| self.nodes[c].key.as_deref() == Some(key)).last()
    }

    /// The string member `key` of object `node`.
    pub fn str_at(&self, node: usize, key: &str) -> Option<&str> {
        let n = &self.nodes[self.get(node, key)?];
        (n.kind == Kind::Str).then_some(n.text.as_ref())
    }

    /// The member `key` of object `node` as a non-negative integer.
    pub fn u64_at(&self, node: usize, key: &str) -> Option<u64> {
        let n = &self.nodes[self.get(node, key)?];
        if n.kind == Kind::Num {
            n.text.parse().ok()
        } else {
            None
        }
    }

    /// Whether object `node` has member `key` with a value other than `null`.
    pub fn has(&self, node: usize, key: &str) -> bool {
        self.get(node, key).is_some_and(|c| self.nodes[c].text != "null")
    }

    /// The path from the root to `node`, appended to `out` (which is cleared first).
    pub fn path_into<'t>(&'t self, node: usize, out: &mut Vec<Seg<'t>>) {
        out.clear();
        let mut i = node;
        while let Some(n) = self.nodes.get(i) {
            if n.parent == usize::MAX {
                break;
            }
            out.push(match &n.key {
                Some(k) => Seg::Key(k),
                None => Seg::Index(n.index),
            });
            i = n.parent;
        }
        out.reverse();
    }

    /// The document with each raw range in `edits` replaced as its [`Patch`] says. Ranges must
    /// be in document order and must not overlap; `None` when there are no edits. Edited strings
    /// are written straight into the output: a large value is copied once.
    pub fn render(&self, edits: &[(Range<usize>, Patch)]) -> Option<Vec<u8>> {
        if edits.is_empty() {
            return None;
        }
        let growth: usize = edits.iter().map(|(_, p)| p.growth()).sum();
        let mut out = Vec::with_capacity(self.input.len() + growth);
        let mut last = 0;
        for (r, patch) in edits {
            out.extend_from_slice(&self.input[last..r.start]);
            match patch {
                Patch::Raw(bytes) => out.extend_from_slice(bytes),
                Patch::Value(node, edit) | Patch::Key(node, edit) => {
                    let n = &self.nodes[*node];
                    let (span, text) = match patch {
                        Patch::Key(..) => (&n.key_span, n.key.as_deref().unwrap_or("")),
                        _ => (&n.span, n.text.as_ref()),
                    };
                    match edit {
                        Edit::Whole(new) => encode_string_into(new, &mut out),
                        Edit::Spans(spans) => {
                            splice_spans(&self.input[span.start + 1..span.end - 1], text, spans, &mut out)
                        }
                    }
                }
            }
            last = r.end;
        }
        out.extend_from_slice(&self.input[last..]);
        Some(out)
    }
}

/// What replaces a raw range of a document in [`Tape::render`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Patch {
    /// These bytes, as they are (valid JSON for the range they replace).
    Raw(Vec<u8>),
    /// The text of string node `.0`, edited: only the replaced spans are encoded anew; every
    /// other byte, escapes included, is kept.
    Value(usize, Edit),
    /// The key of node `.0`, edited the same way.
    Key(usize, Edit),
}

impl Patch {
    /// About how many bytes it adds.
    fn growth(&self) -> usize {
        match self {
            Patch::Raw(b) => b.len(),
            Patch::Value(_, Edit::Whole(s)) | Patch::Key(_, Edit::Whole(s)) => s.len() + 2,
            Patch::Value(_, Edit::Spans(s)) | Patch::Key(_, Edit::Spans(s)) => s.iter().map(|(_, t)| t.len()).sum(),
        }
    }
}

/// The children of a container, in order.
pub struct Children<'t, 'a> {
    tape: &'t Tape<'a>,
    next: usize,
    end: usize,
}

impl Iterator for Children<'_, '_> {
    type Item = usize;
    fn next(&mut self) -> Option<usize> {
        if self.next >= self.end {
            return None;
        }
        let i = self.next;
        self.next = self.tape.nodes[i].end;
        Some(i)
    }
}

/// How a string's text changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    /// It becomes this text, encoded anew.
    Whole(String),
    /// These byte ranges of the decoded text (in order, not overlapping, on char boundaries)
    /// become these texts; everything else keeps its original bytes, escapes included.
    Spans(Vec<(Range<usize>, String)>),
}

struct Reader<'a> {
    input: &'a [u8],
    pos: usize,
    nodes: Vec<Node<'a>>,
}

impl<'a> Reader<'a> {
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

    fn push(
        &mut self,
        kind: Kind,
        parent: usize,
        index: usize,
        key: Option<Cow<'a, str>>,
        key_span: Range<usize>,
    ) -> usize {
        let i = self.nodes.len();
        self.nodes.push(Node {
            kind,
            span: self.pos..self.pos,
            text: Cow::Borrowed(""),
            key,
            key_span,
            parent,
            index,
            end: i + 1,
            shadowed: false,
        });
        i
    }

    fn value(
        &mut self,
        parent: usize,
        index: usize,
        key: Option<Cow<'a, str>>,
        key_span: Range<usize>,
        depth: usize,
    ) -> Result<(), JsonError> {
        if depth > MAX_DEPTH {
            return Err(JsonError::TooDeep);
        }
        let start = self.pos;
        let (kind, text) = match self.peek() {
            Some(b'{') => return self.object(parent, index, key, key_span, depth),
            Some(b'[') => return self.array(parent, index, key, key_span, depth),
            Some(b'"') => (Kind::Str, self.string()?),
            Some(b't') => (Kind::Lit, self.word("true")?),
            Some(b'f') => (Kind::Lit, self.word("false")?),
            Some(b'n') => (Kind::Lit, self.word("null")?),
            Some(b'N') => (Kind::Num, self.word("NaN")?),
            Some(b'I') => (Kind::Num, self.word("Infinity")?),
            Some(b'-') if self.input[self.pos..].starts_with(b"-Infinity") => (Kind::Num, self.word("-Infinity")?),
            Some(b'-' | b'0'..=b'9') => {
                self.number()?;
                // Only ASCII was read.
                let raw = std::str::from_utf8(&self.input[start..self.pos]).unwrap_or("");
                (Kind::Num, Cow::Borrowed(raw))
            }
            _ => return self.err(),
        };
        let i = self.push(kind, parent, index, key, key_span);
        self.nodes[i].span = start..self.pos;
        self.nodes[i].text = text;
        Ok(())
    }

    fn object(
        &mut self,
        parent: usize,
        index: usize,
        key: Option<Cow<'a, str>>,
        key_span: Range<usize>,
        depth: usize,
    ) -> Result<(), JsonError> {
        let me = self.push(Kind::Object, parent, index, key, key_span);
        let start = self.pos;
        self.pos += 1;
        self.ws();
        let mut members = 0;
        if self.peek() == Some(b'}') {
            self.pos += 1;
        } else {
            loop {
                self.ws();
                if self.peek() != Some(b'"') {
                    return self.err();
                }
                let ks = self.pos;
                let k = self.string()?;
                let key_span = ks..self.pos;
                self.ws();
                if self.peek() != Some(b':') {
                    return self.err();
                }
                self.pos += 1;
                self.ws();
                self.value(me, members, Some(k), key_span, depth + 1)?;
                members += 1;
                self.ws();
                match self.peek() {
                    Some(b',') => self.pos += 1,
                    Some(b'}') => {
                        self.pos += 1;
                        break;
                    }
                    _ => return self.err(),
                }
            }
        }
        self.nodes[me].span = start..self.pos;
        self.nodes[me].end = self.nodes.len();
        Ok(())
    }

    fn array(
        &mut self,
        parent: usize,
        index: usize,
        key: Option<Cow<'a, str>>,
        key_span: Range<usize>,
        depth: usize,
    ) -> Result<(), JsonError> {
        let me = self.push(Kind::Array, parent, index, key, key_span);
        let start = self.pos;
        self.pos += 1;
        self.ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
        } else {
            let mut i = 0;
            loop {
                self.ws();
                self.value(me, i, None, 0..0, depth + 1)?;
                i += 1;
                self.ws();
                match self.peek() {
                    Some(b',') => self.pos += 1,
                    Some(b']') => {
                        self.pos += 1;
                        break;
                    }
                    _ => return self.err(),
                }
            }
        }
        self.nodes[me].span = start..self.pos;
        self.nodes[me].end = self.nodes.len();
        Ok(())
    }

    fn word(&mut self, word: &'static str) -> Result<Cow<'a, str>, JsonError> {
        if self.input[self.pos..].starts_with(word.as_bytes()) {
            self.pos += word.len();
            Ok(Cow::Borrowed(word))
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

/// The length of the JSON value at the start of `input` (after whitespace), if it is complete:
/// how a framer finds where one document ends without reading it. `Err` when the bytes cannot
/// start or continue a value; `Ok(None)` when more bytes are needed.
pub fn value_len(input: &[u8]) -> Result<Option<usize>, JsonError> {
    let mut i = 0;
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = input.get(i) {
        i += 1;
    }
    let mut depth = 0usize;
    let mut in_str = false;
    while let Some(&c) = input.get(i) {
        i += 1;
        if in_str {
            match c {
                b'\\' => i += 1,
                b'"' => {
                    in_str = false;
                    if depth == 0 {
                        return Ok(Some(i.min(input.len())));
                    }
                }
                _ => {}
            }
            continue;
        }
        match c {
            b'"' => in_str = true,
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth.checked_sub(1).ok_or(JsonError::Syntax { offset: i - 1 })?;
                if depth == 0 {
                    return Ok(Some(i));
                }
            }
            _ if depth == 0 => return Err(JsonError::Syntax { offset: i - 1 }),
            _ => {}
        }
    }
    Ok(None)
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
    // Runs between escapes are gathered as bytes and the text is checked once at the end: one
    // UTF-8 pass instead of one call per run (prose and code have an escape every line).
    let mut out = Vec::with_capacity(first - 1 + 16);
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
                out.extend_from_slice(&input[run..i]);
                return match String::from_utf8(out) {
                    Ok(s) => Ok((Cow::Owned(s), i + 1)),
                    // Rare: find which input byte it was, run by run.
                    Err(_) => Err(first_bad_utf8(input, i)),
                };
            }
            b'\\' => {
                out.extend_from_slice(&input[run..i]);
                let Some(&e) = input.get(i + 1) else {
                    return Err(i);
                };
                i += 2;
                let ch = match e {
                    b'"' => '"',
                    b'\\' => '\\',
                    b'/' => '/',
                    b'b' => '\u{8}',
                    b'f' => '\u{c}',
                    b'n' => '\n',
                    b'r' => '\r',
                    b't' => '\t',
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
                        ch.unwrap_or('\u{FFFD}')
                    }
                    _ => return Err(i - 1),
                };
                let mut buf = [0u8; 4];
                out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                run = i;
            }
            0..=0x1f => return Err(i),
            _ => i += 1,
        }
    }
}

/// The offset of the first byte of a string literal (`input[..end]`, escapes intact) that is not
/// UTF-8: escapes are ASCII, so it is the first bad byte of a run between them.
fn first_bad_utf8(input: &[u8], end: usize) -> usize {
    let mut run = 1;
    let mut i = 1;
    while i < end {
        if input[i] == b'\\' {
            if let Err(e) = std::str::from_utf8(&input[run..i]) {
                return run + e.valid_up_to();
            }
            i += if input.get(i + 1) == Some(&b'u') { 6 } else { 2 };
            run = i;
        } else {
            i += 1;
        }
    }
    match std::str::from_utf8(&input[run.min(end)..end]) {
        Err(e) => run + e.valid_up_to(),
        Ok(_) => end,
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
    use crate::swar::{below, eq, first, word};
    let mut i = from;
    while i + 8 <= b.len() {
        let w = word(b, i);
        let hit = below(w, 0x20) | eq(w, b'"') | eq(w, b'\\');
        if hit != 0 {
            return Some(i + first(hit));
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

    fn strings(doc: &str) -> Vec<(String, String)> {
        let t = Tape::read(doc.as_bytes()).unwrap();
        let mut path = Vec::new();
        (0..t.nodes.len())
            .filter(|&i| t.nodes[i].kind == Kind::Str)
            .map(|i| {
                t.path_into(i, &mut path);
                let p: Vec<String> = path
                    .iter()
                    .map(|s| match s {
                        Seg::Key(k) => k.to_string(),
                        Seg::Index(i) => i.to_string(),
                    })
                    .collect();
                (p.join("."), t.nodes[i].text.to_string())
            })
            .collect()
    }

    #[test]
    fn reads_well_formed_and_tolerant_documents() {
        for doc in [
            "{}",
            "[]",
            "0",
            "-1.5e+3",
            "\"x\"",
            "true",
            " null ",
            "\u{feff}{\"a\":1}",
            "\n\t {\"a\":[1,2,{\"b\":\"c\\u00e9\\ud83d\\ude00\"}],\"d\":false}\r\n",
            "[NaN, Infinity, -Infinity, 1e400, -0.0e-999]",
            "{\"s\":\"\\ud800 lone\"}",
        ] {
            assert!(Tape::read(doc.as_bytes()).is_ok(), "{doc:?}");
        }
        assert_eq!(strings(r#"{"s":"a\ud800b"}"#), vec![("s".into(), "a\u{FFFD}b".into())]);
    }

    #[test]
    fn refuses_malformed_documents() {
        for doc in [
            "",
            "{",
            "[1,]",
            "{\"a\"}",
            "01",
            "1.",
            "\"\\x\"",
            "\"a",
            "{} x",
            "\"\u{1}\"",
            "tru",
            "-NaN",
            "nan",
            "{a:1}",
        ] {
            assert!(Tape::read(doc.as_bytes()).is_err(), "{doc:?}");
        }
        let deep = "[".repeat(MAX_DEPTH + 2) + &"]".repeat(MAX_DEPTH + 2);
        assert_eq!(Tape::read(deep.as_bytes()).unwrap_err(), JsonError::TooDeep);
        let ok = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert!(Tape::read(ok.as_bytes()).is_ok());
    }

    #[test]
    fn decodes_escapes_and_reports_paths_and_keys() {
        let doc = r#"{"m":[{"c":"a\u0040b.com \/ \"q\" \ud83d\ude00"}], "k\u0040":"v"}"#;
        assert_eq!(strings(doc), vec![("m.0.c".into(), "a@b.com / \"q\" 😀".into()), ("k@".into(), "v".into())]);
        let t = Tape::read(doc.as_bytes()).unwrap();
        let k = t.get(0, "k@").unwrap();
        assert_eq!(&doc.as_bytes()[t.nodes[k].key_span.clone()], br#""k\u0040""#);
    }

    #[test]
    fn the_last_duplicate_key_wins_and_earlier_ones_are_shadowed() {
        let doc = br#"{"d":{"c":"one"},"x":1,"d":{"c":"two","c":"three"}}"#;
        let mut t = Tape::read(doc).unwrap();
        t.mark_shadowed();
        let d = t.get(0, "d").unwrap();
        assert_eq!(t.str_at(d, "c"), Some("three"));
        let shadowed: Vec<&str> =
            t.nodes.iter().filter(|n| n.shadowed && n.kind == Kind::Str).map(|n| n.text.as_ref()).collect();
        assert_eq!(shadowed, vec!["one", "two"]);
        assert!(!t.nodes[t.get(0, "x").unwrap()].shadowed);
        // Past 16 members the check sorts instead of comparing pairs: the same answer.
        for n in [15, 16, 17, 40] {
            let mut doc: Vec<String> = (0..n).map(|i| format!("\"k{i}\":{i}")).collect();
            doc.insert(3, "\"k9\":\"early\"".into());
            let doc = format!("{{{}}}", doc.join(","));
            let mut t = Tape::read(doc.as_bytes()).unwrap();
            t.mark_shadowed();
            let shadowed: Vec<&str> = t.nodes.iter().filter(|n| n.shadowed).map(|n| n.text.as_ref()).collect();
            assert_eq!(shadowed, vec!["early"], "{n}");
            assert_eq!(t.u64_at(0, "k9"), Some(9));
        }
    }

    #[test]
    fn renders_edits_and_keeps_every_other_byte() {
        let doc = "{ \"a\" : \"x\\u0041\",\n  \"b\":\"y\", \"c\": 1.50 }";
        let t = Tape::read(doc.as_bytes()).unwrap();
        assert_eq!(t.render(&[]), None);
        let b = t.get(0, "b").unwrap();
        let edit = Patch::Value(b, Edit::Whole("y\"\n\u{1}é".into()));
        let out = t.render(&[(t.nodes[b].span.clone(), edit)]).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{ \"a\" : \"x\\u0041\",\n  \"b\":\"y\\\"\\n\\u0001é\", \"c\": 1.50 }"
        );
    }

    #[test]
    fn value_len_finds_the_end_of_the_first_value() {
        assert_eq!(value_len(b"  {\"a\":\"}\\\"\"}\n{"), Ok(Some(13)));
        assert_eq!(value_len(b"[1,[2]"), Ok(None));
        assert_eq!(value_len(b"\"ab\\\"c\" x"), Ok(Some(7)));
        assert!(value_len(b"}").is_err());
    }

    #[test]
    fn invalid_utf8_is_refused_at_its_byte_with_or_without_escapes() {
        for (input, want) in [
            (&b"\"ab\xffc\""[..], Err(3)),
            (&b"\"a\\nb\xffc\""[..], Err(5)),
            (&b"\"a\\u00e9\\n\xe2\x82\""[..], Err(10)),
            (&b"\"a\\u00e9\\n\xe2\x82\xac\""[..], Ok("a\u{e9}\n\u{20ac}".to_owned())),
        ] {
            assert_eq!(decode_str(input).map(|(s, _)| s.into_owned()), want, "{input:?}");
        }
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

    fn apply(text: &str, spans: &[(Range<usize>, String)]) -> String {
        let mut out = String::new();
        let mut last = 0;
        for (r, new) in spans {
            out.push_str(&text[last..r.start]);
            out.push_str(new);
            last = r.end;
        }
        out + &text[last..]
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
                        let want = apply(&decoded, &spans);
                        assert_eq!((got.as_ref(), used), (want.as_str(), out.len()), "{lit} {spans:?}");
                        let mut prefix = [start];
                        raw_offsets(raw, &mut prefix);
                        assert_eq!(&out[1..1 + prefix[0]], &raw[..prefix[0]], "{lit} {spans:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn encode_then_decode_round_trips() {
        for s in ["", "plain", "q\"b\\s/ \n\t\r\u{0}\u{1f} é 😀"] {
            let enc = encode_string(s);
            assert_eq!(decode_str(enc.as_bytes()).map(|(d, n)| (d.into_owned(), n)), Ok((s.to_string(), enc.len())));
        }
    }
}

/// The examples in this module's docs, run.
#[cfg(test)]
mod doc_examples {
    use super::*;

    #[test]
    fn tape_example() {
        let mut t = Tape::read(br#"{"type":"x","n":NaN,"d":{"t":"a\u0040b.io"},"type":"y"}"#).unwrap();
        t.mark_shadowed();
        assert_eq!(t.str_at(0, "type"), Some("y")); // the last duplicate wins
        let inner = t.get(0, "d").and_then(|d| t.get(d, "t")).unwrap();
        assert_eq!(t.nodes[inner].text, "a@b.io");
        assert_eq!(t.nodes[t.get(0, "n").unwrap()].kind, Kind::Num);
    }
}
