//! Which strings of an event the client joins into one text, which end a text, and which must
//! pass intact. Decided from the event's own shape (its `type`, its paths), the way the official
//! SDKs assemble streams (see the README's "Threat model" for the list and its sources), so a
//! server that speaks OpenAI's format on another path is still understood.

use crate::wire::json::{Kind, Node, Seg, Tape};

/// Identifies one logical text inside a response: a choice's content, a content block's text, a
/// tool call's arguments, ...
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    /// Choice index, content block index, or output index.
    pub slot: u64,
    /// Which text of the slot (a hash of its normalised path).
    pub kind: u64,
    /// Content index, summary index or tool-call index within the slot.
    pub sub: u64,
}

/// What a string of an event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// A fragment of a running text: scanned together with the fragments before it, and held
    /// back while a match could still begin in it.
    Delta(Key),
    /// A fragment the client joins too, of a field that must keep its shape (a role, a tool
    /// call's id or name): never held back; a value that reaches back into fragments already
    /// sent blocks the message.
    Guard(Key),
    /// A complete value: scanned on its own.
    Whole,
    /// A token over the content (a signature, encrypted reasoning) that must pass intact or not
    /// at all.
    Opaque,
}

/// Which logical texts end at an event (their held text must be out before it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ends {
    /// Every text of this slot.
    Slot(u64),
    /// Every text.
    All,
}

