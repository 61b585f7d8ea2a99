//! `multipart/form-data` bodies (RFC 7578 over RFC 2046), read part by part the way the upstream
//! reads them, and rewritten byte for byte.
//!
//! Prompts also arrive as uploads: OpenAI's `POST /v1/audio/transcriptions` sends the audio in a
//! `file` part next to text parts such as `model`, `prompt` and `language`. The filter scans the
//! text parts, passes the file parts through, and so must cut the body exactly where the upstream
//! does. If the upstream reads a part as text and the filter takes it for a file, that part goes
//! through unscanned. Upstreams parse with python-multipart (Starlette, FastAPI, vLLM), Go's
//! `mime/multipart` or busboy (Node). Their source shows that they disagree on malformed bodies, so
//! [`parse`] accepts only bodies all three read the same way and refuses the rest with a
//! [`MultipartError`]. On an error the caller fails closed.
//!
//! - **CRLF only.** Go switches to bare-LF mode when the first delimiter line ends in LF.
//!   python-multipart refuses that body, and busboy finds no part in it. A bare LF or CR in a
//!   delimiter line or in a header block is refused ([`MultipartError::BareLineEnding`]).
//! - **Delimiters.** `--boundary` starts the body or follows CRLF. A delimiter is followed by CRLF,
//!   and the close delimiter by `--`. RFC 2046 allows spaces and tabs before that CRLF
//!   (transport padding), and Go honours them. python-multipart instead keeps such a line as part
//!   data, and busboy ends the part there and drops everything up to the next delimiter. A text
//!   field could therefore carry a "file part" that the filter would not scan, so padding is
//!   refused, as is any other byte after a delimiter ([`MultipartError::AmbiguousDelimiter`]).
//!   Inside a part body, `--boundary` that does not follow CRLF is data. After the close
//!   delimiter every parser stops reading.
//! - **Truncation.** A body that ends before its close delimiter is refused. python-multipart
//!   does not check for the close delimiter, and Starlette then drops the unfinished part.
//! - **Where a delimiter may not appear.** It may not appear in the preamble (python-multipart
//!   may open the body at an occurrence that the others skip), at the very start of a part body
//!   (Go reads an empty part there, the others read data), or at the start of a header line
//!   (busboy reads a delimiter there, the others read a header).
//! - **Headers.** A header line is `token: value`. Folded lines are refused (Go and busboy join
//!   them, python-multipart rejects them), as are control bytes. `Content-Disposition`,
//!   `Content-Type` and `Content-Transfer-Encoding` may each appear once (Starlette keeps the last
//!   copy, Go and busboy the first). A transfer encoding other than `7bit`, `8bit` or `binary` is
//!   refused, because Go decodes quoted-printable and the others do not: the bytes scanned would
//!   not be the bytes read.
//! - **`Content-Disposition`.** It must be `form-data` with a `name`. Parameters are tokens or
//!   quoted strings that escape only `\"` and `\\`, and each appears at most once. A quoted value
//!   that ends in an escaped backslash is refused, because python-multipart then misreads the
//!   closing quote as escaped and splits the parameters differently. Of the RFC 2231 extended
//!   parameters only `filename*=UTF-8''…` is read: python-multipart ignores it, Go and busboy
//!   prefer it. Any other `*` parameter (`name*`, the continuations `filename*0`) is refused.
//!
//! A part is a file ([`Part::filename`] is `Some`) only when every parser takes it for one.
//! Anything else is text, to be scanned. The preamble and the epilogue are ignored by every
//! parser but still reach the upstream, so [`Multipart`] gives their ranges for the caller to
//! scan too.
//!
//! The body is buffered whole and read in one pass. The delimiter is found with the SWAR byte
//! search of `wire::bytes`: each candidate CR costs one comparison with the delimiter (at
//! most 74 bytes), and nothing is scanned twice. [`replace_bodies`] copies every byte it does not
//! replace.

use std::fmt;
use std::ops::Range;

use super::bytes::{find_byte, find_either};

/// More parts than this are refused (Starlette's default limits are 1000 fields and 1000 files).
pub const MAX_PARTS: usize = 1000;

/// A part's header block, blank line included, may not be longer than this (busboy's limit).
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// RFC 2046: a boundary is 1 to 70 characters.
const MAX_BOUNDARY: usize = 70;

/// Why a body could not be read as `multipart/form-data` the way every upstream parser would
/// read it, or could not be rewritten. Carries positions only, never body bytes, so it is safe
/// to log.
///
/// # Examples
///
/// ```text
/// use inferguard::wire::multipart::{parse, MultipartError};
///
/// // Bare LF line endings: Go reads this, python-multipart and busboy do not.
/// let body = b"--b\nContent-Disposition: form-data; name=\"a\"\n\nx\n--b--\n";
/// assert_eq!(parse(body, "b"), Err(MultipartError::BareLineEnding { at: 3 }));
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MultipartError {
    /// The boundary is not 1 to 70 RFC 2046 boundary characters (or ends in a space).
    InvalidBoundary,
    /// No `--boundary` line at the start of the body or after a CRLF.
    NoOpeningDelimiter,
    /// The body ends before the close delimiter `--boundary--` (a truncated body).
    MissingCloseDelimiter,
    /// More than [`MAX_PARTS`] parts.
    TooManyParts,
    /// The body ends inside a part's header block.
    HeadersNotTerminated {
        /// Index of the part (from 0).
        part: usize,
    },
    /// A part's header block is longer than [`MAX_HEADER_BYTES`].
    HeadersTooLong {
        /// Index of the part (from 0).
        part: usize,
    },
    /// A line ends in a bare LF or CR where multipart requires CRLF: after a delimiter, or in a
    /// header block. An LF-only body fails here at its first delimiter.
    BareLineEnding {
        /// Byte offset of the lone LF or CR.
        at: usize,
    },
    /// A `--boundary` that parsers read differently: followed by something other than CRLF or
    /// `--` (transport padding included), or standing in the preamble, at the start of a part
    /// body, or at the start of a header line.
    AmbiguousDelimiter {
        /// Byte offset of the `--boundary`.
        at: usize,
    },
    /// A header line that is not `token: value`, that is folded, or that holds a control byte.
    MalformedHeader {
        /// Index of the part (from 0).
        part: usize,
    },
    /// `Content-Disposition`, `Content-Type` or `Content-Transfer-Encoding` given twice.
    DuplicateHeader {
        /// Index of the part (from 0).
        part: usize,
    },
    /// No `Content-Disposition: form-data` with a `name`, or one that parsers read differently
    /// (syntax, a repeated or extended parameter, an undecodable `filename*`).
    Disposition {
        /// Index of the part (from 0).
        part: usize,
    },
    /// A `Content-Transfer-Encoding` other than `7bit`, `8bit` or `binary`.
    TransferEncoding {
        /// Index of the part (from 0).
        part: usize,
    },
    /// [`replace_bodies`] was given a part index the form does not have, or the same one twice.
    NoSuchPart {
        /// The index given.
        index: usize,
    },
    /// A replacement body contains the delimiter or starts with `--boundary`, so it would change
    /// where parts begin and end.
    BoundaryInReplacement {
        /// Index of the part (from 0).
        part: usize,
    },
    /// [`replace_bodies`] was given a body the form was not parsed from.
    BodyMismatch,
}

