//! The heart of streaming redaction: however the network splits the upstream bytes, the text a
//! client reassembles equals redacting the whole text at once, and no prefix of what it received
//! ever contains a sensitive value.
//!
//! Each wire format is generated here in the exact shape real servers send (see
//! `../shared/wire-formats.md`), including escaped characters (`\u0040`, `\/`), then replayed
//! split at every single point, in one-byte chunks, and in thousands of random chunkings.

mod common;

use std::rc::Rc;

use inferguard::audit::DirectionAudit;
use inferguard::detect::{DetectConfig, Engine};
use inferguard::exchange::{Exchange, RequestHead, ResponseHead, Side, Then};
use inferguard::policy::{Policies, Verified};
use serde_json::{json, Value};

/// How the client of a case reads its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Sse,
    Ndjson,
}

/// Values that must never reach a client, each split across events by the generators.
const SECRETS: &[&str] = &[
    "jane.doe@acme-corp.com",
    "ops+oncall@mail.example.org",
    "x@y.io",
    "4111 1111 1111 1111",
    "AKIAIOSFODNN7Q2MZ9VK",
    "MIIEpAIBAAKCAQEA1234567890abcdef",
    "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
    "123-45-6789",
];

fn texts() -> Vec<String> {
    vec![
        format!(
            "Hello! Write to {} or to {} about it. The card is {} and the key is `{}`.\n\
             -----BEGIN RSA PRIVATE KEY-----\n{}\nabcdefABCDEF0123456789==\n-----END RSA PRIVATE KEY-----\nThat is all.",
            SECRETS[0], SECRETS[1], SECRETS[3], SECRETS[4], SECRETS[5]
        ),
        format!("Second choice: {}, token {} and SSN {}; unicode ünï €😀 text.", SECRETS[2], SECRETS[6], SECRETS[7]),
    ]
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Cuts `text` into deltas of 1..=4 characters (as tokenizers do), deterministically.
fn deltas(text: &str, seed: u64) -> Vec<String> {
    let mut r = Rng(seed | 1);
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let n = 1 + r.below(4);
        out.push(chars[i..(i + n).min(chars.len())].iter().collect());
        i += n;
    }
    out
}

/// JSON as servers write it: some escape `@` or `/`, which a scanner of raw bytes would miss.
fn js(v: &Value) -> String {
    serde_json::to_string(v).unwrap().replace('@', "\\u0040").replace('/', "\\/")
}

fn sse(event: Option<&str>, v: &Value) -> String {
    match event {
        Some(e) => format!("event: {e}\ndata: {}\n\n", js(v)),
        None => format!("data: {}\n\n", js(v)),
    }
}

