//! What a body is, decided by its bytes: JSON, a JSON sequence, server-sent events, text, or
//! binary. Labels (`content-type`, the method, the API) decide nothing here: a JSON answer
//! labelled `text/event-stream`, an SSE stream labelled `text/plain` or an NDJSON stream with no
//! label are read as what they are, the way a client that ignores the label reads them.
//!
//! The one label that is believed is a `charset` naming UTF-16 or UTF-32: it can only make the
//! filter refuse a body (wide text is never scanned as UTF-8), never pass one.

use super::json;

/// The shape of a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// One JSON document, or JSON documents one per line (decided once the body is complete).
    Json,
    /// JSON documents one per line, seen to be a stream before the body ended.
    Ndjson,
    /// Server-sent events.
    Sse,
    /// UTF-8 text (what is not valid UTF-8 after this decision stops the body).
    Text,
    /// Not text: media, archives, or bytes that are mostly not UTF-8.
    Binary,
    /// UTF-16 or UTF-32 text (a byte-order mark, a `charset`, or NUL bytes between characters):
    /// refused, never scanned as UTF-8.
    Wide,
}

/// What [`sniff`] could tell from the bytes so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniff {
    /// The shape is known.
    Is(Shape),
    /// More bytes are needed (never returned once the body has ended).
    NeedMore,
}

/// Bytes looked at to tell binary from text when the first bytes are not clean UTF-8.
pub const BINARY_WINDOW: usize = 512;

/// A JSON-looking body whose first value is not complete within this many bytes is treated as
/// one document and read whole at its end (where documents one per line are still read as such,
/// only not as they arrive). A JSON line of a real stream is far shorter; the window bounds what
/// is read twice before a large answer is known to be one document.
pub const FIRST_VALUE_WINDOW: usize = 8 * 1024;

/// Decides the shape of a body from its first bytes (`end`: these are all of them) and its
/// `content-type`, which is read only for a UTF-16/32 `charset`.
///
/// # Examples
///
/// ```text
/// use inferguard::wire::sniff::{sniff, Shape, Sniff};
///
/// assert_eq!(sniff(b"{\"id\":\"x\"}", true, Some("text/event-stream")), Sniff::Is(Shape::Json));
/// assert_eq!(sniff(b"data: {}\n\n", false, Some("text/plain")), Sniff::Is(Shape::Sse));
/// assert_eq!(sniff(b"{\"a\":1}\n{\"a\"", false, None), Sniff::Is(Shape::Ndjson));
/// assert_eq!(sniff(b"\xff\xfe{\x00", false, Some("application/json")), Sniff::Is(Shape::Wide));
/// assert_eq!(sniff(b"\x89PNG\r\n\x1a\n", false, Some("text/plain")), Sniff::Is(Shape::Binary));
/// assert_eq!(sniff(b"dat", false, None), Sniff::NeedMore);
/// ```
pub fn sniff(bytes: &[u8], end: bool, content_type: Option<&str>) -> Sniff {
    // A byte-order mark cut by the network: wait for the rest of it.
    const BOMS: [&[u8]; 4] = [b"\xEF\xBB\xBF", b"\xFF\xFE", b"\xFE\xFF", b"\x00\x00\xFE\xFF"];
    if !end && BOMS.iter().any(|b| bytes.len() < b.len() && b.starts_with(bytes)) {
        return Sniff::NeedMore;
    }
    if content_type.is_some_and(wide_charset) || wide_bom(bytes) {
        return Sniff::Is(Shape::Wide);
    }
    let window = &bytes[..bytes.len().min(BINARY_WINDOW)];
    // Before the NUL pattern: media headers are full of NUL bytes. A signature is not enough by
    // itself: "BMI is..." and "ID3 tags..." are text, and only what is not UTF-8 passes as binary.
    if magic(bytes) {
        if !utf8(window) {
            return Sniff::Is(Shape::Binary);
        }
        if !end && bytes.len() < BINARY_WINDOW {
            return Sniff::NeedMore;
        }
    }
    if nul_interleaved(bytes) {
        return Sniff::Is(Shape::Wide);
    }
    let body = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let start = body.iter().position(|c| !c.is_ascii_whitespace()).unwrap_or(body.len());
    let rest = &body[start..];
    if rest.is_empty() {
        return if end { Sniff::Is(Shape::Text) } else { Sniff::NeedMore };
    }
    // JSON is read strictly, bad bytes included: no need to weigh them first.
    if matches!(rest[0], b'{' | b'[' | b'"') {
        return json_family(rest, end);
    }
    // The first bytes tell text from binary; what follows is read as whatever they said.
    if !clean_text(window) {
        if bytes.len() < BINARY_WINDOW && !end {
            return Sniff::NeedMore;
        }
        // Control characters alone do not make binary: UTF-8 text is read as text, whatever it
        // holds (a client shows it).
        if !utf8(window) && mostly_binary(window) {
            return Sniff::Is(Shape::Binary);
        }
        // Text with some bad bytes: read as text, which refuses it where it is not UTF-8.
    }
    sse_or_text(rest, end)
}