impl fmt::Display for MultipartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MultipartError::InvalidBoundary => {
                write!(f, "the multipart boundary is not 1 to {MAX_BOUNDARY} RFC 2046 boundary characters")
            }
            MultipartError::NoOpeningDelimiter => f.write_str("the multipart body has no opening delimiter"),
            MultipartError::MissingCloseDelimiter => {
                f.write_str("the multipart body ends before its close delimiter (truncated)")
            }
            MultipartError::TooManyParts => write!(f, "the multipart body has more than {MAX_PARTS} parts"),
            MultipartError::HeadersNotTerminated { part } => {
                write!(f, "the multipart body ends inside the headers of part {part}")
            }
            MultipartError::HeadersTooLong { part } => {
                write!(f, "the headers of multipart part {part} exceed {MAX_HEADER_BYTES} bytes")
            }
            MultipartError::BareLineEnding { at } => {
                write!(f, "a bare LF or CR where multipart requires CRLF, at byte {at}")
            }
            MultipartError::AmbiguousDelimiter { at } => {
                write!(f, "a multipart delimiter that parsers read differently, at byte {at}")
            }
            MultipartError::MalformedHeader { part } => write!(f, "a malformed header line in multipart part {part}"),
            MultipartError::DuplicateHeader { part } => write!(f, "a repeated header in multipart part {part}"),
            MultipartError::Disposition { part } => {
                write!(f, "multipart part {part} has no unambiguous Content-Disposition: form-data with a name")
            }
            MultipartError::TransferEncoding { part } => {
                write!(f, "multipart part {part} has a Content-Transfer-Encoding other than 7bit, 8bit or binary")
            }
            MultipartError::NoSuchPart { index } => {
                write!(f, "a replacement names part {index}, which the form does not have or which is already replaced")
            }
            MultipartError::BoundaryInReplacement { part } => {
                write!(f, "the replacement body of multipart part {part} contains the delimiter")
            }
            MultipartError::BodyMismatch => f.write_str("the body is not the one the multipart form was parsed from"),
        }
    }
}

impl std::error::Error for MultipartError {}

/// A parsed body: byte ranges into it, plus what the part headers say.
///
/// # Examples
///
/// ```text
/// use inferguard::wire::multipart::parse;
///
/// let body = b"preamble\r\n--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx\r\n--b--\r\nbye";
/// let form = parse(body, "b").unwrap();
/// assert_eq!(&body[form.preamble.clone()], b"preamble\r\n");
/// assert_eq!(&body[form.epilogue.clone()], b"\r\nbye");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Multipart {
    /// The boundary the body was parsed with.
    pub boundary: String,
    /// Bytes before the opening delimiter, its CRLF included. Parsers ignore them, but the
    /// upstream receives them: scan them as text.
    pub preamble: Range<usize>,
    /// The parts, in body order.
    pub parts: Vec<Part>,
    /// Bytes after the close delimiter's `--` (usually CRLF). Parsers ignore them, but the
    /// upstream receives them: scan them as text.
    pub epilogue: Range<usize>,
}

/// One part: where its headers and body are, and what its headers say.
///
/// # Examples
///
/// ```text
/// use inferguard::wire::multipart::parse;
///
/// let body = b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\
///              Content-Type: audio/wav\r\n\r\nRIFF\r\n--b--\r\n";
/// let part = &parse(body, "b").unwrap().parts[0];
/// assert_eq!(part.name, "file");
/// assert_eq!(part.filename.as_deref(), Some("a.wav"));
/// assert_eq!(part.content_type.as_deref(), Some("audio/wav"));
/// assert_eq!(&body[part.body.clone()], b"RIFF");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// The header lines, each with its CRLF, without the blank line that ends them.
    pub headers: Range<usize>,
    /// The body: from after the blank line up to the CRLF that precedes the next delimiter.
    pub body: Range<usize>,
    /// The `name` parameter of `Content-Disposition` (invalid UTF-8 replaced).
    pub name: String,
    /// The file name, present only when every parser reads this part as a file upload. That
    /// needs a non-empty `filename` parameter (the only one python-multipart reads) and, if
    /// `filename*` is also given, a non-empty `filename*` (Go and busboy prefer it, and it is the
    /// name given here). `None` means a text field, including parts that some parser would read
    /// as text: an empty `filename`, or `filename*` without `filename`.
    pub filename: Option<String>,
    /// The part's `Content-Type` value as sent, trimmed; `None` if absent (text/plain).
    pub content_type: Option<String>,
}

/// The boundary in a `content-type` header value, if the type is `multipart/form-data` and it has
/// exactly one valid `boundary` parameter, quoted or not (parameter name case-insensitive). A
/// valid boundary is 1 to 70 characters of the RFC 2046 `bchars` set, not ending in a space.
/// Parameter syntax that parsers read differently (a repeated or `*` parameter, spaces around
/// `=`, a stray `;`) gives `None`.
///
/// # Examples
///
/// ```text
/// use inferguard::wire::multipart::boundary;
///
/// assert_eq!(boundary("multipart/form-data; boundary=3f2b0c8e"), Some("3f2b0c8e"));
/// assert_eq!(boundary("Multipart/Form-Data; Boundary=\"a b:c\""), Some("a b:c"));
/// assert_eq!(boundary("multipart/mixed; boundary=x"), None);
/// assert_eq!(boundary("multipart/form-data"), None);
/// ```
pub fn boundary(content_type: &str) -> Option<&str> {
    let b = content_type.as_bytes();
    let start = skip_ows(b, 0);
    let slash = start + token_len(&b[start..]);
    if b.get(slash) != Some(&b'/') {
        return None;
    }
    let end = slash + 1 + token_len(&b[slash + 1..]);
    if !b[start..end].eq_ignore_ascii_case(b"multipart/form-data") {
        return None;
    }
    let mut found = None;
    for p in params(b, end)? {
        let key = &b[p.key];
        // Go reads `boundary*=`; python-multipart and busboy ignore it.
        if key.contains(&b'*') {
            return None;
        }
        if key.eq_ignore_ascii_case(b"boundary") {
            if found.is_some() {
                return None;
            }
            found = Some(p.value);
        }
    }
    // A quoted boundary with an escape holds a backslash, which is no bchar.
    let v = content_type.get(found?)?;
    valid_boundary(v.as_bytes()).then_some(v)
}

