//! Which string fields of a streamed event carry generated text, and which events end a
//! logical text stream. Decided from the event's own shape, so a server that speaks OpenAI's
//! format on another path is still understood.

use serde_json::Value;

use crate::wire::json::{Container, Seg};

/// Identifies one logical text stream inside a response: a choice's content, a content block, a
/// tool call's arguments, ...
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    /// Choice index, content block index, or output index.
    pub slot: u64,
    /// Which text of the slot.
    pub kind: &'static str,
    /// Content index or tool-call index within the slot.
    pub sub: u64,
}

/// What a string field of an event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// A fragment of a logical text stream: scanned together with the fragments before it.
    Delta(Key),
    /// A complete value: scanned on its own.
    Whole,
    /// An opaque token that redaction would corrupt (a signature over the content, encrypted
    /// reasoning): left alone.
    Opaque,
}

/// Which logical streams end at an event (their held text must be out before it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ends {
    /// Every stream of this slot.
    Slot(u64),
    /// Every stream.
    All,
}

fn idx(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

fn ty(doc: &Value) -> &str {
    doc.get("type").and_then(Value::as_str).unwrap_or("")
}

/// Classifies the string at `path` in the event `doc`.
pub fn classify(path: &[Seg], doc: &Value) -> Field {
    use Seg::{Index as I, Key as K};
    if let Some(last) = path.last().and_then(Seg::key) {
        if matches!(last, "signature" | "encrypted_content") {
            return Field::Opaque;
        }
    }
    match path {
        // OpenAI chat completion chunks.
        [K(c), I(i), K(d), K(f)] if c == "choices" && d == "delta" => {
            let kind = match f.as_ref() {
                "content" => "content",
                "refusal" => "refusal",
                "reasoning_content" | "reasoning" => "reasoning",
                _ => return Field::Whole,
            };
            Field::Delta(Key { slot: choice_index(doc, *i), kind, sub: 0 })
        }
        [K(c), I(i), K(d), K(t), I(j), K(fun), K(a)]
            if c == "choices" && d == "delta" && t == "tool_calls" && fun == "function" && a == "arguments" =>
        {
            let call = &doc["choices"][*i]["delta"]["tool_calls"][*j];
            let sub = call.get("index").and_then(Value::as_u64).unwrap_or(*j as u64);
            Field::Delta(Key { slot: choice_index(doc, *i), kind: "tool_arguments", sub })
        }
        // OpenAI legacy completions, streamed.
        [K(c), I(i), K(t)] if c == "choices" && t == "text" => {
            Field::Delta(Key { slot: choice_index(doc, *i), kind: "text", sub: 0 })
        }
        // OpenAI Responses deltas.
        [K(d)] if d == "delta" && ty(doc).starts_with("response.") && ty(doc).ends_with(".delta") => {
            let kind = match ty(doc) {
                "response.output_text.delta" => "output_text",
                "response.refusal.delta" => "refusal",
                "response.function_call_arguments.delta" => "function_arguments",
                "response.reasoning_summary_text.delta" => "reasoning_summary",
                "response.reasoning_text.delta" => "reasoning",
                "response.custom_tool_call_input.delta" => "tool_input",
                _ => "other",
            };
            let sub = doc.get("content_index").or(doc.get("summary_index")).and_then(Value::as_u64).unwrap_or(0);
            Field::Delta(Key { slot: idx(doc, "output_index"), kind, sub })
        }
        // Anthropic content block deltas.
        [K(d), K(f)] if d == "delta" && ty(doc) == "content_block_delta" => {
            let kind = match f.as_ref() {
                "text" => "text",
                "partial_json" => "input_json",
                "thinking" => "thinking",
                _ => return Field::Whole,
            };
            Field::Delta(Key { slot: idx(doc, "index"), kind, sub: 0 })
        }
        // TGI tokens.
        [K(t), K(x)] if t == "token" && x == "text" => Field::Delta(Key { slot: 0, kind: "token", sub: 0 }),
        // Ollama chat and generate lines.
        [K(m), K(f)] if m == "message" && doc.get("done").is_some() && matches!(f.as_ref(), "content" | "thinking") => {
            Field::Delta(Key { slot: 0, kind: if f == "content" { "content" } else { "thinking" }, sub: 0 })
        }
        [K(f)] if doc.get("done").is_some() && matches!(f.as_ref(), "response" | "thinking") => {
            Field::Delta(Key { slot: 0, kind: if f == "response" { "response" } else { "thinking" }, sub: 0 })
        }
        _ => Field::Whole,
    }
}

fn choice_index(doc: &Value, pos: usize) -> u64 {
    doc["choices"][pos].get("index").and_then(Value::as_u64).unwrap_or(pos as u64)
}

/// Whether the object or array at `path` of a response holds token-level details of the
/// generated text: OpenAI's `logprobs` (their `token` strings and `bytes` arrays spell the text
/// one token at a time) and `top_logprobs`, TGI's `details.tokens`, `details.prefill` and
/// `top_tokens`. A value split over tokens would pass a scan of each token, so these are emptied
/// in responses rather than scanned.
pub fn token_details(path: &[Seg]) -> bool {
    match path.last().and_then(Seg::key) {
        Some("logprobs" | "top_logprobs" | "top_tokens") => true,
        Some("tokens" | "prefill") => path.iter().rev().skip(1).any(|s| s.key() == Some("details")),
        _ => false,
    }
}

/// What an emptied container becomes: `null` for an object (every API marks absent logprobs so),
/// `[]` for an array (TGI's clients expect a list).
pub fn emptied(kind: Container) -> &'static str {
    match kind {
        Container::Object => "null",
        Container::Array => "[]",
    }
}

