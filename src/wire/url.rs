//! The request target (`:path`): a client's text too. Values in the path or the query string
//! reach the upstream and Envoy's access log, so they are read the way a server reads them
//! (percent-decoded, `+` as a space in the query) and redacted in place, re-encoded.

use std::ops::Range;

/// Redacts a request target: the path as one text, then each query parameter's name and value
/// (the value under the parameter's name, so field rules such as `api_key` apply). `redact`
/// gets a decoded text and its key and returns the spans of it to replace. Returns the new
/// target, or `None` when nothing changed.
///
/// # Examples
///
/// ```text
/// use inferguard::wire::url::redact_target;
///
/// let out = redact_target("/v1/x?who=jane%40corp.example&n=1", |_, text| {
///     text.find('@').map(|_| vec![(0..text.len(), "[X]".to_string())])
/// });
/// assert_eq!(out.as_deref(), Some("/v1/x?who=%5BX%5D&n=1"));
/// ```
pub fn redact_target(
    target: &str,
    mut redact: impl FnMut(Option<&str>, &str) -> Option<Vec<(Range<usize>, String)>>,
) -> Option<String> {
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let mut changed = false;
    let mut out = String::with_capacity(target.len());
    // The path twice: as one text (a value may run across a `/`: `postgres://user:pw@host`),
    // then segment by segment (a segment is a value of its own to the engine).
    let whole = redact_piece(path, Piece::Path, None, &mut redact);
    let path = whole.as_deref().unwrap_or(path);
    match redact_piece(path, Piece::Segments, None, &mut redact) {
        Some(p) => {
            changed = true;
            out.push_str(&p);
        }
        None => {
            changed |= whole.is_some();
            out.push_str(path);
        }
    }
    if let Some(query) = query {
        out.push('?');
        for (i, pair) in query.split('&').enumerate() {
            if i > 0 {
                out.push('&');
            }
            let (name, value) = match pair.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (pair, None),
            };
            match redact_piece(name, Piece::Query, None, &mut redact) {
                Some(n) => {
                    changed = true;
                    out.push_str(&n);
                }
                None => out.push_str(name),
            }
            if let Some(value) = value {
                out.push('=');
                let key = decode(name, true).0;
                match redact_piece(value, Piece::Query, Some(&key), &mut redact) {
                    Some(v) => {
                        changed = true;
                        out.push_str(&v);
                    }
                    None => out.push_str(value),
                }
            }
        }
    }
    changed.then_some(out)
}

type Redact<'r> = dyn FnMut(Option<&str>, &str) -> Option<Vec<(Range<usize>, String)>> + 'r;

/// How a piece of the target is read.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Piece {
    /// The path as one text.
    Path,
    /// The path with each `/` between segments a line break to the engine: each segment is a
    /// value of its own (`/files/4111 1111 1111 1111/x` holds a card number, not a fraction).
    /// An encoded `%2F` stays inside its segment.
    Segments,
    /// A query parameter's name or value (`+` is a space).
    Query,
}

fn redact_piece(raw: &str, piece: Piece, key: Option<&str>, redact: &mut Redact) -> Option<String> {
    let query = piece == Piece::Query;
    let segments = |text: &str, is_separator: &dyn Fn(usize) -> bool| -> String {
        text.char_indices().map(|(i, c)| if c == '/' && is_separator(i) { '\n' } else { c }).collect()
    };
    if !raw.contains(['%', '+']) {
        // Nothing encoded (nearly every path): the text is the raw piece.
        let spans = if piece == Piece::Segments { redact(key, &segments(raw, &|_| true)) } else { redact(key, raw) };
        return spans.map(|spans| splice(raw, &spans, |o| o));
    }
    let (text, map) = decode(raw, query);
    let text = if piece == Piece::Segments { segments(&text, &|i| raw.as_bytes()[map[i]] == b'/') } else { text };
    redact(key, &text).map(|spans| splice(raw, &spans, |o| map[o]))
}

/// `raw` with the spans (offsets in its decoded text, turned into raw offsets by `raw_at`)
/// replaced by their text, percent-encoded.
fn splice(raw: &str, spans: &[(Range<usize>, String)], raw_at: impl Fn(usize) -> usize) -> String {
    let mut out = String::with_capacity(raw.len() + 32);
    let mut last = 0;
    for (r, new) in spans {
        let (start, end) = (raw_at(r.start), raw_at(r.end));
        out.push_str(&raw[last..start]);
        encode_into(new, &mut out);
        last = end;
    }
    out.push_str(&raw[last..]);
    out
}