/// Reads a whole `multipart/form-data` body with the given boundary (from [`boundary`]).
///
/// # Examples
///
/// ```text
/// use inferguard::wire::multipart::parse;
///
/// let body = b"--xyz\r\n\
///              Content-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n\
///              --xyz\r\n\
///              Content-Disposition: form-data; name=\"prompt\"\r\n\r\nCall Jane\r\n\
///              --xyz--\r\n";
/// let form = parse(body, "xyz").unwrap();
/// let fields: Vec<(&str, &[u8])> = form.parts.iter().map(|p| (p.name.as_str(), &body[p.body.clone()])).collect();
/// assert_eq!(fields, [("model", &b"whisper-1"[..]), ("prompt", &b"Call Jane"[..])]);
/// ```
pub fn parse(body: &[u8], boundary: &str) -> Result<Multipart, MultipartError> {
    if !valid_boundary(boundary.as_bytes()) {
        return Err(MultipartError::InvalidBoundary);
    }
    let delim = [b"\r\n--", boundary.as_bytes()].concat();
    let dash = &delim[2..];

    let open =
        if body.starts_with(dash) { 0 } else { find(body, 0, &delim).ok_or(MultipartError::NoOpeningDelimiter)? + 2 };
    if let Some(at) = find(&body[..open], 0, dash) {
        return Err(MultipartError::AmbiguousDelimiter { at });
    }

    let mut parts = Vec::new();
    let mut next = after_delimiter(body, open, dash.len())?;
    loop {
        let start = match next {
            Next::Close(epilogue) => {
                return Ok(Multipart {
                    boundary: boundary.to_owned(),
                    preamble: 0..open,
                    parts,
                    epilogue: epilogue..body.len(),
                });
            }
            Next::Part(start) => start,
        };
        let index = parts.len();
        if index == MAX_PARTS {
            return Err(MultipartError::TooManyParts);
        }
        let head = read_headers(body, start, index, dash)?;
        let (name, filename) = head.disposition.ok_or(MultipartError::Disposition { part: index })?;
        if body[head.body_start..].starts_with(dash) {
            return Err(MultipartError::AmbiguousDelimiter { at: head.body_start });
        }
        let end = find(body, head.body_start, &delim).ok_or(MultipartError::MissingCloseDelimiter)?;
        next = after_delimiter(body, end + 2, dash.len())?;
        parts.push(Part {
            headers: start..head.end,
            body: head.body_start..end,
            name,
            filename,
            content_type: head.content_type,
        });
    }
}

/// Rebuilds `body` (the bytes `form` was parsed from) with the bodies of some parts, by index,
/// replaced; every other byte (preamble, delimiters, part headers, other bodies, epilogue) is
/// copied as it was. A replacement may not contain the delimiter or start with `--boundary`,
/// which would move part limits.
///
/// # Examples
///
/// ```text
/// use inferguard::wire::multipart::{parse, replace_bodies};
///
/// let body = b"--b\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\nmail jane@x.io\r\n--b--\r\n";
/// let form = parse(body, "b").unwrap();
/// assert_eq!(replace_bodies(body, &form, &[]).unwrap(), body);
/// let out = replace_bodies(body, &form, &[(0, b"mail [EMAIL]".to_vec())]).unwrap();
/// assert_eq!(out, b"--b\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\nmail [EMAIL]\r\n--b--\r\n");
/// ```
pub fn replace_bodies(body: &[u8], form: &Multipart, new: &[(usize, Vec<u8>)]) -> Result<Vec<u8>, MultipartError> {
    let delim = [b"\r\n--", form.boundary.as_bytes()].concat();
    let dash = &delim[2..];
    let mut slots: Vec<Option<&[u8]>> = vec![None; form.parts.len()];
    for (index, bytes) in new {
        match slots.get_mut(*index) {
            Some(slot @ None) => *slot = Some(&bytes[..]),
            _ => return Err(MultipartError::NoSuchPart { index: *index }),
        }
        if bytes.starts_with(dash) || find(bytes, 0, &delim).is_some() {
            return Err(MultipartError::BoundaryInReplacement { part: *index });
        }
    }
    if form.epilogue.end != body.len() {
        return Err(MultipartError::BodyMismatch);
    }
    let grown: usize = new.iter().map(|(_, b)| b.len()).sum();
    let mut out = Vec::with_capacity(body.len() + grown);
    let mut copied = 0;
    for (part, slot) in form.parts.iter().zip(slots) {
        let Some(bytes) = slot else { continue };
        out.extend_from_slice(body.get(copied..part.body.start).ok_or(MultipartError::BodyMismatch)?);
        out.extend_from_slice(bytes);
        copied = part.body.end;
    }
    out.extend_from_slice(body.get(copied..).ok_or(MultipartError::BodyMismatch)?);
    Ok(out)
}

/// What follows a `--boundary`.
enum Next {
    /// A part whose headers start here.
    Part(usize),
    /// The close delimiter; the epilogue starts here.
    Close(usize),
}

/// Reads what follows the `--boundary` at `at`: CRLF opens a part, `--` closes the body.
fn after_delimiter(body: &[u8], at: usize, dash_len: usize) -> Result<Next, MultipartError> {
    let i = at + dash_len;
    match body.get(i..).unwrap_or(&[]) {
        [b'\r', b'\n', ..] => Ok(Next::Part(i + 2)),
        [b'-', b'-', ..] => Ok(Next::Close(i + 2)),
        [] | [b'-'] | [b'\r'] => Err(MultipartError::MissingCloseDelimiter),
        [b'\n', ..] | [b'\r', ..] => Err(MultipartError::BareLineEnding { at: i }),
        _ => Err(MultipartError::AmbiguousDelimiter { at }),
    }
}

/// A part's header block as read.
#[derive(Default)]
struct Head {
    /// End of the header lines (start of the blank line).
    end: usize,
    /// Start of the part body (after the blank line).
    body_start: usize,
    /// `name` and file name from `Content-Disposition`.
    disposition: Option<(String, Option<String>)>,
    content_type: Option<String>,
    transfer_encoding: bool,
}

/// Reads the header lines of part `part` starting at `start`, up to and including the blank line.
fn read_headers(body: &[u8], start: usize, part: usize, dash: &[u8]) -> Result<Head, MultipartError> {
    let window = &body[..body.len().min(start.saturating_add(MAX_HEADER_BYTES))];
    let mut head = Head::default();
    let mut line = start;
    loop {
        let Some(eol) = find_either(window, line, b'\r', b'\n') else {
            return Err(if window.len() < body.len() {
                MultipartError::HeadersTooLong { part }
            } else {
                MultipartError::HeadersNotTerminated { part }
            });
        };
        match body.get(eol..eol + 2) {
            Some(b"\r\n") => {}
            None if body[eol] == b'\r' => return Err(MultipartError::HeadersNotTerminated { part }),
            _ => return Err(MultipartError::BareLineEnding { at: eol }),
        }
        if eol + 2 - start > MAX_HEADER_BYTES {
            return Err(MultipartError::HeadersTooLong { part });
        }
        if eol == line {
            head.end = line;
            head.body_start = eol + 2;
            return Ok(head);
        }
        header_line(&body[line..eol], line, part, dash, &mut head)?;
        line = eol + 2;
    }
}

