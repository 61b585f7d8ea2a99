//! Streaming redaction: text released as soon as no match can still begin in it.
//!
//! - [`TextStream`] redacts one logical stream of text (a choice, a content block) as pieces of
//!   it arrive, holding back only the tail that could still become a match.
//! - [`ResponseStream`] cuts a streamed body (SSE, NDJSON, raw text) into events, feeds each
//!   event's text fragments to the right [`TextStream`], and rebuilds the events with only their
//!   text changed.

pub mod fields;
mod response;
mod text;

pub use response::{apply_spans, error_event, redact_spans, Framing, Holdback, ResponseStream, Spans, StreamStop};
pub use text::{HoldbackExceeded, InvalidUtf8, TextStream, Utf8Decoder};