/// Which logical streams end with the event `doc` (named `event` in SSE, if it has a name).
pub fn ends(doc: &Value, event: Option<&str>) -> Vec<Ends> {
    let t = event.unwrap_or_else(|| ty(doc));
    match t {
        "content_block_stop" => return vec![Ends::Slot(idx(doc, "index"))],
        "message_delta" | "message_stop" => return vec![Ends::All],
        "response.completed" | "response.incomplete" | "response.failed" => return vec![Ends::All],
        t if t.starts_with("response.") && t.ends_with(".done") => return vec![Ends::All],
        _ => {}
    }
    if let Some(choices) = doc.get("choices").and_then(Value::as_array) {
        return choices
            .iter()
            .enumerate()
            .filter(|(_, c)| c.get("finish_reason").is_some_and(|f| !f.is_null()))
            .map(|(i, c)| Ends::Slot(c.get("index").and_then(Value::as_u64).unwrap_or(i as u64)))
            .collect();
    }
    if doc.get("done") == Some(&Value::Bool(true)) {
        return vec![Ends::All];
    }
    if doc.get("generated_text").is_some_and(|g| !g.is_null()) {
        return vec![Ends::All];
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_details_are_the_logprobs_and_tgi_token_lists() {
        for (path, want) in [
            (p(&["choices", "0", "logprobs"]), true),
            (p(&["choices", "0", "logprobs", "content", "0", "top_logprobs"]), true),
            (p(&["logprobs"]), true),
            (p(&["details", "tokens"]), true),
            (p(&["details", "best_of_sequences", "0", "tokens"]), true),
            (p(&["details", "prefill"]), true),
            (p(&["top_tokens"]), true),
            (p(&["tokens"]), false),
            (p(&["usage", "completion_tokens_details"]), false),
            (p(&["choices", "0", "message"]), false),
        ] {
            assert_eq!(token_details(&path), want, "{path:?}");
        }
    }
    use serde_json::json;

    fn p(parts: &[&str]) -> Vec<Seg<'static>> {
        parts
            .iter()
            .map(|s| s.parse::<usize>().map(Seg::Index).unwrap_or_else(|_| Seg::Key(s.to_string().into())))
            .collect()
    }

    #[test]
    fn classifies_each_format() {
        let chat = json!({"object":"chat.completion.chunk","choices":[{"index":2,"delta":{"content":"x","tool_calls":[{"index":5,"function":{"arguments":"{"}}]}}]});
        assert_eq!(
            classify(&p(&["choices", "0", "delta", "content"]), &chat),
            Field::Delta(Key { slot: 2, kind: "content", sub: 0 })
        );
        assert_eq!(
            classify(&p(&["choices", "0", "delta", "tool_calls", "0", "function", "arguments"]), &chat),
            Field::Delta(Key { slot: 2, kind: "tool_arguments", sub: 5 })
        );
        assert_eq!(classify(&p(&["id"]), &chat), Field::Whole);
        let resp = json!({"type":"response.output_text.delta","output_index":1,"content_index":3,"delta":"x"});
        assert_eq!(classify(&p(&["delta"]), &resp), Field::Delta(Key { slot: 1, kind: "output_text", sub: 3 }));
        let done = json!({"type":"response.output_text.done","text":"x"});
        assert_eq!(classify(&p(&["text"]), &done), Field::Whole);
        assert_eq!(ends(&done, Some("response.output_text.done")), vec![Ends::All]);
        let anth = json!({"type":"content_block_delta","index":4,"delta":{"type":"text_delta","text":"x"}});
        assert_eq!(classify(&p(&["delta", "text"]), &anth), Field::Delta(Key { slot: 4, kind: "text", sub: 0 }));
        assert_eq!(classify(&p(&["delta", "type"]), &anth), Field::Whole);
        let sig = json!({"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"abc"}});
        assert_eq!(classify(&p(&["delta", "signature"]), &sig), Field::Opaque);
        assert_eq!(ends(&json!({"type":"content_block_stop","index":4}), None), vec![Ends::Slot(4)]);
        let ollama = json!({"model":"m","message":{"role":"assistant","content":"x"},"done":false});
        assert_eq!(
            classify(&p(&["message", "content"]), &ollama),
            Field::Delta(Key { slot: 0, kind: "content", sub: 0 })
        );
        assert_eq!(classify(&p(&["message", "role"]), &ollama), Field::Whole);
        assert_eq!(ends(&json!({"done":true}), None), vec![Ends::All]);
        let tgi = json!({"token":{"text":"x"},"generated_text":null});
        assert_eq!(classify(&p(&["token", "text"]), &tgi), Field::Delta(Key { slot: 0, kind: "token", sub: 0 }));
        assert_eq!(ends(&tgi, None), vec![]);
        let fin = json!({"choices":[{"index":1,"delta":{},"finish_reason":"stop"}]});
        assert_eq!(ends(&fin, None), vec![Ends::Slot(1)]);
    }
}