/// Reads one header line (without its CRLF) that starts at byte `at`.
fn header_line(line: &[u8], at: usize, part: usize, dash: &[u8], head: &mut Head) -> Result<(), MultipartError> {
    if line.starts_with(dash) {
        return Err(MultipartError::AmbiguousDelimiter { at });
    }
    let n = token_len(line);
    if n == 0 || line.get(n) != Some(&b':') {
        // Also a folded line, which starts with a space or a tab.
        return Err(MultipartError::MalformedHeader { part });
    }
    let value = trim_ows(&line[n + 1..]);
    if value.iter().any(|&c| is_ctl(c)) {
        return Err(MultipartError::MalformedHeader { part });
    }
    let name = &line[..n];
    let repeated = if name.eq_ignore_ascii_case(b"content-disposition") {
        let d = disposition(value).ok_or(MultipartError::Disposition { part })?;
        head.disposition.replace(d).is_some()
    } else if name.eq_ignore_ascii_case(b"content-type") {
        head.content_type.replace(String::from_utf8_lossy(value).into_owned()).is_some()
    } else if name.eq_ignore_ascii_case(b"content-transfer-encoding") {
        if !(value.eq_ignore_ascii_case(b"7bit")
            || value.eq_ignore_ascii_case(b"8bit")
            || value.eq_ignore_ascii_case(b"binary"))
        {
            return Err(MultipartError::TransferEncoding { part });
        }
        std::mem::replace(&mut head.transfer_encoding, true)
    } else {
        false
    };
    if repeated {
        return Err(MultipartError::DuplicateHeader { part });
    }
    Ok(())
}

/// Reads a `Content-Disposition` value: `form-data` and its `name`, plus the file name as
/// [`Part::filename`] defines it. `None` if it is not `form-data`, has no `name`, or is written
/// in a way parsers read differently.
fn disposition(v: &[u8]) -> Option<(String, Option<String>)> {
    let t = token_len(v);
    if !v[..t].eq_ignore_ascii_case(b"form-data") {
        return None;
    }
    let (mut name, mut plain, mut star) = (None, None, None);
    for p in params(v, t)? {
        let key = &v[p.key];
        let raw = &v[p.value];
        let (slot, value) = if key.eq_ignore_ascii_case(b"name") {
            (&mut name, unquote(raw, p.quoted))
        } else if key.eq_ignore_ascii_case(b"filename") {
            (&mut plain, unquote(raw, p.quoted))
        } else if key.eq_ignore_ascii_case(b"filename*") && !p.quoted {
            (&mut star, ext_value(raw)?)
        } else if key.contains(&b'*') {
            // `name*`, continuations `filename*0`, a quoted `filename*`: Go decodes them,
            // python-multipart ignores them.
            return None;
        } else {
            continue;
        };
        if slot.replace(value).is_some() {
            return None;
        }
    }
    let filename = match (plain, star) {
        (Some(p), None) if !p.is_empty() => Some(String::from_utf8_lossy(&p).into_owned()),
        (Some(p), Some(s)) if !p.is_empty() && !s.is_empty() => String::from_utf8(s).ok(),
        _ => None,
    };
    Some((String::from_utf8_lossy(&name?).into_owned(), filename))
}

/// A `key=value` parameter: ranges into the header value; a quoted value's range lies between
/// the quotes, escapes not yet removed.
struct Param {
    key: Range<usize>,
    value: Range<usize>,
    quoted: bool,
}

/// Splits the parameters that follow a type at byte `i` of `b`, in the strict grammar every
/// parser reads alike: `OWS ";" OWS token "=" (token / quoted-string)`, repeated, then OWS.
/// No spaces around `=`, no empty or trailing `;`, no text after a closing quote.
fn params(b: &[u8], mut i: usize) -> Option<Vec<Param>> {
    let mut out = Vec::new();
    loop {
        i = skip_ows(b, i);
        match b.get(i) {
            None => return Some(out),
            Some(b';') => {}
            Some(_) => return None,
        }
        i = skip_ows(b, i + 1);
        let key = i..i + token_len(&b[i..]);
        if key.is_empty() || b.get(key.end) != Some(&b'=') {
            return None;
        }
        i = key.end + 1;
        let (value, quoted) = if b.get(i) == Some(&b'"') {
            let close = quoted_end(b, i + 1)?;
            let value = i + 1..close;
            i = close + 1;
            (value, true)
        } else {
            let value = i..i + token_len(&b[i..]);
            if value.is_empty() {
                return None;
            }
            i = value.end;
            (value, false)
        };
        out.push(Param { key, value, quoted });
    }
}

/// The index of the quote closing a quoted string whose content starts at `i`. Only `\"` and
/// `\\` escapes are allowed: python-multipart keeps other backslashes, busboy drops them. An
/// escaped backslash right before the closing quote is refused too, because python-multipart
/// counts that `\"` as an escaped quote.
fn quoted_end(b: &[u8], mut i: usize) -> Option<usize> {
    loop {
        match *b.get(i)? {
            b'"' => return Some(i),
            b'\\' => match b.get(i + 1..i + 3) {
                Some(b"\\\"") => return None,
                _ if matches!(b.get(i + 1), Some(b'"' | b'\\')) => i += 2,
                _ => return None,
            },
            c if is_ctl(c) => return None,
            _ => i += 1,
        }
    }
}

/// A parameter value without its quoting (escapes already checked by [`quoted_end`]).
fn unquote(raw: &[u8], quoted: bool) -> Vec<u8> {
    if !quoted {
        return raw.to_vec();
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut escaped = false;
    for &c in raw {
        if c == b'\\' && !escaped {
            escaped = true;
        } else {
            escaped = false;
            out.push(c);
        }
    }
    out
}

/// Decodes an RFC 5987 `ext-value` in UTF-8: `UTF-8'language'percent-encoded`. Other charsets,
/// bad escapes and invalid UTF-8 give `None`.
fn ext_value(raw: &[u8]) -> Option<Vec<u8>> {
    let mut pieces = raw.splitn(3, |&c| c == b'\'');
    let (charset, _language, value) = (pieces.next()?, pieces.next()?, pieces.next()?);
    if !charset.eq_ignore_ascii_case(b"utf-8") {
        return None;
    }
    let mut out = Vec::with_capacity(value.len());
    let mut i = 0;
    while let Some(&c) = value.get(i) {
        if c == b'%' {
            let hex = value.get(i + 1..i + 3)?;
            out.push((hex_digit(hex[0])? << 4) | hex_digit(hex[1])?);
            i += 3;
        } else if c.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&c) {
            out.push(c);
            i += 1;
        } else {
            return None;
        }
    }
    std::str::from_utf8(&out).is_ok().then_some(out)
}