fn json_family(rest: &[u8], end: bool) -> Sniff {
    if end {
        return Sniff::Is(Shape::Json);
    }
    // Only the window is looked at: a large first read of a large document is not walked twice.
    let rest = &rest[..rest.len().min(FIRST_VALUE_WINDOW)];
    match json::value_len(rest) {
        Ok(Some(n)) => {
            let after = &rest[n..];
            let Some(nl) = after.iter().position(|&c| c == b'\n') else {
                return if after.iter().any(|c| !c.is_ascii_whitespace()) {
                    // `{..}{..}` or trailing bytes: one document, refused at its end if bad.
                    Sniff::Is(Shape::Json)
                } else {
                    Sniff::NeedMore
                };
            };
            if after[..nl].iter().any(|c| !c.is_ascii_whitespace()) {
                return Sniff::Is(Shape::Json);
            }
            match after[nl..].iter().find(|c| !c.is_ascii_whitespace()) {
                Some(_) => Sniff::Is(Shape::Ndjson),
                None => Sniff::NeedMore,
            }
        }
        Ok(None) if rest.len() < FIRST_VALUE_WINDOW => Sniff::NeedMore,
        // The window is full and the first value still open (or it is not JSON): one document.
        _ => Sniff::Is(Shape::Json),
    }
}

/// The field names that can start an event stream.
const SSE_FIELDS: [&[u8]; 4] = [b"data", b"event", b"id", b"retry"];

fn sse_or_text(rest: &[u8], end: bool) -> Sniff {
    if rest[0] == b':' {
        return Sniff::Is(Shape::Sse);
    }
    let line_end = rest.iter().position(|&c| matches!(c, b':' | b'\n' | b'\r')).unwrap_or(rest.len());
    let name = &rest[..line_end];
    if line_end < rest.len() {
        return Sniff::Is(if SSE_FIELDS.contains(&name) { Shape::Sse } else { Shape::Text });
    }
    if !end && SSE_FIELDS.iter().any(|f| f.starts_with(name)) {
        return Sniff::NeedMore;
    }
    Sniff::Is(if end && SSE_FIELDS.contains(&name) { Shape::Sse } else { Shape::Text })
}

/// A `charset` parameter naming UTF-16 or UTF-32 (any spelling).
fn wide_charset(ct: &str) -> bool {
    ct.split(';').skip(1).any(|p| {
        let Some((k, v)) = p.split_once('=') else { return false };
        let v = v.trim().trim_matches('"').to_ascii_lowercase();
        k.trim().eq_ignore_ascii_case("charset") && (v.starts_with("utf-16") || v.starts_with("utf-32") || v == "ucs-2")
    })
}

fn wide_bom(b: &[u8]) -> bool {
    b.starts_with(b"\xFF\xFE") || b.starts_with(b"\xFE\xFF") || b.starts_with(b"\x00\x00\xFE\xFF")
}

/// UTF-16/32 text without a byte-order mark: ASCII characters with NUL bytes between them.
fn nul_interleaved(b: &[u8]) -> bool {
    let w = &b[..b.len().min(64)];
    let nuls = w.iter().filter(|&&c| c == 0).count();
    nuls > 0 && nuls * 4 >= w.len()
}