/// FNV-1a, for text kinds: stable, cheap, and only compared for equality.
fn hash(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for &b in p.as_bytes().iter().chain(b"/") {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// The event's type: its SSE `event:` name, else its `type` member.
pub fn event_type<'t>(t: &'t Tape, event: Option<&'t str>) -> &'t str {
    event.or_else(|| t.str_at(0, "type")).unwrap_or("")
}

/// Whether string `node` is an opaque token in the format that defines it: Anthropic's
/// `signature` of a thinking block and `data` of a redacted one, OpenAI Responses'
/// `encrypted_content` of a reasoning item.
pub fn opaque(t: &Tape, node: usize) -> bool {
    let n = &t.nodes[node];
    let (Some(key @ ("signature" | "data" | "encrypted_content")), Some(parent)) =
        (n.key.as_deref(), t.nodes.get(n.parent))
    else {
        return false;
    };
    if parent.kind != Kind::Object {
        return false;
    }
    let ty = t.str_at(n.parent, "type").unwrap_or("");
    matches!(
        (key, ty),
        ("signature", "thinking" | "signature_delta")
            | ("data", "redacted_thinking")
            | ("encrypted_content", "reasoning")
    )
}

/// Classifies string `node` of a streamed event (`ty` from [`event_type`]). `lineage` is
/// scratch space.
pub fn classify(t: &Tape, node: usize, ty: &str, lineage: &mut Vec<usize>) -> Field {
    if opaque(t, node) {
        return Field::Opaque;
    }
    lineage.clear();
    let mut i = node;
    while i != 0 && i < t.nodes.len() {
        lineage.push(i);
        i = t.nodes[i].parent;
    }
    lineage.reverse();
    let seg = |i: usize| -> Seg<'_> {
        let n = &t.nodes[i];
        match &n.key {
            Some(k) => Seg::Key(k),
            None => Seg::Index(n.index),
        }
    };
    let path: Vec<Seg> = lineage.iter().map(|&i| seg(i)).collect();
    use Seg::{Index as I, Key as K};
    let delta = |slot: u64, kind: &str, sub: u64| Field::Delta(Key { slot, kind: hash(&[kind]), sub });
    let idx = |key: &str| t.u64_at(0, key).unwrap_or(0);
    match path.as_slice() {
        // OpenAI chat completion chunks: the SDK joins every string of a delta.
        [K("choices"), I(_), K("delta"), rest @ ..] if !rest.is_empty() => chat_delta(t, lineage, rest),
        // OpenAI legacy completions.
        [K("choices"), I(_), K("text")] => delta(choice_index(t, lineage[1]), "text", 0),
        // OpenAI Responses: deltas, and the parts and items whose text the deltas extend.
        [K("delta")] if ty.starts_with("response.") && ty.ends_with(".delta") => {
            let sub = t.u64_at(0, "content_index").or_else(|| t.u64_at(0, "summary_index")).unwrap_or(0);
            delta(idx("output_index"), responses_kind(ty), sub)
        }
        [K("part"), K(f)] if ty == "response.content_part.added" && matches!(*f, "text" | "refusal") => {
            let kind = if *f == "text" { "output_text" } else { "refusal" };
            delta(idx("output_index"), kind, idx("content_index"))
        }
        [K("part"), K("text")] if ty == "response.reasoning_summary_part.added" => {
            delta(idx("output_index"), "reasoning_summary", idx("summary_index"))
        }
        [K("item"), K("content"), I(j), K(f)]
            if ty == "response.output_item.added" && matches!(*f, "text" | "refusal") =>
        {
            let kind = if *f == "text" { "output_text" } else { "refusal" };
            delta(idx("output_index"), kind, *j as u64)
        }
        [K("item"), K("arguments")] if ty == "response.output_item.added" => {
            delta(idx("output_index"), "function_arguments", 0)
        }
        // Anthropic content blocks: text that starts in `content_block_start` and goes on in deltas.
        [K("delta"), K(f)] if ty == "content_block_delta" && matches!(*f, "text" | "partial_json" | "thinking") => {
            delta(idx("index"), f, 0)
        }
        [K("content_block"), K(f)] if ty == "content_block_start" && matches!(*f, "text" | "thinking") => {
            delta(idx("index"), f, 0)
        }
        [K("message"), K("content"), I(j), K(f)] if ty == "message_start" && matches!(*f, "text" | "thinking") => {
            delta(*j as u64, f, 0)
        }
        // TGI tokens.
        [K("token"), K("text")] => delta(0, "tgi.token", 0),
        // Ollama chat and generate lines (with or without `done`).
        [K("message"), K(f)] if ollama_like(t) && matches!(*f, "content" | "thinking") => {
            delta(0, if *f == "content" { "ollama.content" } else { "ollama.message_thinking" }, 0)
        }
        [K(f)] if ollama_like(t) && matches!(*f, "response" | "thinking") => {
            delta(0, if *f == "response" { "ollama.response" } else { "ollama.thinking" }, 0)
        }
        _ => Field::Whole,
    }
}

fn responses_kind(ty: &str) -> &str {
    match ty {
        "response.output_text.delta" => "output_text",
        "response.refusal.delta" => "refusal",
        "response.function_call_arguments.delta" => "function_arguments",
        "response.reasoning_summary_text.delta" => "reasoning_summary",
        "response.reasoning_text.delta" => "reasoning",
        "response.custom_tool_call_input.delta" => "tool_input",
        t => t,
    }
}

/// An event with neither `choices` nor `type`: Ollama's shape.
fn ollama_like(t: &Tape) -> bool {
    t.nodes[0].kind == Kind::Object && t.get(0, "choices").is_none() && t.get(0, "type").is_none()
}

/// The choice's own `index`, else its position.
fn choice_index(t: &Tape, choice: usize) -> u64 {
    t.u64_at(choice, "index").unwrap_or(t.nodes[choice].index as u64)
}

/// A string under `choices[i].delta`, at `rest` below the delta. openai-python's
/// `accumulate_delta` joins every string of a delta except `index` and `type`, recursing into
/// objects and merging lists of objects by their `index`; strings in lists are not joined.
/// Identifiers (`role`, `id`, `name`) and `audio.data` are joined too, but must keep their shape.
fn chat_delta(t: &Tape, lineage: &[usize], rest: &[Seg]) -> Field {
    let Some(Seg::Key(last)) = rest.last() else { return Field::Whole };
    if matches!(*last, "index" | "type") {
        return Field::Whole;
    }
    // Lineage: choices, choice, delta, then one node per step of `rest`.
    let slot = choice_index(t, lineage[1]);
    let mut parts: Vec<String> = Vec::with_capacity(rest.len());
    for (k, s) in rest.iter().enumerate() {
        match s {
            Seg::Key(key) => parts.push((*key).to_owned()),
            Seg::Index(j) => {
                let el = lineage[3 + k];
                if t.nodes[el].kind != Kind::Object {
                    return Field::Whole;
                }
                parts.push(t.u64_at(el, "index").unwrap_or(*j as u64).to_string());
            }
        }
    }
    let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
    let key = Key { slot, kind: hash(&refs), sub: 0 };
    // Identifiers and opaque payloads keep their shape (never held back); every other string
    // the SDK joins, known or not (`content`, `reasoning_details[].text`, ...), is running text.
    if matches!(*last, "role" | "id" | "name" | "data") {
        Field::Guard(key)
    } else {
        Field::Delta(key)
    }
}

/// Whether container `node` of a response holds token-level details of the generated text:
/// OpenAI's `logprobs` (their `token` strings and `bytes` arrays spell the text one token at a
/// time) and `top_logprobs`, vLLM's `prompt_logprobs`, TGI's `details.tokens`,
/// `details.prefill` and `top_tokens`. A value split over tokens would pass a scan of each
/// token, so these are emptied in responses rather than scanned.
pub fn token_details(t: &Tape, node: usize) -> bool {
    let n = &t.nodes[node];
    match n.key.as_deref() {
        Some("logprobs" | "top_logprobs" | "top_tokens" | "prompt_logprobs") => true,
        Some("tokens" | "prefill") => {
            let mut p = n.parent;
            while let Some(a) = t.nodes.get(p) {
                if a.key.as_deref() == Some("details") {
                    return true;
                }
                p = a.parent;
            }
            false
        }
        _ => false,
    }
}

/// What an emptied container becomes: `null` for an object (every API marks absent logprobs so)
/// and for vLLM's `prompt_logprobs`, `[]` for other arrays (TGI's clients expect a list).
pub fn emptied(t: &Tape, node: usize) -> &'static str {
    let n = &t.nodes[node];
    if n.kind == Kind::Object || n.key.as_deref() == Some("prompt_logprobs") {
        "null"
    } else {
        "[]"
    }
}