fn hex_digit(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// RFC 2046: 1 to 70 `bchars`, the last not a space.
fn valid_boundary(b: &[u8]) -> bool {
    (1..=MAX_BOUNDARY).contains(&b.len())
        && b.last() != Some(&b' ')
        && b.iter().all(|&c| c.is_ascii_alphanumeric() || b"'()+_,-./:=? ".contains(&c))
}

/// The first occurrence of `needle` in `hay` at or after `from`. Candidates are found with the
/// SWAR search for `needle`'s first byte, and each is confirmed with one comparison. The cost is
/// at most `needle.len()` per candidate, so the search stays linear for a needle of bounded size.
fn find(hay: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    let &first = needle.first()?;
    let mut i = from;
    while let Some(p) = find_byte(hay, i, first) {
        if hay[p..].starts_with(needle) {
            return Some(p);
        }
        i = p + 1;
    }
    None
}

/// RFC 9110 `tchar`.
fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

fn token_len(b: &[u8]) -> usize {
    b.iter().take_while(|&&c| is_tchar(c)).count()
}

/// Control bytes other than HTAB.
fn is_ctl(c: u8) -> bool {
    (c < 0x20 && c != b'\t') || c == 0x7f
}

fn skip_ows(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t')) {
        i += 1;
    }
    i
}