/// Signatures of media and archive formats, which carry no text to scan.
fn magic(b: &[u8]) -> bool {
    const SIGS: &[&[u8]] = &[
        b"\x89PNG\r\n\x1a\n",
        b"\xFF\xD8\xFF",
        b"GIF87a",
        b"GIF89a",
        b"PK\x03\x04",
        b"OggS",
        b"fLaC",
        b"ID3",
        b"\x1A\x45\xDF\xA3",
        b"\x00asm",
        b"\x1F\x8B\x08",
        b"\x28\xB5\x2F\xFD",
        b"BM",
    ];
    if SIGS.iter().any(|s| b.starts_with(s)) {
        // A bitmap's `BM` must be followed by a size, not by text.
        return !b.starts_with(b"BM") || b.get(2..6).is_some_and(|s| s.iter().any(|c| !c.is_ascii_graphic()));
    }
    let riff = b.starts_with(b"RIFF") && b.get(8..12).is_some_and(|t| matches!(t, b"WAVE" | b"WEBP" | b"AVI "));
    let mp4 = b.get(4..8) == Some(b"ftyp");
    let mp3 = b.len() >= 2 && b[0] == 0xFF && b[1] & 0xE0 == 0xE0;
    riff || mp4 || mp3
}

/// Valid UTF-8 (a sequence cut at the end is fine) with no control bytes but tab, CR, LF, FF.
fn clean_text(b: &[u8]) -> bool {
    utf8(b) && !b.iter().any(|&c| c < 0x20 && !matches!(c, b'\t' | b'\n' | b'\r' | 0x0C))
}

/// UTF-8, but for a character the window may cut at its end.
fn utf8(b: &[u8]) -> bool {
    match std::str::from_utf8(b) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none(),
    }
}

/// Fewer than 70% of the bytes are printable ASCII or whitespace: random and compressed data
/// score about 37%, text with a few bad bytes close to 100%.
fn mostly_binary(w: &[u8]) -> bool {
    let printable = w.iter().filter(|&&c| c.is_ascii_graphic() || matches!(c, b' ' | b'\t' | b'\n' | b'\r')).count();
    printable * 10 < w.len() * 7
}

#[cfg(test)]
mod tests {
    use super::*;

    const LABELS: [Option<&str>; 9] = [
        None,
        Some("application/json"),
        Some("text/event-stream"),
        Some("application/x-ndjson"),
        Some("text/plain"),
        Some("text/html"),
        Some("application/octet-stream"),
        Some("image/png"),
        Some("text/plain; charset=utf-8"),
    ];

