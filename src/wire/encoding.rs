//! Content encodings: gzip and deflate bodies are inflated so they can be scanned.
//!
//! inferguard removes `accept-encoding` from the requests it scans, so upstreams normally answer
//! in plain text. A response compressed anyway is inflated here, incrementally; any other
//! encoding cannot be read, so the exchange refuses it (fail closed).

use miniz_oxide::inflate::stream::{inflate, InflateState};
use miniz_oxide::{DataFormat, MZFlush, MZStatus};

/// A `content-encoding` as the filter sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentEncoding {
    /// None, or `identity`.
    Identity,
    /// `gzip` / `x-gzip`.
    Gzip,
    /// `deflate` (zlib-wrapped, or raw as some servers send it).
    Deflate,
    /// Anything else (`br`, `zstd`, several stacked encodings): unreadable.
    Unsupported,
}

impl ContentEncoding {
    /// Classifies a `content-encoding` header value.
    pub fn from_header(v: Option<&str>) -> ContentEncoding {
        let Some(v) = v.map(str::trim).filter(|v| !v.is_empty()) else { return ContentEncoding::Identity };
        match v.to_ascii_lowercase().as_str() {
            "identity" => ContentEncoding::Identity,
            "gzip" | "x-gzip" => ContentEncoding::Gzip,
            "deflate" => ContentEncoding::Deflate,
            _ => ContentEncoding::Unsupported,
        }
    }
}

/// Why a compressed body could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// The compressed data is corrupt.
    Corrupt,
    /// The body ended before the compressed stream did.
    Truncated,
    /// Inflating would exceed the output limit (a decompression bomb, or simply too large).
    TooLarge,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DecodeError::Corrupt => "the compressed body is corrupt",
            DecodeError::Truncated => "the compressed body is truncated",
            DecodeError::TooLarge => "the decompressed body exceeds the size limit",
        })
    }
}

/// Inflates a gzip or deflate body fed in pieces.
pub struct Decoder {
    encoding: ContentEncoding,
    state: Option<Box<InflateState>>,
    /// Bytes of a gzip header not complete yet, or the first bytes of a deflate body.
    head: Vec<u8>,
    ended: bool,
    produced: u64,
    limit: u64,
}

impl Decoder {
    /// A decoder for `encoding` (gzip or deflate) producing at most `limit` bytes in all.
    pub fn new(encoding: ContentEncoding, limit: u64) -> Decoder {
        Decoder { encoding, state: None, head: Vec::new(), ended: false, produced: 0, limit }
    }

    /// Changes the bound on what the whole body may inflate to (a stream is bounded per event
    /// instead).
    pub fn set_limit(&mut self, limit: u64) {
        self.limit = limit;
    }

    /// Feeds compressed bytes; returns what they inflate to.
    pub fn push(&mut self, input: &[u8]) -> Result<Vec<u8>, DecodeError> {
        let mut input = input;
        let owned;
        if self.state.is_none() {
            self.head.extend_from_slice(input);
            let start = match self.encoding {
                ContentEncoding::Gzip => match gzip_header_len(&self.head)? {
                    Some(n) => {
                        self.state = Some(InflateState::new_boxed(DataFormat::Raw));
                        n
                    }
                    None => return Ok(Vec::new()),
                },
                _ => {
                    if self.head.len() < 2 {
                        return Ok(Vec::new());
                    }
                    let (cmf, flg) = (self.head[0], self.head[1]);
                    let zlib = cmf & 0x0f == 8 && (u16::from(cmf) << 8 | u16::from(flg)) % 31 == 0;
                    self.state = Some(InflateState::new_boxed(if zlib { DataFormat::Zlib } else { DataFormat::Raw }));
                    0
                }
            };
            owned = self.head.split_off(start);
            self.head.clear();
            input = &owned;
        }
        let mut out = Vec::new();
        let Some(state) = self.state.as_mut() else { return Ok(out) };
        let mut buf = [0u8; 16 * 1024];
        while !self.ended && !input.is_empty() {
            let r = inflate(state, input, &mut buf, MZFlush::None);
            input = &input[r.bytes_consumed..];
            self.produced += r.bytes_written as u64;
            if self.produced > self.limit {
                return Err(DecodeError::TooLarge);
            }
            out.extend_from_slice(&buf[..r.bytes_written]);
            match r.status {
                Ok(MZStatus::StreamEnd) => self.ended = true,
                Ok(_) => {
                    if r.bytes_consumed == 0 && r.bytes_written == 0 {
                        break;
                    }
                }
                Err(miniz_oxide::MZError::Buf) => break,
                Err(_) => return Err(DecodeError::Corrupt),
            }
        }
        // Drain output still buffered inside the inflater.
        loop {
            if self.ended {
                break;
            }
            let r = inflate(state, &[], &mut buf, MZFlush::None);
            if r.bytes_written == 0 {
                break;
            }
            self.produced += r.bytes_written as u64;
            if self.produced > self.limit {
                return Err(DecodeError::TooLarge);
            }
            out.extend_from_slice(&buf[..r.bytes_written]);
            if let Ok(MZStatus::StreamEnd) = r.status {
                self.ended = true;
            }
        }
        Ok(out)
    }