fn trim_ows(b: &[u8]) -> &[u8] {
    let start = skip_ows(b, 0);
    let end = b.len() - b.iter().rev().take_while(|&&c| c == b' ' || c == b'\t').count();
    b.get(start..end).unwrap_or(&[])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// httpx's boundary: 16 random bytes in hex.
    const B: &str = "0c6a1f3e9b2d47e8a5f0c3b6d9e2f1a4";

    /// A 16-bit mono 16 kHz WAV: CRLF, dashes and non-UTF-8 bytes in the samples, and the
    /// boundary text itself, not preceded by CRLF.
    fn wav() -> Vec<u8> {
        let mut v = b"RIFF\x48\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00\x80\x3e\x00\x00\x00\x7d\x00\x00\
                      \x02\x00\x10\x00data\x24\x00\x00\x00\x00\x00\r\n--\xff\x7f\x0d\x0a\x00\x80"
            .to_vec();
        v.extend_from_slice(format!("\n--{B}").as_bytes());
        v
    }

    /// `client.audio.transcriptions.create(model="whisper-1", file=("a.wav", wav, "audio/wav"),
    /// prompt=..., language="en")` as the openai-python SDK sends it through httpx's multipart
    /// encoder: data fields first, then files, `--{boundary}\r\n` before each, `\r\n` after each
    /// body, `--{boundary}--\r\n` to close.
    fn whisper() -> Vec<u8> {
        let mut v = Vec::new();
        for (name, value) in [
            ("model", "whisper-1".to_owned()),
            ("prompt", format!("Call with Jane Roe, jane@example.com, about card 4111 1111 1111 1111 (ref --{B})")),
            ("language", "en".to_owned()),
        ] {
            v.extend_from_slice(
                format!("--{B}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").as_bytes(),
            );
        }
        v.extend_from_slice(
            format!(
                "--{B}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\nContent-Type: audio/wav\r\n\r\n"
            )
            .as_bytes(),
        );
        v.extend_from_slice(&wav());
        v.extend_from_slice(format!("\r\n--{B}--\r\n").as_bytes());
        v
    }

    /// (name, filename, content type, body) of every part.
    type Seen = (String, Option<String>, Option<String>, Vec<u8>);

    fn seen(body: &[u8], form: &Multipart) -> Vec<Seen> {
        form.parts
            .iter()
            .map(|p| (p.name.clone(), p.filename.clone(), p.content_type.clone(), body[p.body.clone()].to_vec()))
            .collect()
    }

    fn text(name: &str, body: &str) -> Seen {
        (name.to_owned(), None, None, body.as_bytes().to_vec())
    }

    #[test]
    fn reads_a_whisper_upload_as_the_openai_sdk_sends_it() {
        let body = whisper();
        let ct = format!("multipart/form-data; boundary={B}");
        let form = parse(&body, boundary(&ct).unwrap()).unwrap();
        let prompt = format!("Call with Jane Roe, jane@example.com, about card 4111 1111 1111 1111 (ref --{B})");
        assert_eq!(
            seen(&body, &form),
            vec![
                text("model", "whisper-1"),
                text("prompt", &prompt),
                text("language", "en"),
                ("file".into(), Some("a.wav".into()), Some("audio/wav".into()), wav()),
            ]
        );
        assert_eq!(form.preamble, 0..0);
        assert_eq!(&body[form.epilogue.clone()], b"\r\n");
        assert_eq!(
            &body[form.parts[3].headers.clone()],
            b"Content-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\nContent-Type: audio/wav\r\n"
        );
        assert_eq!(form.parts.iter().filter(|p| p.filename.is_some()).count(), 1);
    }

    #[test]
    fn finds_the_boundary_in_a_content_type() {
        let b70 = "a".repeat(70);
        let ct70 = format!("multipart/form-data; boundary={b70}");
        let ct71 = format!("multipart/form-data; boundary={b70}a");
        for (ct, want) in [
            ("multipart/form-data; boundary=abc", Some("abc")),
            ("multipart/form-data;boundary=abc", Some("abc")),
            ("  MULTIPART/Form-Data ;\tBoundary=abc  ", Some("abc")),
            ("multipart/form-data; boundary=\"a b'()+_,-./:=?\"", Some("a b'()+_,-./:=?")),
            ("multipart/form-data; charset=utf-8; boundary=abc", Some("abc")),
            ("multipart/form-data; boundary=abc; charset=\"utf-8\"", Some("abc")),
            (ct70.as_str(), Some(b70.as_str())),
            (ct71.as_str(), None),
            ("multipart/mixed; boundary=abc", None),
            ("application/json", None),
            ("multipart/form-data", None),
            ("multipart/form-data; charset=utf-8", None),
            ("multipart/form-data; boundary=", None),
            ("multipart/form-data; boundary=\"\"", None),
            ("multipart/form-data; boundary=\"abc \"", None),
            ("multipart/form-data; boundary=a!b", None),
            ("multipart/form-data; boundary=a=b", None),
            ("multipart/form-data; boundary=\"a\\\\b\"", None),
            ("multipart/form-data; boundary=\"abc", None),
            ("multipart/form-data; boundary=abc; boundary=abd", None),
            ("multipart/form-data; boundary=abc; BOUNDARY=abc", None),
            ("multipart/form-data; boundary*=UTF-8''abc", None),
            ("multipart/form-data; boundary = abc", None),
            ("multipart/form-data; boundary=abc;", None),
            ("multipart/form-data;; boundary=abc", None),
            ("multipart/form-data boundary=abc", None),
            ("multipart/form-data; boundary=ab\u{e9}", None),
        ] {
            assert_eq!(boundary(ct), want, "{ct:?}");
        }
    }

    /// Bodies every parser reads alike, with boundary `b`: (name, body, parts, preamble, epilogue).
    #[allow(clippy::type_complexity)]
    fn accepted() -> Vec<(&'static str, Vec<u8>, Vec<Seen>, &'static [u8], &'static [u8])> {
        let cd = |name: &str| format!("Content-Disposition: form-data; name=\"{name}\"\r\n");
        let one = |headers: &str, body: &str| format!("--b\r\n{headers}\r\n{body}\r\n--b--\r\n").into_bytes();
        vec![
            ("one text field", one(&cd("a"), "hello"), vec![text("a", "hello")], b"", b"\r\n"),
            (
                "preamble and epilogue",
                format!("This is the preamble.\r\n\r\n--b\r\n{}\r\nx\r\n--b--\r\nThis is the epilogue.\r\n", cd("a"))
                    .into_bytes(),
                vec![text("a", "x")],
                b"This is the preamble.\r\n\r\n",
                b"\r\nThis is the epilogue.\r\n",
            ),
            (
                "boundary text not after CRLF is data",
                one(&cd("a"), "x--b\r\n-- b\n--b\r--b--"),
                vec![text("a", "x--b\r\n-- b\n--b\r--b--")],
                b"",
                b"\r\n",
            ),
            ("empty body", one(&cd("a"), ""), vec![text("a", "")], b"", b"\r\n"),
            (
                "close delimiter at the very end",
                format!("--b\r\n{}\r\nx\r\n--b--", cd("a")).into_bytes(),
                vec![text("a", "x")],
                b"",
                b"",
            ),
            ("no parts", b"--b--\r\n".to_vec(), vec![], b"", b"\r\n"),
            (
                "two parts",
                format!("--b\r\n{}\r\n1\r\n--b\r\n{}\r\n2\r\n--b--\r\n", cd("a"), cd("c")).into_bytes(),
                vec![text("a", "1"), text("c", "2")],
                b"",
                b"\r\n",
            ),
            (
                "header and parameter names in any case, tab and trailing space",
                one("CONTENT-DISPOSITION:\tForm-Data;NAME=a  \r\ncontent-type:text/plain; charset=utf-8 \r\n", "x"),
                vec![("a".into(), None, Some("text/plain; charset=utf-8".into()), b"x".to_vec())],
                b"",
                b"\r\n",
            ),
            (
                "quoted escapes and a quoted semicolon",
                one("Content-Disposition: form-data; name=\"a\\\"b\\\\c;d\"\r\n", "x"),
                vec![text("a\"b\\c;d", "x")],
                b"",
                b"\r\n",
            ),
            (
                "filename* wins over filename",
                one("Content-Disposition: form-data; name=\"f\"; filename=\"e.wav\"; filename*=UTF-8''%E2%82%AC%20.wav\r\n", "x"),
                vec![("f".into(), Some("\u{20ac} .wav".into()), None, b"x".to_vec())],
                b"",
                b"\r\n",
            ),
            (
                "filename* alone is text to python-multipart",
                one("Content-Disposition: form-data; name=\"f\"; filename*=utf-8'en'a.wav\r\n", "x"),
                vec![text("f", "x")],
                b"",
                b"\r\n",
            ),
            (
                "an empty filename is text to Go",
                one("Content-Disposition: form-data; name=\"f\"; filename=\"\"\r\n", "x"),
                vec![text("f", "x")],
                b"",
                b"\r\n",
            ),
            (
                "an empty filename* is text to Go",
                one("Content-Disposition: form-data; name=\"f\"; filename=\"a\"; filename*=UTF-8''\r\n", "x"),
                vec![text("f", "x")],
                b"",
                b"\r\n",
            ),
            (
                "identity transfer encoding and other headers",
                one(&format!("{}Content-Transfer-Encoding: BINARY\r\nX-Trace: 1\r\n", cd("a")), "x"),
                vec![text("a", "x")],
                b"",
                b"\r\n",
            ),
            (
                "UTF-8 name and filename",
                one("Content-Disposition: form-data; name=\"pr\u{f6}mpt\"; filename=\"r\u{e9}sum\u{e9}.txt\"\r\n", "x"),
                vec![("pr\u{f6}mpt".into(), Some("r\u{e9}sum\u{e9}.txt".into()), None, b"x".to_vec())],
                b"",
                b"\r\n",
            ),
            (
                "token filename",
                one("Content-Disposition: form-data; name=f; filename=a.txt\r\n", "x"),
                vec![("f".into(), Some("a.txt".into()), None, b"x".to_vec())],
                b"",
                b"\r\n",
            ),
        ]
    }

    #[test]
    fn reads_what_every_parser_reads_alike() {
        for (name, body, want, preamble, epilogue) in accepted() {
            let form = parse(&body, "b").unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(seen(&body, &form), want, "{name}");
            assert_eq!(&body[form.preamble.clone()], preamble, "{name}");
            assert_eq!(&body[form.epilogue.clone()], epilogue, "{name}");
        }
    }

    #[test]
    fn refuses_what_parsers_read_differently_or_cannot_read() {
        use MultipartError::*;
        let cd = "Content-Disposition: form-data; name=\"a\"\r\n";
        let one = |headers: &str| format!("--b\r\n{headers}\r\nx\r\n--b--\r\n").into_bytes();
        let cdp = |params: &str| one(&format!("Content-Disposition: form-data; {params}"));
        let tail = |rest: &str| format!("--b\r\n{cd}\r\nx\r\n--b{rest}").into_bytes();
        let long = format!("--b\r\n{cd}X-Long: {}\r\n\r\nx\r\n--b--\r\n", "y".repeat(MAX_HEADER_BYTES)).into_bytes();
        let fits = format!("--b\r\n{cd}X: {}\r\n\r\nx\r\n--b--", "y".repeat(MAX_HEADER_BYTES - cd.len() - 7));
        assert!(parse(fits.as_bytes(), "b").is_ok(), "a header block of exactly the limit");
        let over = fits.replacen("X: ", "X:  ", 1);
        let cases: Vec<(&str, Vec<u8>, MultipartError)> = vec![
            ("empty", b"".to_vec(), NoOpeningDelimiter),
            ("no delimiter", b"hello".to_vec(), NoOpeningDelimiter),
            ("delimiter after bare LF only", b"x\n--b\r\n".to_vec(), NoOpeningDelimiter),
            (
                "LF-only body",
                b"--b\nContent-Disposition: form-data; name=\"a\"\n\nx\n--b--\n".to_vec(),
                BareLineEnding { at: 3 },
            ),
            ("CR after delimiter", b"--b\rX".to_vec(), BareLineEnding { at: 3 }),
            (
                "LF-only headers",
                b"--b\r\nContent-Disposition: form-data; name=\"a\"\n\nx\r\n--b--".to_vec(),
                BareLineEnding { at: 45 },
            ),
            (
                "bare CR in headers",
                format!("--b\r\n{}\rX: y\r\n\r\nx\r\n--b--", &cd[..cd.len() - 2]).into_bytes(),
                BareLineEnding { at: 45 },
            ),
            ("truncated body", format!("--b\r\n{cd}\r\nhel").into_bytes(), MissingCloseDelimiter),
            ("truncated delimiter", tail(""), MissingCloseDelimiter),
            ("truncated close", tail("-"), MissingCloseDelimiter),
            ("truncated CRLF", tail("\r"), MissingCloseDelimiter),
            ("no close, body ends after CRLF", tail("\r\n"), HeadersNotTerminated { part: 1 }),
            (
                "truncated headers",
                b"--b\r\nContent-Disposition: form-data; name=\"a\"\r\n".to_vec(),
                HeadersNotTerminated { part: 0 },
            ),
            ("truncated at header CR", b"--b\r\nX: 1\r".to_vec(), HeadersNotTerminated { part: 0 }),
            ("headers too long", long, HeadersTooLong { part: 0 }),
            ("headers one byte too long", over.into_bytes(), HeadersTooLong { part: 0 }),
            (
                "transport padding",
                tail(" \r\nContent-Disposition: form-data; name=\"f\"; filename=\"f\"\r\n\r\nSECRET\r\n--b--"),
                AmbiguousDelimiter { at: 52 },
            ),
            (
                "padding on the first delimiter",
                format!("--b\t\r\n{cd}\r\nx\r\n--b--").into_bytes(),
                AmbiguousDelimiter { at: 0 },
            ),
            ("padding on the close delimiter", tail(" --"), AmbiguousDelimiter { at: 52 }),
            ("boundary then other bytes", tail("x\r\n--b--"), AmbiguousDelimiter { at: 52 }),
            ("boundary then one dash", tail("-x\r\n--b--"), AmbiguousDelimiter { at: 52 }),
            ("delimiter in the preamble", b"\r\nxyz--b\r\n--b--".to_vec(), AmbiguousDelimiter { at: 5 }),
            (
                "body starts with the delimiter",
                format!("--b\r\n{cd}\r\n--b\r\n{cd}\r\ny\r\n--b--").into_bytes(),
                AmbiguousDelimiter { at: 49 },
            ),
            (
                "header line starts with the delimiter",
                b"--b\r\n--b: 1\r\n\r\nx\r\n--b--".to_vec(),
                AmbiguousDelimiter { at: 5 },
            ),
            ("folded header", one(&format!("{cd}X: a\r\n\tb\r\n")), MalformedHeader { part: 0 }),
            ("no colon", one(&format!("{cd}X-Flag\r\n")), MalformedHeader { part: 0 }),
            ("space before colon", one("Content-Disposition : form-data; name=\"a\"\r\n"), MalformedHeader { part: 0 }),
            ("control byte", one(&format!("{cd}X: a\x00b\r\n")), MalformedHeader { part: 0 }),
            ("two dispositions", one(&format!("{cd}{cd}")), DuplicateHeader { part: 0 }),
            (
                "two content types",
                one(&format!("{cd}Content-Type: a/b\r\ncontent-type: a/b\r\n")),
                DuplicateHeader { part: 0 },
            ),
            ("no disposition", one("Content-Type: text/plain\r\n"), Disposition { part: 0 }),
            ("no headers", one(""), Disposition { part: 0 }),
            ("attachment", one("Content-Disposition: attachment; name=\"a\"\r\n"), Disposition { part: 0 }),
            ("no name", cdp("filename=\"a\"\r\n"), Disposition { part: 0 }),
            ("no parameters", one("Content-Disposition: form-data\r\n"), Disposition { part: 0 }),
            ("repeated name", cdp("name=a; NAME=b\r\n"), Disposition { part: 0 }),
            ("repeated filename", cdp("name=a; filename=x; filename=x\r\n"), Disposition { part: 0 }),
            ("name*", cdp("name*=UTF-8''a\r\n"), Disposition { part: 0 }),
            ("filename continuation", cdp("name=a; filename=b; filename*0=c\r\n"), Disposition { part: 0 }),
            ("quoted filename*", cdp("name=a; filename=b; filename*=\"UTF-8''c\"\r\n"), Disposition { part: 0 }),
            ("latin-1 filename*", cdp("name=a; filename=b; filename*=ISO-8859-1''%E9\r\n"), Disposition { part: 0 }),
            ("bad percent escape", cdp("name=a; filename=b; filename*=UTF-8''%ZZ\r\n"), Disposition { part: 0 }),
            (
                "invalid UTF-8 in filename*",
                cdp("name=a; filename=b; filename*=UTF-8''%FF\r\n"),
                Disposition { part: 0 },
            ),
            (
                "escaped backslash before the closing quote",
                cdp("name=\"a\\\\\"; filename=\"x\"\r\n"),
                Disposition { part: 0 },
            ),
            ("other escape", cdp("name=\"a\\b\"\r\n"), Disposition { part: 0 }),
            ("text after closing quote", cdp("name=\"a\"x; filename=\"q\"\r\n"), Disposition { part: 0 }),
            ("unterminated quote", cdp("name=\"a\r\n"), Disposition { part: 0 }),
            ("trailing semicolon", cdp("name=a;\r\n"), Disposition { part: 0 }),
            ("parameter without value", cdp("x; name=a\r\n"), Disposition { part: 0 }),
            ("space around equals", cdp("name = a\r\n"), Disposition { part: 0 }),
            (
                "quoted-printable",
                one(&format!("{cd}Content-Transfer-Encoding: quoted-printable\r\n")),
                TransferEncoding { part: 0 },
            ),
            ("base64", one(&format!("{cd}Content-Transfer-Encoding: base64\r\n")), TransferEncoding { part: 0 }),
            (
                "two transfer encodings",
                one(&format!("{cd}Content-Transfer-Encoding: 8bit\r\nContent-Transfer-Encoding: 8bit\r\n")),
                DuplicateHeader { part: 0 },
            ),
        ];
        for (name, body, want) in cases {
            assert_eq!(parse(&body, "b"), Err(want), "{name}");
        }
    }

    #[test]
    fn refuses_invalid_boundaries() {
        for b in ["", "a ", "a\\b", "a;b", "\u{e9}", &"a".repeat(71)] {
            assert_eq!(parse(b"--x--", b), Err(MultipartError::InvalidBoundary), "{b:?}");
        }
    }

    #[test]
    fn bounds_the_number_of_parts() {
        let form = |n: usize| {
            let mut v = "--b\r\nContent-Disposition: form-data; name=a\r\n\r\nx\r\n".repeat(n).into_bytes();
            v.extend_from_slice(b"--b--");
            v
        };
        assert_eq!(parse(&form(MAX_PARTS), "b").map(|f| f.parts.len()), Ok(MAX_PARTS));
        assert_eq!(parse(&form(MAX_PARTS + 1), "b"), Err(MultipartError::TooManyParts));
    }

    #[test]
    fn replace_bodies_without_replacements_is_byte_identical() {
        let mut bodies: Vec<(&str, Vec<u8>)> = accepted().into_iter().map(|c| ("b", c.1)).collect();
        bodies.push((B, whisper()));
        for (b, body) in bodies {
            let form = parse(&body, b).unwrap();
            assert_eq!(replace_bodies(&body, &form, &[]).unwrap(), body);
            let same: Vec<(usize, Vec<u8>)> =
                form.parts.iter().enumerate().map(|(i, p)| (i, body[p.body.clone()].to_vec())).collect();
            assert_eq!(replace_bodies(&body, &form, &same).unwrap(), body);
        }
    }

    #[test]
    fn replace_bodies_changes_only_the_replaced_parts() {
        let body = whisper();
        let form = parse(&body, B).unwrap();
        for new in [&b"Call with [NAME], [EMAIL], about card [CARD]"[..], b"", b"a much longer replacement\r\n--b\r\n"]
        {
            let out = replace_bodies(&body, &form, &[(1, new.to_vec())]).unwrap();
            let again = parse(&out, B).unwrap();
            let mut want = seen(&body, &form);
            want[1].3 = new.to_vec();
            assert_eq!(seen(&out, &again), want);
            assert_eq!(&out[again.preamble.clone()], &body[form.preamble.clone()]);
            assert_eq!(&out[again.epilogue.clone()], &body[form.epilogue.clone()]);
            for (a, b) in again.parts.iter().zip(&form.parts) {
                assert_eq!(out[a.headers.clone()], body[b.headers.clone()]);
            }
        }
        // Several at once, given in any order.
        let out = replace_bodies(&body, &form, &[(2, b"fr".to_vec()), (0, b"m".to_vec())]).unwrap();
        let names: Vec<Vec<u8>> = parse(&out, B).unwrap().parts.iter().map(|p| out[p.body.clone()].to_vec()).collect();
        assert_eq!(names[..3], [b"m".to_vec(), form_body(&body, &form, 1), b"fr".to_vec()]);
    }

    fn form_body(body: &[u8], form: &Multipart, i: usize) -> Vec<u8> {
        body[form.parts[i].body.clone()].to_vec()
    }

    #[test]
    fn replace_bodies_refuses_what_would_move_part_limits() {
        use MultipartError::*;
        let body = whisper();
        let form = parse(&body, B).unwrap();
        for (new, want) in [
            (vec![(1, format!("x\r\n--{B}\r\ny").into_bytes())], BoundaryInReplacement { part: 1 }),
            (vec![(1, format!("x\r\n--{B}--").into_bytes())], BoundaryInReplacement { part: 1 }),
            (vec![(1, format!("--{B}x").into_bytes())], BoundaryInReplacement { part: 1 }),
            (vec![(4, b"x".to_vec())], NoSuchPart { index: 4 }),
            (vec![(1, b"x".to_vec()), (1, b"y".to_vec())], NoSuchPart { index: 1 }),
        ] {
            assert_eq!(replace_bodies(&body, &form, &new), Err(want));
        }
        assert_eq!(replace_bodies(&body[1..], &form, &[(0, b"x".to_vec())]), Err(BodyMismatch));
        assert_eq!(replace_bodies(b"short", &form, &[]), Err(BodyMismatch));
    }

    #[test]
    fn near_delimiters_are_searched_in_linear_time() {
        // Every CR starts a candidate that fails only at the delimiter's last byte.
        let boundary = "x".repeat(70);
        let near = format!("\r\n--{}", &boundary[..69]);
        let mut body = format!("--{boundary}\r\nContent-Disposition: form-data; name=a\r\n\r\n").into_bytes();
        body.extend_from_slice(near.repeat(1 << 16).as_bytes());
        body.extend_from_slice(format!("\r\n--{boundary}--").as_bytes());
        let form = parse(&body, &boundary).unwrap();
        assert_eq!(form.parts[0].body.len(), near.len() << 16);
    }

    #[test]
    fn errors_say_where_not_what() {
        for (e, want) in [
            (MultipartError::BareLineEnding { at: 3 }, "a bare LF or CR where multipart requires CRLF, at byte 3"),
            (MultipartError::MissingCloseDelimiter, "the multipart body ends before its close delimiter (truncated)"),
            (
                MultipartError::Disposition { part: 2 },
                "multipart part 2 has no unambiguous Content-Disposition: form-data with a name",
            ),
        ] {
            assert_eq!(e.to_string(), want);
        }
    }
}