    #[test]
    fn every_label_gives_the_shape_of_the_bytes() {
        let png: Vec<u8> = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
            .iter()
            .copied()
            .chain((0..600u32).map(|i| (i * 97 % 251) as u8))
            .collect();
        let noise: Vec<u8> = (0..600u32).map(|i| (i * 131 % 256) as u8).collect();
        let shapes: [(&[u8], bool, Shape); 15] = [
            (br#"{"id":"chatcmpl-1","choices":[]}"#, true, Shape::Json),
            (b"\xEF\xBB\xBF \n {\"a\":1}", true, Shape::Json),
            (b"[1,2]", true, Shape::Json),
            (b"\"text\"", true, Shape::Json),
            (b"\xEF\xBB\xBFdata: {}\n\n", false, Shape::Sse),
            (b"{\"a\":1}\n{\"a\":2}\n", true, Shape::Json),
            (b"{\"message\":{\"content\":\"hi\"},\"done\":false}\n{\"mess", false, Shape::Ndjson),
            (b"data: {\"choices\":[]}\n\n", false, Shape::Sse),
            (b"\n\nevent: message_start\ndata: {}\n\n", false, Shape::Sse),
            (b": keep-alive\n\n", false, Shape::Sse),
            (b"id: 1\n", false, Shape::Sse),
            (b"Hello, this is plain text.", false, Shape::Text),
            (b"database: up\n", false, Shape::Text),
            (&png, false, Shape::Binary),
            (&noise, true, Shape::Binary),
        ];
        for label in LABELS {
            for (bytes, end, want) in shapes {
                assert_eq!(sniff(bytes, end, label), Sniff::Is(want), "{label:?} {:?}", String::from_utf8_lossy(bytes));
            }
        }
    }

    #[test]
    fn wide_text_is_never_read_as_utf8() {
        let utf16le: Vec<u8> = "{\"a\":\"jane@x.io\"}".encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
        let utf16be: Vec<u8> = "{\"a\":1}".encode_utf16().flat_map(|u| u.to_be_bytes()).collect();
        let utf32le: Vec<u8> = "{\"a\":1}".chars().flat_map(|c| (c as u32).to_le_bytes()).collect();
        for label in LABELS {
            for b in [&utf16le[..], &utf16be, &utf32le, b"\xFF\xFE{\x00", b"\xFE\xFF\x00{"] {
                assert_eq!(sniff(b, false, label), Sniff::Is(Shape::Wide), "{label:?} {b:?}");
            }
        }
        for ct in ["application/json; charset=UTF-16", "text/plain;charset=\"utf-32le\"", "text/plain; charset=ucs-2"] {
            assert_eq!(sniff(b"{}", true, Some(ct)), Sniff::Is(Shape::Wide), "{ct}");
        }
    }

    #[test]
    fn text_with_a_few_bad_bytes_is_text_not_binary() {
        let mut b = b"\xff".to_vec();
        b.extend_from_slice(&b"Reach jane.doe@acme-corp.com today. ".repeat(20));
        assert_eq!(sniff(&b, false, Some("image/png")), Sniff::Is(Shape::Text));
        assert_eq!(sniff(&b[..100], false, Some("image/png")), Sniff::NeedMore);
        assert_eq!(sniff(&b[..100], true, Some("image/png")), Sniff::Is(Shape::Text));
    }

    #[test]
    fn waits_only_as_long_as_the_first_bytes_are_ambiguous() {
        for (bytes, end, want) in [
            (&b""[..], false, Sniff::NeedMore),
            (b"\xEF", false, Sniff::NeedMore),
            (b"\xEF\xBB", false, Sniff::NeedMore),
            (b"\xFF", false, Sniff::NeedMore),
            (b"\x00\x00\xFE", false, Sniff::NeedMore),
            (b"", true, Sniff::Is(Shape::Text)),
            (b"  \n", false, Sniff::NeedMore),
            (b"da", false, Sniff::NeedMore),
            (b"da", true, Sniff::Is(Shape::Text)),
            (b"data", true, Sniff::Is(Shape::Sse)),
            (b"dat!", false, Sniff::Is(Shape::Text)),
            (b"{\"a\":", false, Sniff::NeedMore),
            (b"{\"a\":1}\n", false, Sniff::NeedMore),
            (b"{\"a\":1}\n", true, Sniff::Is(Shape::Json)),
            (b"{\"a\":1} x", false, Sniff::Is(Shape::Json)),
            (b"{\"a\":1}x\n{", false, Sniff::Is(Shape::Json)),
            (b"}", false, Sniff::Is(Shape::Text)),
        ] {
            assert_eq!(sniff(bytes, end, None), want, "{:?} {end}", String::from_utf8_lossy(bytes));
        }
        let long = format!("{{\"a\":\"{}", "x".repeat(FIRST_VALUE_WINDOW));
        assert_eq!(sniff(long.as_bytes(), false, None), Sniff::Is(Shape::Json));
    }
}

/// The examples in this module's docs, run.
#[cfg(test)]
mod doc_examples {
    use super::*;

    #[test]
    fn sniff_example() {
        assert_eq!(sniff(b"{\"id\":\"x\"}", true, Some("text/event-stream")), Sniff::Is(Shape::Json));
        assert_eq!(sniff(b"data: {}\n\n", false, Some("text/plain")), Sniff::Is(Shape::Sse));
        assert_eq!(sniff(b"{\"a\":1}\n{\"a\"", false, None), Sniff::Is(Shape::Ndjson));
        assert_eq!(sniff(b"\xff\xfe{\x00", false, Some("application/json")), Sniff::Is(Shape::Wide));
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n", false, Some("text/plain")), Sniff::Is(Shape::Binary));
        assert_eq!(sniff(b"dat", false, None), Sniff::NeedMore);
    }

    #[test]
    fn text_that_starts_like_a_media_file_or_holds_control_characters_is_text() {
        // Found by fuzzing: both passed as binary, though a client reads them as text.
        for body in [&b"BMI is 23; mail jane@x.io"[..], b"ID3 tags are metadata", b"\x03", b"a\x01b\x02c\x00"] {
            assert_eq!(sniff(body, true, Some("text/plain")), Sniff::Is(Shape::Text), "{body:?}");
        }
        // A signature the window has not yet shown to be binary waits for more.
        assert_eq!(sniff(b"GIF89a", false, None), Sniff::NeedMore);
        assert_eq!(sniff(b"GIF89a\x01\x00\x01\x00\x80\xff\x00", false, None), Sniff::Is(Shape::Binary));
    }
}