/// The output token count that number `node` reports, if it is one: OpenAI's top-level
/// `usage.completion_tokens` (chat and legacy completions, whole or a stream's last chunk with
/// `stream_options.include_usage`); `usage.output_tokens` (Responses and Anthropic answers, and
/// Anthropic's `message_delta` event); `response.usage.output_tokens` (Responses'
/// `response.completed`); `message.usage.output_tokens` (Anthropic's `message_start`); Ollama's
/// top-level `eval_count` (the `done` line); TGI's `details.generated_tokens`. Only at these
/// places from the root: what a model writes is inside strings and cannot put a number there.
pub fn output_tokens(t: &Tape, node: usize) -> Option<u64> {
    let n = &t.nodes[node];
    let key = n.key.as_deref()?;
    if n.kind != Kind::Num || !matches!(key, "completion_tokens" | "output_tokens" | "eval_count" | "generated_tokens")
    {
        return None;
    }
    let parent = t.nodes.get(n.parent)?;
    let under_root = |p: &Node| p.parent == 0;
    let at = match (key, parent.key.as_deref()) {
        ("eval_count", None) => n.parent == 0,
        ("generated_tokens", Some("details")) => under_root(parent),
        ("completion_tokens", Some("usage")) => under_root(parent),
        ("output_tokens", Some("usage")) => {
            under_root(parent)
                || t.nodes.get(parent.parent).is_some_and(|g| {
                    under_root(g) && matches!(g.key.as_deref(), Some("response" | "message")) && g.kind == Kind::Object
                })
        }
        _ => false,
    };
    if at && parent.kind == Kind::Object {
        n.text.parse().ok()
    } else {
        None
    }
}