fn openai_chat(t: &[String]) -> String {
    let chunk = |choices: Value| json!({"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":choices});
    let mut out =
        sse(None, &chunk(json!([{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}])));
    let (a, b) = (deltas(&t[0], 1), deltas(&t[1], 2));
    for i in 0..a.len().max(b.len()) {
        // n = 2: the two choices interleave, each its own text stream.
        if let Some(d) = a.get(i) {
            out += &sse(None, &chunk(json!([{"index":0,"delta":{"content":d},"finish_reason":null}])));
        }
        if let Some(d) = b.get(i) {
            out += &sse(None, &chunk(json!([{"index":1,"delta":{"content":d},"finish_reason":null}])));
        }
    }
    out += &sse(None, &chunk(json!([{"index":0,"delta":{},"finish_reason":"stop"}])));
    out += &sse(None, &chunk(json!([{"index":1,"delta":{},"finish_reason":"stop"}])));
    out += &sse(
        None,
        &json!({"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}),
    );
    out + "data: [DONE]\n\n"
}

fn openai_tool_call(t: &[String]) -> String {
    let args = json!({"to": SECRETS[0], "body": t[1]}).to_string();
    let mut out = String::new();
    for (i, d) in deltas(&args, 3).iter().enumerate() {
        let call = if i == 0 {
            json!({"index":0,"id":"call_1","type":"function","function":{"name":"send","arguments":d}})
        } else {
            json!({"index":0,"function":{"arguments":d}})
        };
        out += &sse(
            None,
            &json!({"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"tool_calls":[call]},"finish_reason":null}]}),
        );
    }
    // vLLM-style: the last text arrives in the same chunk as finish_reason.
    out += &sse(
        None,
        &json!({"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":t[0]},"finish_reason":"tool_calls"}]}),
    );
    out + "data: [DONE]\n\n"
}

fn openai_legacy(t: &[String]) -> String {
    let mut out = String::new();
    for d in deltas(&t[0], 4) {
        out += &sse(
            None,
            &json!({"id":"cmpl-1","object":"text_completion","created":1,"model":"m","choices":[{"index":0,"text":d,"logprobs":null,"finish_reason":null}]}),
        );
    }
    out += &sse(
        None,
        &json!({"id":"cmpl-1","object":"text_completion","created":1,"model":"m","choices":[{"index":0,"text":"","logprobs":null,"finish_reason":"length"}]}),
    );
    out + "data: [DONE]\n\n"
}

fn responses(t: &[String]) -> String {
    let mut seq = 0;
    let mut ev = |name: &str, mut v: Value| {
        v["type"] = json!(name);
        v["sequence_number"] = json!(seq);
        seq += 1;
        sse(Some(name), &v)
    };
    let text = &t[0];
    let mut out = ev(
        "response.created",
        json!({"response":{"id":"resp_1","object":"response","status":"in_progress","output":[]}}),
    );
    out += &ev(
        "response.output_item.added",
        json!({"output_index":0,"item":{"id":"msg_1","type":"message","role":"assistant","content":[]}}),
    );
    out += &ev(
        "response.content_part.added",
        json!({"item_id":"msg_1","output_index":0,"content_index":0,"part":{"type":"output_text","text":""}}),
    );
    for d in deltas(text, 5) {
        out +=
            &ev("response.output_text.delta", json!({"item_id":"msg_1","output_index":0,"content_index":0,"delta":d}));
    }
    out += &ev("response.output_text.done", json!({"item_id":"msg_1","output_index":0,"content_index":0,"text":text}));
    out += &ev(
        "response.content_part.done",
        json!({"item_id":"msg_1","output_index":0,"content_index":0,"part":{"type":"output_text","text":text}}),
    );
    let item = json!({"id":"msg_1","type":"message","role":"assistant","content":[{"type":"output_text","text":text}]});
    out += &ev("response.output_item.done", json!({"output_index":0,"item":item}));
    out + &ev(
        "response.completed",
        json!({"response":{"id":"resp_1","object":"response","status":"completed","output":[item]}}),
    )
}

fn anthropic(t: &[String]) -> String {
    let mut out = sse(
        Some("message_start"),
        &json!({"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"claude"}}),
    );
    for (i, text) in t.iter().enumerate() {
        out += &sse(
            Some("content_block_start"),
            &json!({"type":"content_block_start","index":i,"content_block":{"type":"text","text":""}}),
        );
        for (j, d) in deltas(text, 6 + i as u64).iter().enumerate() {
            out += &sse(
                Some("content_block_delta"),
                &json!({"type":"content_block_delta","index":i,"delta":{"type":"text_delta","text":d}}),
            );
            if j % 7 == 3 {
                out += &sse(Some("ping"), &json!({"type":"ping"}));
            }
        }
        out += &sse(Some("content_block_stop"), &json!({"type":"content_block_stop","index":i}));
    }
    out += &sse(
        Some("message_delta"),
        &json!({"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":9}}),
    );
    out + &sse(Some("message_stop"), &json!({"type":"message_stop"}))
}

fn ollama_chat(t: &[String]) -> String {
    let mut out = String::new();
    for d in deltas(&t[0], 7) {
        out += &js(
            &json!({"model":"llama3","created_at":"2024-01-01T00:00:00Z","message":{"role":"assistant","content":d},"done":false}),
        );
        out += "\n";
    }
    out + &js(
        &json!({"model":"llama3","created_at":"2024-01-01T00:00:00Z","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","total_duration":1}),
    ) + "\n"
}

fn ollama_generate(t: &[String]) -> String {
    let mut out = String::new();
    for d in deltas(&t[1], 8) {
        out += &js(&json!({"model":"llama3","created_at":"2024-01-01T00:00:00Z","response":d,"done":false}));
        out += "\n";
    }
    out + &js(&json!({"model":"llama3","created_at":"2024-01-01T00:00:00Z","response":"","done":true,"context":[1,2]}))
        + "\n"
}

fn tgi(t: &[String]) -> String {
    let ds = deltas(&t[0], 9);
    let mut out = String::new();
    for (i, d) in ds.iter().enumerate() {
        let last = i + 1 == ds.len();
        let v = json!({"index":i,"token":{"id":i,"text":d,"logprob":-0.1,"special":false},"generated_text":if last { json!(t[0]) } else { Value::Null },"details":null});
        out += &format!("data:{}\n\n", js(&v));
    }
    out
}

/// What a client reassembles from the bytes it received: text per logical stream, plus the
/// "whole text again" copies some formats carry.
#[derive(Debug, Default, PartialEq)]
struct Client {
    streams: std::collections::BTreeMap<String, String>,
    wholes: Vec<String>,
    errors: usize,
}

fn reassemble(framing: Framing, bytes: &[u8]) -> Client {
    let text = String::from_utf8_lossy(bytes).replace("\r\n", "\n");
    let mut c = Client::default();
    let mut add = |k: String, s: &str| c.streams.entry(k).or_default().push_str(s);
    let mut wholes = Vec::new();
    let mut errors = 0;
    let docs: Vec<(Option<String>, Value)> = match framing {
        Framing::Sse => text
            .split("\n\n")
            .filter_map(|ev| {
                let mut name = None;
                let mut data = None;
                for l in ev.lines() {
                    if let Some(v) = l.strip_prefix("event:") {
                        name = Some(v.trim().to_string());
                    } else if let Some(v) = l.strip_prefix("data:") {
                        data = Some(v.strip_prefix(' ').unwrap_or(v).to_string());
                    }
                }
                let v = serde_json::from_str(&data?).ok()?;
                Some((name, v))
            })
            .collect(),
        Framing::Ndjson => text.lines().filter_map(|l| serde_json::from_str(l).ok()).map(|v| (None, v)).collect(),
    };
    for (name, v) in docs {
        if v.get("error").is_some() || name.as_deref() == Some("error") {
            errors += 1;
        }
        let ty = v["type"].as_str().unwrap_or("");
        if let Some(choices) = v["choices"].as_array() {
            for ch in choices {
                let i = ch["index"].as_u64().unwrap();
                if let Some(s) = ch["delta"]["content"].as_str() {
                    add(format!("choice{i}"), s);
                }
                if let Some(calls) = ch["delta"]["tool_calls"].as_array() {
                    for call in calls {
                        add(format!("tool{}", call["index"]), call["function"]["arguments"].as_str().unwrap_or(""));
                    }
                }
                if let Some(s) = ch["text"].as_str() {
                    add(format!("choice{i}"), s);
                }
            }
        } else if ty == "response.output_text.delta" {
            add("output0".into(), v["delta"].as_str().unwrap());
        } else if ty == "response.output_text.done" {
            wholes.push(v["text"].as_str().unwrap().to_string());
        } else if ty == "response.content_part.done" {
            wholes.push(v["part"]["text"].as_str().unwrap().to_string());
        } else if ty == "response.output_item.done" {
            wholes.push(v["item"]["content"][0]["text"].as_str().unwrap().to_string());
        } else if ty == "response.completed" {
            wholes.push(v["response"]["output"][0]["content"][0]["text"].as_str().unwrap().to_string());
        } else if ty == "content_block_delta" {
            add(format!("block{}", v["index"]), v["delta"]["text"].as_str().unwrap());
        } else if let Some(s) = v["message"]["content"].as_str() {
            add("message".into(), s);
        } else if let Some(s) = v["response"].as_str() {
            add("response".into(), s);
        } else if let Some(s) = v["token"]["text"].as_str() {
            add("token".into(), s);
            if let Some(g) = v["generated_text"].as_str() {
                wholes.push(g.to_string());
            }
        }
    }
    c.wholes = wholes;
    c.errors = errors;
    c
}

struct Case {
    name: &'static str,
    framing: Framing,
    path: &'static str,
    upstream: String,
}

fn cases() -> Vec<Case> {
    let t = texts();
    vec![
        Case {
            name: "openai chat, n=2",
            framing: Framing::Sse,
            path: "/v1/chat/completions",
            upstream: openai_chat(&t),
        },
        Case {
            name: "openai tool call",
            framing: Framing::Sse,
            path: "/v1/chat/completions",
            upstream: openai_tool_call(&t),
        },
        Case { name: "openai legacy", framing: Framing::Sse, path: "/v1/completions", upstream: openai_legacy(&t) },
        Case { name: "openai responses", framing: Framing::Sse, path: "/v1/responses", upstream: responses(&t) },
        Case { name: "anthropic", framing: Framing::Sse, path: "/v1/messages", upstream: anthropic(&t) },
        Case { name: "ollama chat", framing: Framing::Ndjson, path: "/api/chat", upstream: ollama_chat(&t) },
        Case {
            name: "ollama generate",
            framing: Framing::Ndjson,
            path: "/api/generate",
            upstream: ollama_generate(&t),
        },
        Case { name: "tgi", framing: Framing::Sse, path: "/generate_stream", upstream: tgi(&t) },
    ]
}

fn engine() -> Engine {
    Engine::new(&DetectConfig::default()).unwrap()
}

/// Labels a case's answer may carry: none of them may change what the client gets.
const LABELS: [Option<&str>; 5] =
    [Some("text/event-stream"), Some("application/x-ndjson"), Some("text/plain"), Some("application/json"), None];

/// Replays `chunks` through an exchange under the default policy, as Envoy would, with the
/// answer labelled `label`; checks everything the client has received after every forward.
/// Both ways Envoy may run the filter: headers held until the body is judged, and headers that
/// go at once (Istio's `WasmPlugin`); the client must get the same bytes either way.
fn replay_labelled(case: &Case, chunks: &[&[u8]], label: Option<&str>) -> (Vec<u8>, DirectionAudit) {
    let held = replay_under(r#"{"hold_headers": true}"#, case, chunks, label);
    let flowing = replay_under("", case, chunks, label);
    assert_eq!(flowing, held, "{}: the headers going at once changed what the client got", case.name);
    held
}

fn replay_under(cfg: &str, case: &Case, chunks: &[&[u8]], label: Option<&str>) -> (Vec<u8>, DirectionAudit) {
    let policies = Policies::from_json(cfg).unwrap();
    let holds = policies.holds_headers();
    let mut x = Exchange::new(Rc::new(policies));
    let head = x.on_request_head(
        &RequestHead { method: "POST", path: case.path, ..Default::default() },
        &Verified::tls("TLSv1.3"),
        true,
    );
    assert_eq!(head.then, Then::Forward);
    let head = x.on_response_head(
        &ResponseHead { status: 200, content_type: label, content_encoding: None, ..Default::default() },
        false,
    );
    assert_eq!(head.then, if holds { Then::Hold } else { Then::Forward });
    let mut d = common::Delivered::default();
    // What a client reassembles only grows, so a value it could see in a prefix is still there
    // at the end: every prefix is checked for raw values, the whole for what the client joins.
    common::drive_body(&mut x, Side::Response, chunks, &mut d, |out| assert_no_raw_value(case, out));
    assert!(d.reply.is_none(), "{}: refused: {:?}", case.name, d.reply);
    assert_clean(case, &d.bytes);
    let audit = x.audit();
    assert!(audit.reason.is_none(), "{}: stopped: {:?}", case.name, audit.reason);
    (d.bytes, audit.response.clone())
}

/// Held headers only: the random chunkings (`replay_labelled`) compare both ways.
fn replay(_e: &Engine, case: &Case, chunks: &[&[u8]]) -> (Vec<u8>, DirectionAudit) {
    let label = if case.framing == Framing::Sse { Some("text/event-stream") } else { Some("application/x-ndjson") };
    replay_under(r#"{"hold_headers": true}"#, case, chunks, label)
}

fn assert_no_raw_value(case: &Case, out: &[u8]) {
    let raw = String::from_utf8_lossy(out);
    for s in SECRETS {
        assert!(!raw.contains(s), "{}: raw bytes leaked {s}", case.name);
    }
}

fn assert_clean(case: &Case, out: &[u8]) {
    let c = reassemble(case.framing, out);
    for text in c.streams.values().chain(c.wholes.iter()) {
        for s in SECRETS {
            assert!(!text.contains(s), "{}: leaked {s}: {text}", case.name);
        }
    }
    let raw = String::from_utf8_lossy(out);
    for s in SECRETS {
        assert!(!raw.contains(s), "{}: raw bytes leaked {s}", case.name);
    }
    // Events that carry a sequence number (OpenAI Responses) keep them strictly increasing,
    // synthetic flush events included: clients order and deduplicate by them.
    let seq: Vec<u64> = raw
        .split("\n\n")
        .filter_map(|ev| ev.lines().find_map(|l| l.strip_prefix("data: ")))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok()?.get("sequence_number")?.as_u64())
        .collect();
    assert!(seq.windows(2).all(|w| w[0] < w[1]), "{}: sequence numbers {seq:?}", case.name);
}

/// What the client must end up with: every logical stream redacted as a whole.
fn expected(e: &Engine, case: &Case) -> Client {
    let whole = reassemble(case.framing, case.upstream.as_bytes());
    Client {
        streams: whole.streams.iter().map(|(k, v)| (k.clone(), e.redact(v).text)).collect(),
        wholes: whole.wholes.iter().map(|w| e.redact(w).text).collect(),
        errors: 0,
    }
}

#[test]
fn generators_plant_every_secret_split_across_events() {
    for case in cases() {
        let c = reassemble(case.framing, case.upstream.as_bytes());
        let all: String = c.streams.values().cloned().collect();
        assert!(all.contains(SECRETS[0]) || all.contains(SECRETS[2]), "{}", case.name);
        // A raw-byte scanner would miss them: the JSON escapes `@`.
        assert!(!case.upstream.contains(SECRETS[0]), "{}", case.name);
    }
}

#[test]
fn whole_body_in_one_chunk() {
    let e = engine();
    for case in cases() {
        let (out, audit) = replay(&e, &case, &[case.upstream.as_bytes()]);
        assert_eq!(reassemble(case.framing, &out), expected(&e, &case), "{}", case.name);
        assert!(audit.findings["email"] >= 1, "{}", case.name);
    }
}

#[test]
fn the_expected_text_has_every_value_replaced_by_its_mask() {
    let e = engine();
    let t = texts();
    assert_eq!(
        e.redact(&t[0]).text,
        "Hello! Write to [REDACTED:EMAIL] or to [REDACTED:EMAIL] about it. The card is [REDACTED:CREDIT_CARD] \
         and the key is `[REDACTED:AWS_ACCESS_KEY_ID]`.\n[REDACTED:PRIVATE_KEY]\nThat is all."
    );
    assert_eq!(
        e.redact(&t[1]).text,
        "Second choice: [REDACTED:EMAIL], token [REDACTED:GITHUB_TOKEN] and SSN [REDACTED:US_SSN]; unicode ünï €😀 text."
    );
}

/// Two chunks, split at every fourth byte (a different residue per format, so that together
/// they cover every offset pattern of the shared text), and at every byte of the first events.
#[test]
fn split_at_every_point() {
    let e = engine();
    let mut runs = 0;
    for (n, case) in cases().into_iter().enumerate() {
        let want = expected(&e, &case);
        let b = case.upstream.as_bytes();
        for i in (0..=b.len()).filter(|i| i % 4 == n % 4 || *i < 600) {
            let (out, _) = replay(&e, &case, &[&b[..i], &b[i..]]);
            assert_eq!(reassemble(case.framing, &out), want, "{} split at {i}", case.name);
            runs += 1;
        }
    }
    assert!(runs > 8000, "{runs}");
}

#[test]
fn one_byte_chunks() {
    let e = engine();
    for case in cases() {
        let chunks: Vec<&[u8]> = case.upstream.as_bytes().chunks(1).collect();
        let (out, _) = replay(&e, &case, &chunks);
        assert_eq!(reassemble(case.framing, &out), expected(&e, &case), "{}", case.name);
    }
}

#[test]
fn thousands_of_random_chunkings() {
    let e = engine();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for case in cases() {
        let want = expected(&e, &case);
        let b = case.upstream.as_bytes();
        for round in 0..400 {
            let mut cuts: Vec<usize> = (0..1 + rng.below(40)).map(|_| rng.below(b.len() + 1)).collect();
            cuts.sort_unstable();
            let mut chunks = Vec::new();
            let mut last = 0;
            for c in cuts {
                chunks.push(&b[last..c]);
                last = c;
            }
            chunks.push(&b[last..]);
            // Whatever the label says: the bytes decide how the answer is read.
            let label = LABELS[round % LABELS.len()];
            let (out, _) = replay_labelled(&case, &chunks, label);
            assert_eq!(reassemble(case.framing, &out), want, "{} round {round} label {label:?}", case.name);
        }
    }
}

#[test]
fn events_keep_their_shape() {
    let e = engine();
    for case in cases() {
        let (out, _) = replay(&e, &case, &[case.upstream.as_bytes()]);
        let out = String::from_utf8(out).unwrap();
        match case.framing {
            Framing::Sse => {
                let names =
                    |s: &str| s.lines().filter(|l| l.starts_with("event:")).map(str::to_owned).collect::<Vec<_>>();
                // Same named events in the same order (synthetic flush events repeat a delta's name).
                let mut got = names(&out);
                got.dedup();
                let mut want = names(&case.upstream);
                want.dedup();
                assert_eq!(got, want, "{}", case.name);
                if case.upstream.contains("[DONE]") {
                    assert!(out.ends_with("data: [DONE]\n\n"), "{}", case.name);
                }
            }
            Framing::Ndjson => {
                // The final line keeps every field; only its text may carry the last held text.
                let strip = |l: &str| {
                    let mut v: Value = serde_json::from_str(l).unwrap();
                    v.as_object_mut().unwrap().remove("response");
                    v["message"].as_object_mut().map(|m| m.remove("content"));
                    v
                };
                assert_eq!(
                    strip(case.upstream.lines().last().unwrap()),
                    strip(out.lines().last().unwrap()),
                    "{}",
                    case.name
                );
                assert_eq!(
                    case.upstream.lines().count(),
                    out.lines().count(),
                    "{}: one line out per line in",
                    case.name
                );
            }
        }
    }
}