/// The examples in this module's docs, run.
#[cfg(test)]
mod doc_examples {
    use super::*;

    #[test]
    fn multiparterror_example() {
        // Bare LF line endings: Go reads this, python-multipart and busboy do not.
        let body = b"--b\nContent-Disposition: form-data; name=\"a\"\n\nx\n--b--\n";
        assert_eq!(parse(body, "b"), Err(MultipartError::BareLineEnding { at: 3 }));
    }

    #[test]
    fn multipart_example() {
        let body = b"preamble\r\n--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx\r\n--b--\r\nbye";
        let form = parse(body, "b").unwrap();
        assert_eq!(&body[form.preamble.clone()], b"preamble\r\n");
        assert_eq!(&body[form.epilogue.clone()], b"\r\nbye");
    }

    #[test]
    fn part_example() {
        let body = b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\
                     Content-Type: audio/wav\r\n\r\nRIFF\r\n--b--\r\n";
        let part = &parse(body, "b").unwrap().parts[0];
        assert_eq!(part.name, "file");
        assert_eq!(part.filename.as_deref(), Some("a.wav"));
        assert_eq!(part.content_type.as_deref(), Some("audio/wav"));
        assert_eq!(&body[part.body.clone()], b"RIFF");
    }

    #[test]
    fn boundary_example() {
        assert_eq!(boundary("multipart/form-data; boundary=3f2b0c8e"), Some("3f2b0c8e"));
        assert_eq!(boundary("Multipart/Form-Data; Boundary=\"a b:c\""), Some("a b:c"));
        assert_eq!(boundary("multipart/mixed; boundary=x"), None);
        assert_eq!(boundary("multipart/form-data"), None);
    }

    #[test]
    fn parse_example() {
        let body = b"--xyz\r\n\
                     Content-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n\
                     --xyz\r\n\
                     Content-Disposition: form-data; name=\"prompt\"\r\n\r\nCall Jane\r\n\
                     --xyz--\r\n";
        let form = parse(body, "xyz").unwrap();
        let fields: Vec<(&str, &[u8])> = form.parts.iter().map(|p| (p.name.as_str(), &body[p.body.clone()])).collect();
        assert_eq!(fields, [("model", &b"whisper-1"[..]), ("prompt", &b"Call Jane"[..])]);
    }

    #[test]
    fn replace_bodies_example() {
        let body = b"--b\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\nmail jane@x.io\r\n--b--\r\n";
        let form = parse(body, "b").unwrap();
        assert_eq!(replace_bodies(body, &form, &[]).unwrap(), body);
        let out = replace_bodies(body, &form, &[(0, b"mail [EMAIL]".to_vec())]).unwrap();
        assert_eq!(out, b"--b\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\nmail [EMAIL]\r\n--b--\r\n");
    }
}