/// Which logical texts end with the event (its type from [`event_type`]).
pub fn ends(t: &Tape, ty: &str) -> Vec<Ends> {
    match ty {
        "content_block_stop" => return vec![Ends::Slot(t.u64_at(0, "index").unwrap_or(0))],
        "message_delta" | "message_stop" => return vec![Ends::All],
        "response.completed" | "response.incomplete" | "response.failed" => return vec![Ends::All],
        t if t.starts_with("response.") && t.ends_with(".done") => return vec![Ends::All],
        _ => {}
    }
    if let Some(choices) = t.get(0, "choices") {
        return t
            .children(choices)
            .filter(|&c| t.nodes[c].kind == Kind::Object && t.has(c, "finish_reason"))
            .map(|c| Ends::Slot(choice_index(t, c)))
            .collect();
    }
    if t.get(0, "done").is_some_and(|d| t.nodes[d].text == "true") || t.has(0, "generated_text") {
        return vec![Ends::All];
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The field of the string at `path` (keys and indexes joined with `.`) in `doc`.
    fn field(doc: &str, path: &str, event: Option<&str>) -> Field {
        let mut t = Tape::read(doc.as_bytes()).unwrap();
        t.mark_shadowed();
        let mut lineage = Vec::new();
        let mut p = Vec::new();
        let node = (0..t.nodes.len())
            .find(|&i| {
                t.path_into(i, &mut p);
                let s: Vec<String> = p
                    .iter()
                    .map(|s| match s {
                        Seg::Key(k) => k.to_string(),
                        Seg::Index(i) => i.to_string(),
                    })
                    .collect();
                t.nodes[i].kind == Kind::Str && s.join(".") == path
            })
            .unwrap_or_else(|| panic!("no {path} in {doc}"));
        classify(&t, node, event_type(&t, event), &mut lineage)
    }

    fn k(slot: u64, kind: &str, sub: u64) -> Field {
        Field::Delta(Key { slot, kind: hash(&[kind]), sub })
    }

    #[test]
    fn classifies_each_format() {
        let chat = r#"{"object":"chat.completion.chunk","choices":[{"index":2,"delta":{"role":"assistant","content":"x","reasoning":"r","audio":{"transcript":"t","id":"a"},"function_call":{"arguments":"{"},"tool_calls":[{"index":5,"id":"c","type":"function","function":{"name":"n","arguments":"{"}}]}}]}"#;
        assert_eq!(field(chat, "choices.0.delta.content", None), k(2, "content", 0));
        assert_eq!(field(chat, "choices.0.delta.reasoning", None), k(2, "reasoning", 0));
        assert!(matches!(field(chat, "choices.0.delta.audio.transcript", None), Field::Delta(_)));
        assert!(matches!(field(chat, "choices.0.delta.function_call.arguments", None), Field::Delta(_)));
        assert!(matches!(field(chat, "choices.0.delta.tool_calls.0.function.arguments", None), Field::Delta(_)));
        assert!(matches!(field(chat, "choices.0.delta.role", None), Field::Guard(_)));
        assert!(matches!(field(chat, "choices.0.delta.tool_calls.0.id", None), Field::Guard(_)));
        assert_eq!(field(chat, "choices.0.delta.tool_calls.0.type", None), Field::Whole);
        assert_eq!(field(chat, "object", None), Field::Whole);

        let added = r#"{"type":"response.content_part.added","output_index":1,"content_index":3,"part":{"type":"output_text","text":"He"}}"#;
        let delta = r#"{"type":"response.output_text.delta","output_index":1,"content_index":3,"delta":"llo"}"#;
        assert_eq!(field(added, "part.text", None), field(delta, "delta", None));
        assert_eq!(field(delta, "delta", None), k(1, "output_text", 3));
        let done = r#"{"type":"response.output_text.done","text":"x"}"#;
        assert_eq!(field(done, "text", None), Field::Whole);

        let start = r#"{"type":"content_block_start","index":4,"content_block":{"type":"text","text":"Hi"}}"#;
        let anth = r#"{"type":"content_block_delta","index":4,"delta":{"type":"text_delta","text":"x"}}"#;
        assert_eq!(field(start, "content_block.text", None), field(anth, "delta.text", Some("content_block_delta")));
        assert_eq!(field(anth, "delta.type", None), Field::Whole);
        let msg = r#"{"type":"message_start","message":{"id":"m","content":[{"type":"text","text":"Hi"}]}}"#;
        assert_eq!(field(msg, "message.content.0.text", None), k(0, "text", 0));
        assert_eq!(field(msg, "message.id", None), Field::Whole);
        let sig = r#"{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"abc"}}"#;
        assert_eq!(field(sig, "delta.signature", None), Field::Opaque);
        // Only where the format defines it: elsewhere a `signature` is an ordinary string.
        let other = r#"{"choices":[{"index":0,"delta":{"signature":"abc"}}]}"#;
        assert!(matches!(field(other, "choices.0.delta.signature", None), Field::Delta(_)));

        let ollama = r#"{"model":"m","message":{"role":"assistant","content":"x"}}"#;
        assert_eq!(field(ollama, "message.content", None), k(0, "ollama.content", 0));
        assert_eq!(field(ollama, "message.role", None), Field::Whole);
        let tgi = r#"{"token":{"text":"x"},"generated_text":null}"#;
        assert_eq!(field(tgi, "token.text", None), k(0, "tgi.token", 0));
    }

    #[test]
    fn ends_and_token_details() {
        fn t(s: &str) -> Tape<'_> {
            Tape::read(s.as_bytes()).unwrap()
        }
        let fin = t(r#"{"choices":[{"index":1,"delta":{},"finish_reason":"stop"},{"index":0,"finish_reason":null}]}"#);
        assert_eq!(ends(&fin, ""), vec![Ends::Slot(1)]);
        assert_eq!(ends(&t(r#"{"type":"content_block_stop","index":4}"#), "content_block_stop"), vec![Ends::Slot(4)]);
        assert_eq!(ends(&t(r#"{"done":true}"#), ""), vec![Ends::All]);
        assert_eq!(ends(&t(r#"{"done":false}"#), ""), vec![]);
        let lp = t(
            r#"{"choices":[{"logprobs":{"content":[]}}],"prompt_logprobs":[null,{"1":{}}],"details":{"tokens":[],"x":{"tokens":[]}},"tokens":[]}"#,
        );
        let details: Vec<(String, &str)> = (0..lp.nodes.len())
            .filter(|&i| matches!(lp.nodes[i].kind, Kind::Object | Kind::Array) && token_details(&lp, i))
            .map(|i| (lp.nodes[i].key.as_deref().unwrap_or("").to_owned(), emptied(&lp, i)))
            .collect();
        assert_eq!(
            details,
            vec![
                ("logprobs".into(), "null"),
                ("prompt_logprobs".into(), "null"),
                ("tokens".into(), "[]"),
                ("tokens".into(), "[]")
            ]
        );
    }
}