/// Percent-decodes `raw` (and `+` in a query); returns the text and, for every byte offset of
/// the text (and its end), the offset in `raw` where it came from. Bytes that do not form UTF-8
/// become U+FFFD.
fn decode(raw: &str, query: bool) -> (String, Vec<usize>) {
    let b = raw.as_bytes();
    let mut bytes = Vec::with_capacity(b.len());
    let mut from = Vec::with_capacity(b.len() + 1);
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match b[i] {
            b'%' if i + 2 < b.len() => {
                if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                    bytes.push((h * 16 + l) as u8);
                    from.push(i);
                    i += 3;
                    continue;
                }
                bytes.push(b'%');
                from.push(i);
                i += 1;
            }
            b'+' if query => {
                bytes.push(b' ');
                from.push(i);
                i += 1;
            }
            c => {
                bytes.push(c);
                from.push(i);
                i += 1;
            }
        }
    }
    from.push(b.len());
    let mut text = String::with_capacity(bytes.len());
    let mut map = Vec::with_capacity(bytes.len() + 1);
    let mut at = 0;
    for chunk in bytes.utf8_chunks() {
        let valid = chunk.valid();
        text.push_str(valid);
        map.extend_from_slice(&from[at..at + valid.len()]);
        at += valid.len();
        for _ in chunk.invalid() {
            text.push('\u{FFFD}');
            map.extend_from_slice(&[from[at]; 3]);
            at += 1;
        }
    }
    map.push(from[at]);
    (text, map)
}

/// Appends `s` percent-encoded: everything but RFC 3986 unreserved characters.
fn encode_into(s: &str, out: &mut String) {
    for &c in s.as_bytes() {
        if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~') {
            out.push(c as char);
        } else {
            out.push_str(&format!("%{c:02X}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email(_: Option<&str>, text: &str) -> Option<Vec<(Range<usize>, String)>> {
        let at = text.find("jane@x.io")?;
        Some(vec![(at..at + 9, "[E]".to_string())])
    }

    #[test]
    fn redacts_values_in_the_path_and_the_query_whatever_their_encoding() {
        for (target, want) in [
            ("/v1/users/jane@x.io/items", Some("/v1/users/%5BE%5D/items")),
            ("/v1/users/jane%40x%2Eio", Some("/v1/users/%5BE%5D")),
            ("/v1/x?q=hi+jane%40x.io+ok&t=1", Some("/v1/x?q=hi+%5BE%5D+ok&t=1")),
            ("/v1/x?jane@x.io", Some("/v1/x?%5BE%5D")),
            ("/v1/x?a=%ff%jane@x.io", Some("/v1/x?a=%ff%%5BE%5D")),
            ("/v1/x?a=1&b", None),
            ("/v1/chat/completions", None),
        ] {
            assert_eq!(redact_target(target, email).as_deref(), want, "{target}");
        }
    }

    #[test]
    fn the_path_is_read_whole_then_segment_by_segment_and_an_encoded_slash_stays_inside() {
        let mut texts = Vec::new();
        redact_target("/v1/files/4111%201111%201111%201111/a%2Fb", |_, t| {
            texts.push(t.to_owned());
            None
        });
        assert_eq!(texts, ["/v1/files/4111 1111 1111 1111/a/b", "\nv1\nfiles\n4111 1111 1111 1111\na/b"]);
    }

    #[test]
    fn query_values_are_judged_under_their_names() {
        let mut keys = Vec::new();
        redact_target("/p?api%5Fkey=s3cret&x", |k, t| {
            keys.push((k.map(str::to_owned), t.to_owned()));
            None
        });
        assert_eq!(
            keys,
            vec![
                (None, "/p".into()),
                (None, "\np".into()),
                (None, "api_key".into()),
                (Some("api_key".into()), "s3cret".into()),
                (None, "x".into())
            ]
        );
    }
}

/// The examples in this module's docs, run.
#[cfg(test)]
mod doc_examples {
    use super::*;

    #[test]
    fn redact_target_example() {
        let out = redact_target("/v1/x?who=jane%40corp.example&n=1", |_, text| {
            text.find('@').map(|_| vec![(0..text.len(), "[X]".to_string())])
        });
        assert_eq!(out.as_deref(), Some("/v1/x?who=%5BX%5D&n=1"));
    }
}
