//! The canned answers every benchmark uses: realistic prose with a few sensitive values, as a
//! JSON chat completion of a given size and as a 500-token SSE stream. Shared by the upstream
//! (`upstream.rs`) and the core benchmark (`core.rs`, which also runs as wasm).

/// The canned bodies, built once.
pub struct Answers {
    pub json_1k: Vec<u8>,
    pub json_64k: Vec<u8>,
    pub json_1m: Vec<u8>,
    pub small: Vec<u8>,
    /// The 500-token answer as SSE events, one per token.
    pub sse_events: Vec<Vec<u8>>,
}

/// Realistic answer prose: text, a code block, a table, and a few sensitive values (about one
/// per kilobyte).
pub fn prose(len: usize) -> String {
    const PARTS: &[&str] = &[
        "Here is a summary of the incident and the steps we took to resolve it. ",
        "The deployment rolled out to all three regions without errors, and latency stayed flat. ",
        "Contact jane.doe@acme-corp.com if the dashboard shows anything unusual. ",
        "```python\ndef handler(event):\n    return {\"status\": 200, \"body\": event[\"id\"]}\n```\n",
        "| region | p50 | p99 |\n|---|---|---|\n| eu-west | 41 ms | 97 ms |\n| us-east | 38 ms | 91 ms |\n",
        "Version 2.14.1 fixed the retry bug reported on 2024-03-18; the order number was 88213. ",
        "The customer called from +1 415 555 0134 and confirmed the card ending in 1111. ",
        "We will revisit the capacity plan next quarter, once the new cluster is provisioned. ",
        "In short: nothing was lost, two alerts fired, and the runbook needs one more step. ",
        "Remember that config changes must go through review before they reach production. ",
        "The rollback took four minutes, well within the objective agreed with the platform team. ",
        "Logs were shipped to the usual bucket and retained for thirty days as the policy requires. ",
    ];
    let mut s = String::with_capacity(len + 128);
    let mut i = 0;
    while s.len() < len {
        s.push_str(PARTS[i % PARTS.len()]);
        i += 1;
    }
    while s.len() > len {
        s.pop();
    }
    s
}

pub fn completion(content: &str) -> Vec<u8> {
    serde_json::json!({
        "id": "chatcmpl-bench", "object": "chat.completion", "created": 1700000000, "model": "bench",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content, "refusal": null},
                     "logprobs": null, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 100, "total_tokens": 105}
    })
    .to_string()
    .into_bytes()
}

/// A JSON completion whose serialised size is about `size` bytes.
pub fn completion_of_size(size: usize) -> Vec<u8> {
    let overhead = completion("").len();
    completion(&prose(size.saturating_sub(overhead)))
}

/// The 500-token SSE answer: role chunk, 500 content chunks, finish chunk, `[DONE]`. Tokens are
/// cut the way tokenizers cut text: a word with its leading space (" summary"), punctuation apart.
pub fn sse_answer(tokens: usize) -> Vec<Vec<u8>> {
    let text = prose(tokens * 6);
    let chunk = |delta: serde_json::Value, finish: serde_json::Value| {
        let v = serde_json::json!({"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,
            "model":"bench","choices":[{"index":0,"delta":delta,"logprobs":null,"finish_reason":finish}]});
        format!("data: {v}\n\n").into_bytes()
    };
    let mut out = vec![chunk(serde_json::json!({"role":"assistant","content":""}), serde_json::Value::Null)];
    let mut toks: Vec<String> = Vec::new();
    for c in text.chars() {
        let starts_token =
            c == ' ' || c == '\n' || (c.is_ascii_punctuation() && !toks.last().is_some_and(|t| t.ends_with(' ')));
        match toks.last_mut() {
            Some(t) if !starts_token && !t.ends_with(|p: char| p.is_ascii_punctuation()) => t.push(c),
            _ => toks.push(c.to_string()),
        }
    }
    for t in toks.iter().take(tokens) {
        out.push(chunk(serde_json::json!({ "content": t }), serde_json::Value::Null));
    }
    out.push(chunk(serde_json::json!({}), serde_json::json!("stop")));
    out.push(b"data: [DONE]\n\n".to_vec());
    out
}

impl Answers {
    pub fn new() -> Answers {
        Answers {
            json_1k: completion_of_size(1024),
            json_64k: completion_of_size(64 * 1024),
            json_1m: completion_of_size(1024 * 1024),
            small: completion("Noted. The request was logged and will be reviewed by the team."),
            sse_events: sse_answer(500),
        }
    }
}

/// The chat completion request the benchmarks send.
pub fn chat_request(prompt: &str, stream: bool) -> Vec<u8> {
    serde_json::json!({"model": "bench", "stream": stream, "messages": [{"role": "user", "content": prompt}]})
        .to_string()
        .into_bytes()
}