    /// Ends the body: the compressed stream must be complete.
    pub fn finish(&mut self) -> Result<(), DecodeError> {
        if self.ended {
            Ok(())
        } else {
            Err(DecodeError::Truncated)
        }
    }
}

/// The length of the gzip header at the start of `b`, `None` if more bytes are needed.
fn gzip_header_len(b: &[u8]) -> Result<Option<usize>, DecodeError> {
    if b.len() < 10 {
        return Ok(None);
    }
    if b[0] != 0x1f || b[1] != 0x8b || b[2] != 8 {
        return Err(DecodeError::Corrupt);
    }
    let flags = b[3];
    let mut i = 10;
    if flags & 4 != 0 {
        let Some(x) = b.get(i..i + 2) else { return Ok(None) };
        i += 2 + usize::from(u16::from_le_bytes([x[0], x[1]]));
    }
    for bit in [8u8, 16] {
        if flags & bit != 0 {
            match b.get(i..).and_then(|r| r.iter().position(|&c| c == 0)) {
                Some(z) => i += z + 1,
                None => return Ok(None),
            }
        }
    }
    if flags & 2 != 0 {
        i += 2;
    }
    Ok((b.len() >= i).then_some(i))
}

#[cfg(test)]
mod tests {
    use super::*;

    // `printf 'hello jane@x.io' | gzip -n | xxd -i` (with FNAME set by hand), and zlib/raw deflate of the same.
    const TEXT: &[u8] = b"hello hello hello jane@x.io";
    fn gzip() -> Vec<u8> {
        let deflated = raw();
        let mut v = vec![0x1f, 0x8b, 8, 8, 0, 0, 0, 0, 0, 3];
        v.extend_from_slice(b"name.txt\0");
        v.extend_from_slice(&deflated);
        v.extend_from_slice(&[0; 8]);
        v
    }
    fn raw() -> Vec<u8> {
        // Stored (uncompressed) deflate block: BFINAL=1, BTYPE=00, LEN, NLEN, data.
        let n = TEXT.len() as u16;
        let mut v = vec![1];
        v.extend_from_slice(&n.to_le_bytes());
        v.extend_from_slice(&(!n).to_le_bytes());
        v.extend_from_slice(TEXT);
        v
    }
    fn zlib() -> Vec<u8> {
        let mut v = vec![0x78, 0x01];
        v.extend_from_slice(&raw());
        let (mut a, mut b) = (1u32, 0u32);
        for &c in TEXT {
            a = (a + u32::from(c)) % 65521;
            b = (b + a) % 65521;
        }
        v.extend_from_slice(&((b << 16) | a).to_be_bytes());
        v
    }

    #[test]
    fn inflates_gzip_zlib_and_raw_deflate_split_anywhere() {
        for (enc, body) in
            [(ContentEncoding::Gzip, gzip()), (ContentEncoding::Deflate, zlib()), (ContentEncoding::Deflate, raw())]
        {
            for i in 0..=body.len() {
                let mut d = Decoder::new(enc, 1 << 20);
                let mut out = d.push(&body[..i]).unwrap();
                out.extend(d.push(&body[i..]).unwrap());
                assert_eq!(out, TEXT, "{enc:?} split at {i}");
                assert_eq!(d.finish(), Ok(()));
            }
        }
    }

    #[test]
    fn refuses_corrupt_truncated_and_oversized_bodies() {
        let mut d = Decoder::new(ContentEncoding::Gzip, 1 << 20);
        assert_eq!(d.push(b"not gzip at all"), Err(DecodeError::Corrupt));
        let g = gzip();
        let mut d = Decoder::new(ContentEncoding::Gzip, 1 << 20);
        d.push(&g[..20]).unwrap();
        assert_eq!(d.finish(), Err(DecodeError::Truncated));
        let mut d = Decoder::new(ContentEncoding::Gzip, 5);
        assert_eq!(d.push(&g), Err(DecodeError::TooLarge));
    }

    #[test]
    fn classifies_headers() {
        assert_eq!(ContentEncoding::from_header(None), ContentEncoding::Identity);
        assert_eq!(ContentEncoding::from_header(Some(" GZIP ")), ContentEncoding::Gzip);
        assert_eq!(ContentEncoding::from_header(Some("br")), ContentEncoding::Unsupported);
        assert_eq!(ContentEncoding::from_header(Some("gzip, br")), ContentEncoding::Unsupported);
    }
}
