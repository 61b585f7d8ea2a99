//! A fast upstream for benchmarks: canned inference answers over HTTP/1.1 keep-alive, one thread
//! per connection, so that Envoy (not the stand-in) is what the load measures.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

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

fn completion(content: &str) -> Vec<u8> {
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
fn completion_of_size(size: usize) -> Vec<u8> {
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

/// Starts the upstream on `listener`; runs until the process exits.
pub fn serve(listener: TcpListener, answers: Arc<Answers>) {
    thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let answers = Arc::clone(&answers);
            thread::spawn(move || {
                let _ = conn.set_nodelay(true);
                let _ = handle(conn, &answers);
            });
        }
    });
}

fn handle(conn: TcpStream, answers: &Answers) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut conn = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut length = 0usize;
        let mut scenario = String::new();
        let mut pace_us = 0u64;
        loop {
            let mut h = String::new();
            reader.read_line(&mut h)?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (k, v) = h.split_once(':').unwrap_or((h, ""));
            match k.to_ascii_lowercase().as_str() {
                "content-length" => length = v.trim().parse().unwrap_or(0),
                "x-bench" => scenario = v.trim().to_string(),
                "x-bench-pace-us" => pace_us = v.trim().parse().unwrap_or(0),
                _ => {}
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        let fixed = match scenario.as_str() {
            "json-1k" => Some(&answers.json_1k),
            "json-64k" => Some(&answers.json_64k),
            "json-1m" => Some(&answers.json_1m),
            "sse-500" => None,
            _ => Some(&answers.small),
        };
        match fixed {
            Some(b) => {
                let head =
                    format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n", b.len());
                conn.write_all(head.as_bytes())?;
                conn.write_all(b)?;
            }
            None => {
                conn.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n",
                )?;
                for ev in &answers.sse_events {
                    conn.write_all(format!("{:x}\r\n", ev.len()).as_bytes())?;
                    conn.write_all(ev)?;
                    conn.write_all(b"\r\n")?;
                    conn.flush()?;
                    if pace_us > 0 {
                        thread::sleep(Duration::from_micros(pace_us));
                    }
                }
                conn.write_all(b"0\r\n\r\n")?;
            }
        }
        conn.flush()?;
    }
}
