//! The exchange driven the way Envoy drives it: a simulated host that holds what the filter
//! holds, forwards what it forwards, and reports what the client (or the upstream) received.

use super::*;

/// What one direction delivered.
#[derive(Debug, Default)]
struct Delivered {
    bytes: Vec<u8>,
    headers: Vec<HeaderEdit>,
    reply: Option<LocalReply>,
}

/// Feeds `chunks` of one body through `x` as Envoy would: the host buffer grows while the
/// filter holds, and is replaced or forwarded when it says so.
fn body(x: &mut Exchange, side: Side, chunks: &[&[u8]], d: &mut Delivered) {
    let mut held: Vec<u8> = Vec::new();
    for (i, c) in chunks.iter().enumerate() {
        if d.reply.is_some() {
            return;
        }
        held.extend_from_slice(c);
        let end = i + 1 == chunks.len();
        let snapshot = held.clone();
        let step = x.on_body(side, held.len(), end, &mut |s, n| snapshot[s..s + n].to_vec());
        d.headers.extend(step.headers);
        if let Some(b) = step.body {
            held = b;
        }
        match step.then {
            Then::Forward => d.bytes.append(&mut held),
            Then::Hold => {}
            Then::Reply(r) => d.reply = Some(r),
        }
    }
}

/// A configuration with `hold_headers` on, as Envoy runs it with `allow_on_headers_stop_iteration`:
/// the headers wait for the body. (Without it, `flow_*` tests.)
fn held(cfg: &str) -> Policies {
    let cfg = if cfg.trim().is_empty() { "{}" } else { cfg };
    let open = cfg.find('{').expect("a JSON object");
    let sep = if cfg[open + 1..].trim_start().starts_with('}') { "" } else { "," };
    Policies::from_json(&format!("{}{{\"hold_headers\": true{sep}{}", &cfg[..open], &cfg[open + 1..])).unwrap()
}

/// Every path admitted: for tests of scanning on paths that are not inference APIs.
const OPEN: &str = r#"{"admission":{"endpoints":["/"]}}"#;

fn exchange(cfg: &str, path: &str, prompt: &[u8]) -> (Exchange, Delivered) {
    exchange_under(held(cfg), path, prompt)
}

/// A configuration as written: without `hold_headers`, the headers go at once.
fn flowing(cfg: &str) -> Policies {
    Policies::from_json(cfg).unwrap()
}

fn exchange_under(policies: Policies, path: &str, prompt: &[u8]) -> (Exchange, Delivered) {
    let mut x = Exchange::new(Rc::new(policies));
    let mut d = Delivered::default();
    let step = x.on_request_head(
        &RequestHead { method: "POST", path, ..Default::default() },
        &Verified::tls("TLSv1.3"),
        prompt.is_empty(),
    );
    d.headers.extend(step.headers);
    if let Then::Reply(r) = step.then {
        d.reply = Some(r);
    } else if !prompt.is_empty() {
        body(&mut x, Side::Request, &[prompt], &mut d);
    }
    (x, d)
}

fn answer(x: &mut Exchange, content_type: Option<&str>, encoding: Option<&str>, chunks: &[&[u8]]) -> Delivered {
    let mut d = Delivered::default();
    let step = x.on_response_head(
        &ResponseHead { status: 200, content_type, content_encoding: encoding, ..Default::default() },
        false,
    );
    d.headers.extend(step.headers);
    match step.then {
        Then::Reply(r) => d.reply = Some(r),
        _ => body(x, Side::Response, chunks, &mut d),
    }
    d
}

const PROMPT: &[u8] = br#"{"model":"m","stream":false,"messages":[{"role":"user","content":"hi"}]}"#;
const CHAT: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"Mail jane.doe@corp.example or \u0062ob@x.io."},"finish_reason":"stop"}]}"#;

fn text(d: &Delivered) -> String {
    String::from_utf8(d.bytes.clone()).unwrap()
}

#[test]
fn redacts_a_json_answer_whatever_its_label_and_sets_its_length() {
    let want = CHAT.replace(r"jane.doe@corp.example or \u0062ob@x.io", "[REDACTED:EMAIL] or [REDACTED:EMAIL]");
    for label in [
        Some("application/json"),
        Some("text/event-stream"),
        Some("text/plain"),
        Some("text/html"),
        Some("application/octet-stream"),
        Some("image/png"),
        None,
    ] {
        let (mut x, up) = exchange("", "/v1/chat/completions", PROMPT);
        assert_eq!(up.bytes, PROMPT);
        // Split so the first bytes alone cannot tell a document from a stream.
        let (a, b) = CHAT.as_bytes().split_at(40);
        let d = answer(&mut x, label, None, &[a, b]);
        assert_eq!(text(&d), want, "{label:?}");
        assert!(
            d.headers.contains(&("content-length".into(), Some(want.len().to_string()))),
            "{label:?} {:?}",
            d.headers
        );
        assert_eq!(
            x.audit().to_json(),
            r#"{"schema":1,"decision":"redacted","policy":"default","identity":{"source":"anonymous"},"api":"openai.chat_completions","model":"m","stream":false,"request":{"scanned":true},"response":{"scanned":true,"findings":{"email":2},"actions":{"mask":2},"detector_actions":{"email":{"mask":2}}}}"#
        );
    }
}

#[test]
fn tolerant_json_is_read_as_clients_read_it_and_the_rest_is_refused() {
    for doc in [
        r#"{"a":NaN,"t":"jane\u0040x.io"}"#,
        r#"{"a":1e400,"t":"jane\u0040x.io"}"#,
        r#"{"a":-Infinity,"s":"\ud800","t":"jane\u0040x.io"}"#,
        r#"{"t":"jane\u0040x.io","t":"again jane\u0040x.io"}"#,
    ] {
        let (mut x, _) = exchange("", "/v1/chat/completions", PROMPT);
        let d = answer(&mut x, Some("application/json"), None, &[doc.as_bytes()]);
        assert!(!text(&d).contains("jane") && text(&d).contains("[REDACTED:EMAIL]"), "{doc} -> {}", text(&d));
    }
    let deep = format!("{}\"jane@x.io\"{}", "[".repeat(200), "]".repeat(200));
    let (mut x, _) = exchange("", "/v1/chat/completions", PROMPT);
    let d = answer(&mut x, Some("application/json"), None, &[deep.as_bytes()]);
    let r = d.reply.expect("refused");
    assert_eq!(r.status, 502);
    assert!(r.body.contains("nested deeper than 128"), "{}", r.body);
    assert_eq!(x.audit().reason.as_deref(), Some("malformed_response"));
}

#[test]
fn wide_text_is_refused_and_binary_passes_unscanned_and_says_so() {
    let utf16: Vec<u8> = b"\xff\xfe".iter().copied().chain(CHAT.encode_utf16().flat_map(u16::to_le_bytes)).collect();
    let (mut x, _) = exchange("", "/v1/chat/completions", PROMPT);
    let d = answer(&mut x, Some("application/json"), None, &[&utf16]);
    assert_eq!(d.reply.map(|r| r.status), Some(502));
    assert_eq!(x.audit().reason.as_deref(), Some("unsupported_charset"));

    let png: Vec<u8> = b"\x89PNG\r\n\x1a\n".iter().copied().chain((0..2000u32).map(|i| (i * 97 % 251) as u8)).collect();
    let (mut x, _) = exchange(OPEN, "/v1/images", PROMPT);
    let d = answer(&mut x, Some("image/png"), None, &[&png[..100], &png[100..]]);
    assert_eq!(d.bytes, png);
    let audit = x.audit().to_json();
    assert!(audit.starts_with(r#"{"schema":1,"decision":"unscanned""#), "{audit}");
    assert!(audit.contains(r#""response":{"scanned":false,"unscanned_reason":"binary"}"#), "{audit}");
}

#[test]
fn a_stream_is_read_as_a_stream_whatever_its_label() {
    let chunks: [&[u8]; 3] = [
        b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"mail a@b.i\"}}]}\n\n",
        b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"o now\"}}]}\n\n",
        b"data: [DONE]\n\n",
    ];
    let want = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"mail \"}}]}\n\n\
                data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"[REDACTED:EMAIL] \"}}]}\n\n\
                data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"now\"}}]}\n\n\
                data: [DONE]\n\n";
    for label in [Some("text/event-stream"), Some("text/plain"), Some("application/json"), None] {
        let (mut x, _) = exchange("", "/v1/chat/completions", PROMPT);
        let d = answer(&mut x, label, None, &chunks);
        assert_eq!(text(&d), want, "{label:?}");
        assert!(d.headers.contains(&("content-length".into(), None)));
        assert_eq!(x.audit().decision, Decision::Redacted);
    }
    // JSON lines labelled as an event stream.
    let (mut x, _) = exchange("", "/api/chat", PROMPT);
    let lines: [&[u8]; 2] = [
        b"{\"message\":{\"content\":\"mail a@b.i\"}}\n{\"message\":{\"content\":\"o\"}}\n",
        b"{\"message\":{\"content\":\" ok\"},\"done\":true}\n",
    ];
    let d = answer(&mut x, Some("text/event-stream"), None, &lines);
    assert_eq!(
        text(&d),
        "{\"message\":{\"content\":\"mail \"}}\n{\"message\":{\"content\":\"\"}}\n{\"message\":{\"content\":\"[REDACTED:EMAIL] ok\"},\"done\":true}\n"
    );
}

#[test]
fn modes_behave_the_same_buffered_and_streamed() {
    let stream: [&[u8]; 2] = [
        b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"mail a@b.io now\"}}]}\n\n",
        b"data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n",
    ];
    let (mut x, _) = exchange(r#"{"response":{"mode":"report"}}"#, "/v1/chat/completions", PROMPT);
    let d = answer(&mut x, Some("text/event-stream"), None, &stream);
    assert!(text(&d).contains("a@b.io"));
    assert_eq!(x.audit().response.actions.get("report"), Some(&1));
    assert_eq!(x.audit().decision, Decision::Allowed);
    let (mut x, _) = exchange(r#"{"response":{"mode":"report"}}"#, "/v1/chat/completions", PROMPT);
    let d = answer(&mut x, Some("application/json"), None, &[CHAT.as_bytes()]);
    assert_eq!(text(&d), CHAT);
    assert_eq!(x.audit().response.actions.get("report"), Some(&2));

    let (mut x, _) = exchange(r#"{"response":{"mode":"block"}}"#, "/v1/chat/completions", PROMPT);
    let d = answer(&mut x, Some("text/event-stream"), None, &stream);
    // The first event already decides: nothing went out, so the answer is a local reply.
    assert_eq!(d.reply.as_ref().map(|r| r.status), Some(403));
    assert_eq!(x.audit().reason.as_deref(), Some("rule:email"));
    let (mut x, _) = exchange(r#"{"response":{"mode":"block"}}"#, "/v1/chat/completions", PROMPT);
    let d = answer(&mut x, Some("application/json"), None, &[CHAT.as_bytes()]);
    assert_eq!(d.reply.map(|r| r.status), Some(403));
    // Mid-stream: an error event, then nothing.
    let (mut x, _) = exchange(r#"{"response":{"mode":"block"}}"#, "/v1/chat/completions", PROMPT);
    let later: [&[u8]; 3] =
        [b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hello \"}}]}\n\n", stream[0], stream[1]];
    let d = answer(&mut x, Some("text/event-stream"), None, &later);
    let out = text(&d);
    assert!(
        out.starts_with("data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hello \"}}]}\n\ndata: {\"error\":"),
        "{out}"
    );
    assert!(!out.contains("a@b") && !out.contains("[DONE]"), "{out}");
}

#[test]
fn nothing_passes_after_a_decode_error() {
    let (mut x, _) = exchange("", "/v1/chat/completions", PROMPT);
    // A stored deflate block holding one event, then garbage, then plaintext.
    let ev = b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi, \"}}]}\n\n";
    let mut z = vec![0u8];
    z.extend_from_slice(&(ev.len() as u16).to_le_bytes());
    z.extend_from_slice(&(!(ev.len() as u16)).to_le_bytes());
    z.extend_from_slice(ev);
    let d = answer(
        &mut x,
        Some("text/event-stream"),
        Some("deflate"),
        &[
            &z,
            b"\xff\xff\xff\xff\xff\xff",
            b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"jane@x.io\"}}]}\n\n",
        ],
    );
    let out = text(&d);
    assert!(out.starts_with(std::str::from_utf8(ev).unwrap()), "{out}");
    assert!(out.contains("malformed_response") && !out.contains("jane"), "{out}");
    assert_eq!(x.audit().reason.as_deref(), Some("malformed_response"));
}

#[test]
fn every_request_body_is_read_whatever_its_method_or_framing() {
    for prompt in [
        &b"\xEF\xBB\xBF{\"messages\":[{\"content\":\"jane\\u0040x.io\"}]}"[..],
        b"\n\n   {\"messages\":[{\"content\":\"jane\\u0040x.io\"}]}",
        b"plain jane@x.io",
        b"q=jane%40x.io",
    ] {
        for method in ["GET", "DELETE", "POST", "PUT"] {
            let mut x = Exchange::new(Rc::new(held(OPEN)));
            let head = x.on_request_head(
                &RequestHead { method, path: "/v1/x", ..Default::default() },
                &Verified::tls("TLSv1.3"),
                false,
            );
            assert_eq!(head.then, Then::Hold);
            let mut d = Delivered::default();
            body(&mut x, Side::Request, &[&prompt[..5], &prompt[5..]], &mut d);
            let out = text(&d);
            assert!(!out.contains("jane") && out.contains("[REDACTED:EMAIL]"), "{method} {out}");
        }
    }
}

#[test]
fn the_request_line_and_the_model_are_redacted_and_logged_redacted() {
    let (x, d) = exchange(OPEN, "/v1/users/jane@x.io?q=a%40b.io&t=1", b"");
    assert_eq!(
        d.headers,
        vec![
            ("accept-encoding".into(), None),
            ("x-inferguard-identity".into(), Some("anonymous:".into())),
            (":path".into(), Some("/v1/users/%5BREDACTED%3AEMAIL%5D?q=%5BREDACTED%3AEMAIL%5D&t=1".into()))
        ]
    );
    assert_eq!(x.logged_path(), "/v1/users/%5BREDACTED%3AEMAIL%5D?q=%5BREDACTED%3AEMAIL%5D&t=1");
    let (x, _) = exchange(r#"{"request":{"mode":"report"},"admission":{"endpoints":["/"]}}"#, "/v1/x?q=a%40b.io", b"");
    assert_eq!(x.logged_path(), "/v1/x?q=%5BREDACTED%3AEMAIL%5D");
    let (x, _) = exchange("", "/v1/chat/completions", br#"{"model":"jane@x.io","messages":[]}"#);
    assert_eq!(x.audit().model.as_deref(), Some("[REDACTED:EMAIL]"));
}

/// Envoy keeps a client's `x-request-id` unless it is an edge proxy: the record shows it only in
/// the UUID form Envoy generates; `on_log` treats the host's `request.id` the same way.
#[test]
fn the_request_id_is_logged_only_as_an_id() {
    let logged = |id: &str| {
        let mut x = Exchange::new(Rc::new(held(OPEN)));
        let head = RequestHead { method: "GET", path: "/v1/models", request_id: Some(id), ..Default::default() };
        x.on_request_head(&head, &Verified::tls("TLSv1.3"), true);
        let from_head = x.audit().request_id.clone();
        x.on_log(&LogFacts { request_id: Some(id), ..Default::default() });
        assert_eq!(x.audit().request_id, from_head, "{id}");
        from_head.unwrap()
    };
    assert_eq!(logged("0f3c2a9e-7b1d-4c55-9a0e-3d2f1b6c8e47"), "0f3c2a9e-7b1d-4c55-9a0e-3d2f1b6c8e47");
    assert_eq!(logged("0F3C2A9E-7B1D-4C55-9A0E-3D2F1B6C8E47"), "0F3C2A9E-7B1D-4C55-9A0E-3D2F1B6C8E47");
    // A bare token or `user:password` looks like an id of some other scheme: only UUIDs pass.
    for id in ["jane@x.io", "call me maybe", "a1b2c3d4e5f6g7h8", "app_user:Sup3rS3cret", "4111-1111-1111-1111", ""] {
        assert_eq!(logged(id), "[REDACTED:REQUEST_ID]", "{id}");
    }
}

#[test]
fn request_mode_block_refuses_a_prompt_and_report_changes_nothing() {
    let prompt = br#"{"model":"m","messages":[{"role":"user","content":"I am a@b.io"}]}"#;
    let (x, d) = exchange(r#"{"request":{"mode":"block"}}"#, "/v1/messages", prompt);
    let r = d.reply.unwrap();
    assert_eq!(r.status, 403);
    assert!(r.body.contains("permission_error"));
    assert!(d.bytes.is_empty());
    assert_eq!(x.audit().reason.as_deref(), Some("rule:email"));
    let (x, d) = exchange(r#"{"request":{"mode":"report"}}"#, "/v1/messages", prompt);
    assert_eq!(d.bytes, prompt);
    assert_eq!(x.audit().request.actions.get("report"), Some(&1));
    assert_eq!(x.audit().decision, Decision::Allowed);
}

#[test]
fn enforces_body_limits_per_direction() {
    let cfg = r#"{"request":{"max_body_bytes":10},"response":{"max_body_bytes":10,"on_oversize":"pass_unscanned"}}"#;
    let (x, d) = exchange(cfg, "/v1/chat/completions", PROMPT);
    assert_eq!(d.reply.map(|r| r.status), Some(413));
    assert_eq!(x.audit().reason.as_deref(), Some("request_too_large"));
    let (mut x, _) = exchange(cfg, "/v1/chat/completions", b"{}");
    let d = answer(&mut x, Some("application/json"), None, &[CHAT.as_bytes()]);
    assert_eq!(text(&d), CHAT);
    assert_eq!(x.audit().response.unscanned_reason, Some("oversize"));
    assert_eq!(x.audit().decision, Decision::Unscanned);
}

#[test]
fn token_lists_are_emptied_in_a_buffered_answer_and_counted() {
    let (mut x, _) = exchange("", "/generate", PROMPT);
    let body = br#"{"generated_text":"mail a@b.io","details":{"finish_reason":"eos_token","generated_tokens":3,"prefill":[],"tokens":[{"id":1,"text":"mail a","logprob":-0.1,"special":false},{"id":2,"text":"@b.io","logprob":-0.2,"special":false}]}}"#;
    let d = answer(&mut x, Some("application/json"), None, &[body]);
    assert_eq!(
        text(&d),
        r#"{"generated_text":"mail [REDACTED:EMAIL]","details":{"finish_reason":"eos_token","generated_tokens":3,"prefill":[],"tokens":[]}}"#
    );
    let audit = x.audit().to_json();
    assert!(audit.contains(r#""findings":{"email":1},"actions":{"mask":1},"detector_actions":{"email":{"mask":1}},"removed":{"token_details":2}"#), "{audit}");
}

#[test]
fn inflates_a_deflate_encoded_answer_and_forwards_it_plain() {
    let (mut x, _) = exchange("", "/v1/chat/completions", PROMPT);
    let body = br#"{"t":"a@b.io"}"#;
    let mut z = vec![1u8];
    z.extend_from_slice(&(body.len() as u16).to_le_bytes());
    z.extend_from_slice(&(!(body.len() as u16)).to_le_bytes());
    z.extend_from_slice(body);
    let d = answer(&mut x, Some("application/json"), Some("deflate"), &[&z]);
    assert_eq!(text(&d), r#"{"t":"[REDACTED:EMAIL]"}"#);
    assert!(d.headers.contains(&("content-encoding".into(), None)));
    let (mut x, _) = exchange("", "/v1/chat/completions", PROMPT);
    let d = answer(&mut x, Some("application/json"), Some("br"), &[b"x"]);
    assert_eq!(d.reply.map(|r| r.status), Some(502));
    assert_eq!(x.audit().reason.as_deref(), Some("unsupported_encoding"));
}

#[test]
fn a_block_rule_mid_stream_ends_it_with_one_error_event() {
    let (mut x, _) = exchange(r#"{"detect":{"detectors":{"email":{"action":"block"}}}}"#, "/v1/messages", PROMPT);
    let ev = |t: &str| {
        format!("event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"{t}\"}}}}\n\n")
    };
    let (a, b, c) = (ev("hi x@"), ev("y.io more"), ev("after"));
    let d = answer(&mut x, Some("text/event-stream"), None, &[a.as_bytes(), b.as_bytes(), c.as_bytes()]);
    let out = text(&d);
    assert!(out.ends_with("event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"permission_error\",\"message\":\"blocked by inferguard policy (rule email)\"}}\n\n"), "{out}");
    assert!(!out.contains("x@") && !out.contains("after"), "{out}");
    assert_eq!(x.audit().reason.as_deref(), Some("rule:email"));
}

#[test]
fn everything_a_client_sees_is_scanned() {
    let (mut x, _) = exchange("", "/v1/chat/completions", PROMPT);
    let stream: [&[u8]; 1] = [
        b": ping jane@x.io\nid: jane@x.io\nevent: jane@x.io\ndata: {\"jane@x.io\":4111111111111111,\"choices\":[]}\n\n",
    ];
    let d = answer(&mut x, Some("text/event-stream"), None, &stream);
    let out = text(&d);
    assert!(!out.contains("jane") && !out.contains("4111"), "{out}");
    assert_eq!(out.matches("[REDACTED:EMAIL]").count(), 4, "{out}");
    assert!(out.contains("\"[REDACTED:CREDIT_CARD]\""), "{out}");
    // A signature holding a value blocks; the same field elsewhere is just redacted.
    let (mut x, _) = exchange("", "/v1/messages", PROMPT);
    let sig: [&[u8]; 1] = [b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"signature_delta\",\"signature\":\"jane@x.io\"}}\n\n"];
    let d = answer(&mut x, Some("text/event-stream"), None, &sig);
    assert_eq!(d.reply.map(|r| r.status), Some(403));
}

#[test]
fn trailers_end_a_body_it_is_read_then_and_a_stream_drops_what_it_still_holds() {
    // A prompt whose end is its trailers: held until then, then read whole.
    let mut x = Exchange::new(Rc::new(held("")));
    let _ = x.on_request_head(
        &RequestHead { method: "POST", path: "/v1/chat/completions", ..Default::default() },
        &Verified::tls("TLSv1.3"),
        false,
    );
    let prompt = br#"{"messages":[{"content":"I am jane@x.io"}]}"#;
    let step = x.on_body(Side::Request, prompt.len(), false, &mut |s, n| prompt[s..s + n].to_vec());
    assert_eq!(step.then, Then::Hold);
    let step = x.on_trailers(Side::Request, prompt.len(), &mut |s, n| prompt[s..s + n].to_vec());
    assert_eq!(step.then, Then::Forward);
    assert_eq!(step.body.as_deref(), Some(&br#"{"messages":[{"content":"I am [REDACTED:EMAIL]"}]}"#[..]));
    // An answer streaming when its trailers come: what it still holds never goes out.
    let _ = x.on_response_head(&ResponseHead { status: 200, ..Default::default() }, false);
    let ev = b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"write to jane@x.i\"}}]}\n\n";
    let step = x.on_body(Side::Response, ev.len(), false, &mut |s, n| ev[s..s + n].to_vec());
    let sent = String::from_utf8(step.body.unwrap()).unwrap();
    assert!(sent.contains("\"write to \"") && !sent.contains("jane"), "{sent}");
    let step = x.on_trailers(Side::Response, ev.len(), &mut |s, n| ev[s..s + n].to_vec());
    assert_eq!((step.body, step.then), (None, Then::Forward));
}

#[test]
fn binary_passes_with_its_length_and_a_value_in_its_text_runs_stops_it() {
    let png: Vec<u8> = b"\x89PNG\r\n\x1a\n".iter().copied().chain((0..3000u32).map(|i| (i * 97 % 251) as u8)).collect();
    let (mut x, _) = exchange(OPEN, "/v1/files/f/content", PROMPT);
    let d = answer(&mut x, Some("image/png"), None, &[&png[..700], &png[700..]]);
    assert_eq!(d.bytes, png);
    assert!(!d.headers.iter().any(|(h, _)| *h == "content-length"), "{:?}", d.headers);
    // Text after a media signature: the value is judged, and stops the body.
    let mut smuggled = png[..600].to_vec();
    smuggled.extend_from_slice(b" mail jane.doe@acme-corp.com to ");
    smuggled.extend_from_slice(&png[600..]);
    let (mut x, _) = exchange(OPEN, "/v1/files/f/content", PROMPT);
    let (a, b) = smuggled.split_at(620); // the value is cut between chunks
    let d = answer(&mut x, Some("image/png"), None, &[&a[..300], &a[300..], b]);
    assert!(!String::from_utf8_lossy(&d.bytes).contains("jane"), "{:?}", String::from_utf8_lossy(&d.bytes));
    assert!(d.bytes.len() < 620);
    assert_eq!(x.audit().reason.as_deref(), Some("rule:email"));
    // However the chunks fall, the content is cut exactly where the run with the value begins.
    let run_start = 600 - png[..600].iter().rev().take_while(|&&c| c.is_ascii_graphic() || c == b' ').count();
    for cut in [0, 100, 600, 610, 620, smuggled.len() - 1] {
        let (mut x, _) = exchange(OPEN, "/v1/files/f/content", PROMPT);
        let (a, b) = smuggled.split_at(cut);
        let d = answer(&mut x, Some("image/png"), None, &[a, b]);
        match &d.reply {
            // Nothing went out yet: a refusal instead.
            Some(r) => assert_eq!((r.status, d.bytes.len()), (403, 0), "cut at {cut}"),
            None => assert_eq!(d.bytes, &smuggled[..run_start], "cut at {cut}"),
        }
    }
}

#[test]
fn json_lines_longer_than_the_sniff_window_are_still_read_line_by_line_at_the_end() {
    let long = "x ".repeat(crate::wire::sniff::FIRST_VALUE_WINDOW);
    let body = format!(
        "{{\"message\":{{\"content\":\"{long}mail a@b.i\"}},\"done\":false}}\n{{\"message\":{{\"content\":\"o now\"}},\"done\":true}}\n"
    );
    let (mut x, _) = exchange("", "/api/chat", PROMPT);
    let chunks: Vec<&[u8]> = body.as_bytes().chunks(4096).collect();
    let d = answer(&mut x, Some("application/x-ndjson"), None, &chunks);
    let out = text(&d);
    // Held to the end, then each line read as a document of its own: the value split across
    // them is still one text.
    assert!(
        out.ends_with("{\"message\":{\"content\":\"[REDACTED:EMAIL] now\"},\"done\":true}\n"),
        "{}",
        &out[out.len() - 200..]
    );
    assert_eq!(out.lines().count(), 2);
}

#[test]
fn a_wide_text_prompt_is_refused_never_forwarded() {
    let utf16: Vec<u8> =
        "{\"messages\":[{\"content\":\"jane@x.io\"}]}".encode_utf16().flat_map(u16::to_le_bytes).collect();
    let (x, d) = exchange("", "/v1/chat/completions", &utf16);
    assert_eq!(d.reply.map(|r| r.status), Some(415));
    assert!(d.bytes.is_empty());
    assert_eq!(x.audit().reason.as_deref(), Some("unsupported_charset"));
}

// --- browser-facing policy: CORS and the headers of every response ------------------------------

const BROWSER: &str = r#"{"cors":{"allowed_origins":["https://app.example.com"],"allowed_headers":["content-type","x-trace"],
    "expose_headers":["x-request-id"]},
  "policies":[{"name":"ui","match":{"paths":["/v1/messages"]},
               "cors":{"allowed_origins":["https://*.example.org"],"allow_credentials":false}},
              {"name":"lenient","match":{"paths":["/v1/completions"]},
               "cors":{"allowed_origins":["https://app.example.com"],"on_refused_origin":"omit_headers"}},
              {"name":"big","match":{"models":["big-*"]},"cors":{"allowed_origins":["https://big.example.net"]}}]}"#;

/// A request head from a browser page of `origin` (a preflight when `acrm` is given).
fn browser_head(
    x: &mut Exchange,
    method: &str,
    path: &str,
    origin: Option<&str>,
    acrm: Option<&str>,
    acrh: Option<&str>,
    end: bool,
) -> Step {
    let head = RequestHead {
        method,
        path,
        authority: Some("api.example.net"),
        origin,
        access_control_request_method: acrm,
        access_control_request_headers: acrh,
        ..Default::default()
    };
    x.on_request_head(&head, &Verified::tls("TLSv1.3"), end)
}

fn header<'a>(h: &'a [(HeaderName, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn cors_names(h: &[(HeaderName, String)]) -> Vec<&str> {
    h.iter().filter(|(k, _)| k.starts_with("access-control-")).map(|(k, _)| k.as_ref()).collect()
}

/// Every security header of the default policy, and `Vary: Origin`, are among `h`.
fn assert_secure(h: &[(HeaderName, String)], tls: bool, what: &str) {
    for (k, v) in crate::policy::browser::DEFAULT_SECURITY_HEADERS {
        let want = (tls || *k != "strict-transport-security").then_some(*v);
        assert_eq!(header(h, k), want, "{what}: {k} in {h:?}");
    }
    assert!(header(h, "vary").is_some_and(|v| v.split(", ").any(|v| v == "Origin")), "{what}: {h:?}");
}

#[test]
fn a_preflight_is_answered_by_the_policy_of_its_path_and_never_forwarded() {
    let policies = Rc::new(held(BROWSER));
    // (path, origin, method, headers) -> Some(allowed origin) or the refusal's reason, and the policy.
    for (path, origin, method, headers, want, policy) in [
        (
            "/v1/chat/completions",
            "https://app.example.com",
            "POST",
            Some("content-type, x-trace"),
            Ok("https://app.example.com"),
            "default",
        ),
        ("/v1/chat/completions", "https://APP.example.com:443", "POST", None, Ok("https://app.example.com"), "default"),
        ("/v1/chat/completions", "https://app.example.com", "DELETE", None, Err("cors_method"), "default"),
        (
            "/v1/chat/completions",
            "https://app.example.com",
            "POST",
            Some("authorization"),
            Err("cors_headers"),
            "default",
        ),
        ("/v1/chat/completions", "https://app.example.com.evil.net", "POST", None, Err("cors_origin"), "default"),
        ("/v1/chat/completions", "https://x.example.org", "POST", None, Err("cors_origin"), "default"),
        ("/v1/messages", "https://x.example.org", "POST", None, Ok("https://x.example.org"), "ui"),
        ("/v1/messages", "https://app.example.com", "POST", None, Err("cors_origin"), "ui"),
        // A preflight has no body, so no model: `big` (which needs one) never takes it.
        ("/v1/chat/completions", "https://big.example.net", "POST", None, Err("cors_origin"), "default"),
    ] {
        let mut x = Exchange::new(Rc::clone(&policies));
        let step = browser_head(&mut x, "OPTIONS", path, Some(origin), Some(method), headers, true);
        let Then::Reply(r) = step.then else { panic!("{path} {origin}: forwarded") };
        let a = x.audit();
        assert_eq!((a.policy.as_str(), a.cors), (policy, Some("preflight")), "{origin}");
        assert_secure(&r.headers, true, origin);
        match want {
            Ok(allowed) => {
                assert_eq!((r.status, r.body.as_str()), (204, ""), "{origin}");
                assert_eq!(header(&r.headers, "access-control-allow-origin"), Some(allowed));
                assert_eq!(header(&r.headers, "content-type"), None);
                assert_eq!(header(&r.headers, "x-inferguard"), None);
                assert_eq!(a.decision.as_str(), "allowed");
                assert_eq!(
                    header(&r.headers, "vary"),
                    Some("Origin, Access-Control-Request-Method, Access-Control-Request-Headers")
                );
            }
            Err(reason) => {
                assert_eq!(r.status, 403, "{origin}");
                assert_eq!(cors_names(&r.headers), Vec::<&str>::new(), "{origin}");
                assert_eq!((a.decision.as_str(), a.reason.as_deref()), ("denied", Some(reason)), "{origin}");
            }
        }
    }
    // The preflight's header set, exactly (the default policy's `allowed_methods`).
    let mut x = Exchange::new(Rc::clone(&policies));
    let Then::Reply(r) = browser_head(
        &mut x,
        "OPTIONS",
        "/v1/chat/completions",
        Some("https://app.example.com"),
        Some("POST"),
        None,
        true,
    )
    .then
    else {
        panic!()
    };
    assert_eq!(
        cors_names(&r.headers),
        [
            "access-control-allow-origin",
            "access-control-allow-methods",
            "access-control-allow-headers",
            "access-control-max-age"
        ]
    );
    assert_eq!(header(&r.headers, "access-control-allow-headers"), Some("content-type, x-trace"));
    // OPTIONS without Access-Control-Request-Method is not a preflight: it is judged as a request.
    let mut x = Exchange::new(Rc::clone(&policies));
    let step = browser_head(&mut x, "OPTIONS", "/v1/chat/completions", Some("https://evil.test"), None, None, true);
    assert!(matches!(step.then, Then::Reply(LocalReply { status: 403, .. })));
    assert_eq!(x.audit().reason.as_deref(), Some("cors_origin"));
}

#[test]
fn a_request_from_a_refused_origin_is_refused_before_the_model_or_served_without_cors_headers() {
    let policies = Rc::new(held(BROWSER));
    for origin in [
        "https://evil.test",
        "https://app.example.com.evil.net",
        "https://evilapp.example.com",
        "null",
        "http://app.example.com",
    ] {
        let mut x = Exchange::new(Rc::clone(&policies));
        // `big` names models: the policy, and so the CORS decision, waits for the body's `model`.
        let step = browser_head(&mut x, "POST", "/v1/chat/completions", Some(origin), None, None, false);
        assert_eq!(step.then, Then::Hold);
        let step = x.on_body(Side::Request, PROMPT.len(), true, &mut |s, n| PROMPT[s..s + n].to_vec());
        let Then::Reply(r) = step.then else { panic!("{origin}: forwarded") };
        assert_eq!(r.status, 403);
        assert_eq!(cors_names(&r.headers), Vec::<&str>::new());
        assert_secure(&r.headers, true, origin);
        let a = x.audit();
        assert_eq!(
            (a.decision.as_str(), a.reason.as_deref(), a.cors),
            ("denied", Some("cors_origin"), Some("refused"))
        );
    }
    // `omit_headers`: forwarded, and the answer carries no CORS header (the upstream's removed).
    let mut x = Exchange::new(Rc::clone(&policies));
    let step = browser_head(&mut x, "GET", "/v1/completions", Some("https://evil.test"), None, None, true);
    assert_eq!(step.then, Then::Forward);
    assert_eq!(x.audit().cors, Some("withheld"));
    let upstream = [("content-type", "application/json"), ("access-control-allow-origin", "*")];
    let step = x.on_response_head(&ResponseHead { status: 200, headers: &upstream, ..Default::default() }, true);
    assert!(step.headers.contains(&("access-control-allow-origin".into(), None)), "{:?}", step.headers);
    assert!(!step.headers.iter().any(|(k, v)| k.starts_with("access-control-") && v.is_some()), "{:?}", step.headers);
}

#[test]
fn an_allowed_origin_gets_the_policys_cors_headers_in_place_of_the_upstreams() {
    let (mut x, _) = (Exchange::new(Rc::new(held(BROWSER))), ());
    let step = browser_head(&mut x, "POST", "/v1/chat/completions", Some("https://app.example.com"), None, None, false);
    assert_eq!(step.then, Then::Hold);
    let mut d = Delivered::default();
    body(&mut x, Side::Request, &[PROMPT], &mut d);
    assert_eq!(d.bytes, PROMPT);
    assert_eq!(x.audit().cors, Some("allowed"));
    let upstream = [
        ("content-type", "application/json"),
        ("access-control-allow-origin", "*"),
        ("access-control-allow-credentials", "true"),
        ("server", "uvicorn"),
        ("x-envoy-upstream-service-time", "4"),
    ];
    let step = x.on_response_head(&ResponseHead { status: 200, headers: &upstream, ..Default::default() }, false);
    assert_eq!(step.then, Then::Hold);
    let set: Vec<(HeaderName, String)> =
        step.headers.iter().filter_map(|(k, v)| Some((k.clone(), v.clone()?))).collect();
    let removed: Vec<&str> = step.headers.iter().filter(|(_, v)| v.is_none()).map(|(k, _)| k.as_ref()).collect();
    assert_eq!(
        removed,
        ["access-control-allow-origin", "access-control-allow-credentials", "server", "x-envoy-upstream-service-time"]
    );
    assert_eq!(cors_names(&set), ["access-control-allow-origin", "access-control-expose-headers"]);
    assert_eq!(header(&set, "access-control-allow-origin"), Some("https://app.example.com"));
    assert_secure(&set, true, "upstream 200");
    // Then the body is scanned as ever, with its own edits.
    let d = {
        let mut d = Delivered::default();
        body(&mut x, Side::Response, &[CHAT.as_bytes()], &mut d);
        d
    };
    assert!(text(&d).contains("[REDACTED:EMAIL]"));
}

#[test]
fn the_policy_chosen_by_the_model_decides_cors_once_the_body_is_read() {
    let policies = Rc::new(held(BROWSER));
    for (model, origin, refused) in [
        ("big-1", "https://big.example.net", false),
        ("big-1", "https://app.example.com", true),
        ("m", "https://big.example.net", true),
    ] {
        let mut x = Exchange::new(Rc::clone(&policies));
        assert_eq!(
            browser_head(&mut x, "POST", "/v1/chat/completions", Some(origin), None, None, false).then,
            Then::Hold
        );
        let prompt = format!(r#"{{"model":"{model}","messages":[]}}"#);
        let step = x.on_body(Side::Request, prompt.len(), true, &mut |s, n| prompt.as_bytes()[s..s + n].to_vec());
        assert_eq!(matches!(step.then, Then::Reply(LocalReply { status: 403, .. })), refused, "{model} {origin}");
        if let Then::Reply(r) = step.then {
            assert_secure(&r.headers, true, origin);
            assert_eq!(x.audit().reason.as_deref(), Some("cors_origin"));
        }
    }
}

#[test]
fn every_local_reply_and_every_upstream_answer_carries_the_security_headers() {
    // (configuration, path, prompt, TLS) -> the local reply's status.
    let big = vec![b'x'; 70_000];
    for (cfg, path, prompt, tls, status) in [
        ("", "/v1/chat/completions", PROMPT, false, 426),
        (r#"{"admission":{"require_identity":true}}"#, "/v1/chat/completions", PROMPT, true, 401),
        ("", "/api/pull", PROMPT, true, 403),
        ("", "/v1/%2e%2e/%2e%2e/x", PROMPT, true, 400),
        (r#"{"request":{"max_body_bytes":65536}}"#, "/v1/chat/completions", &big[..], true, 413),
        (r#"{"admission":{"require_upstream_tls":true}}"#, "/v1/chat/completions", PROMPT, true, 502),
        (
            r#"{"request":{"mode":"block"}}"#,
            "/v1/chat/completions",
            br#"{"model":"m","messages":[{"role":"user","content":"jane@x.io"}]}"#,
            true,
            403,
        ),
    ] {
        let mut x = Exchange::new(Rc::new(held(cfg)));
        let v = if tls { Verified::tls("TLSv1.3") } else { Verified::default() };
        let mut step = x.on_request_head(&RequestHead { method: "POST", path, ..Default::default() }, &v, false);
        if step.then == Then::Hold {
            step = x.on_body(Side::Request, prompt.len(), true, &mut |s, n| prompt[s..s + n].to_vec());
        }
        let Then::Reply(r) = step.then else { panic!("{cfg} {path}: no reply") };
        assert_eq!(r.status, status, "{cfg} {path}: {}", r.body);
        assert_secure(&r.headers, tls, path);
        assert_eq!(header(&r.headers, "content-type"), Some(LocalReply::CONTENT_TYPE));
        assert_eq!(header(&r.headers, "x-inferguard"), Some("refused"));
    }
    // The upstream's answers: with a body, without one, an error, and one the filter replaces.
    for (status, end) in [(200, false), (204, true), (500, false)] {
        let (mut x, _) = exchange("", "/v1/chat/completions", PROMPT);
        let step = x.on_response_head(&ResponseHead { status, headers: &[("server", "x")], ..Default::default() }, end);
        let set: Vec<(HeaderName, String)> =
            step.headers.iter().filter_map(|(k, v)| Some((k.clone(), v.clone()?))).collect();
        assert_secure(&set, true, &format!("upstream {status}"));
        assert!(step.headers.contains(&("server".into(), None)));
    }
    let (mut x, _) = exchange("", "/v1/chat/completions", PROMPT);
    x.on_response_head(&ResponseHead { status: 200, ..Default::default() }, false);
    let step = x.on_body(Side::Response, 5, true, &mut |_, _| b"{\"a\":".to_vec());
    let Then::Reply(r) = step.then else { panic!("a broken answer passed") };
    assert_eq!(r.status, 502);
    assert_secure(&r.headers, true, "502 malformed_response");
}

/// A store shared by several exchanges, as Envoy's workers share proxy-wasm's shared data.
#[derive(Clone, Default)]
struct Shared(Rc<std::cell::RefCell<crate::limits::MemoryStore>>);

impl crate::limits::Store for Shared {
    fn get(&mut self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        self.0.borrow_mut().get(key)
    }
    fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), ()> {
        self.0.borrow_mut().set(key, value, cas)
    }
}

#[test]
fn limits_hold_per_caller_answer_429_with_retry_after_and_warn_first() {
    let policies = Rc::new(held(r#"{"limits": {"requests_per_minute": 4, "output_per_minute": 1000, "warn_at": 50}}"#));
    let store = Shared::default();
    let send = |client: &str, now_ms: u64| {
        let mut x = Exchange::new(Rc::clone(&policies));
        x.set_limits(Box::new(store.clone()), now_ms);
        let v = Verified { client_address: Some(client), ..Verified::tls("TLSv1.3") };
        let step =
            x.on_request_head(&RequestHead { method: "GET", path: "/v1/models", ..Default::default() }, &v, true);
        (x, step)
    };
    let mut warnings = Vec::new();
    for _ in 0..4 {
        let (x, step) = send("10.0.0.1:5000", 0);
        assert_eq!(step.then, Then::Forward);
        warnings.push(x.audit().warning);
    }
    // Past half of the allowance: marked before anything is refused.
    assert_eq!(warnings, [None, None, Some("extraction_suspected"), Some("extraction_suspected")]);
    let (x, step) = send("10.0.0.1:6000", 0);
    let Then::Reply(r) = step.then else { panic!("{:?}", step.then) };
    assert_eq!(r.status, 429);
    assert!(r.headers.iter().any(|(k, v)| k == "retry-after" && v == "15"), "{:?}", r.headers);
    assert!(r.body.contains("rate_limited"));
    assert_eq!((x.audit().decision, x.audit().reason.as_deref()), (Decision::RateLimited, Some("rate_limited")));
    // Another caller has its own allowance; the first gets one back 15 s later.
    assert_eq!(send("10.0.0.2:5000", 0).1.then, Then::Forward);
    assert_eq!(send("10.0.0.1:5000", 15_000).1.then, Then::Forward);

    // Output is charged when the exchange ends: an answer that overdraws makes the next wait.
    let (mut x, _) = send("10.0.0.3:1", 0);
    x.on_response_head(&ResponseHead { status: 200, content_type: Some("text/plain"), ..Default::default() }, false);
    let big = vec![b'a'; 1500];
    x.on_body(Side::Response, big.len(), true, &mut |s, n| big[s..s + n].to_vec());
    x.on_end();
    let (_, step) = send("10.0.0.3:1", 0);
    let Then::Reply(r) = step.then else { panic!("{:?}", step.then) };
    assert_eq!(r.status, 429);
    // 500 bytes over at 1000 a minute: 30 s.
    assert!(r.headers.iter().any(|(k, v)| k == "retry-after" && v == "30"), "{:?}", r.headers);
}

/// One answer per format, as its server sends it, with the output token count it reports
/// (`None`: it reports none).
const USAGE_ANSWERS: &[(&str, &str, &str, Option<u64>)] = &[
    (
        "/v1/chat/completions",
        "application/json",
        r#"{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Hello there"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12,"completion_tokens_details":{"reasoning_tokens":0}}}"#,
        Some(7),
    ),
    (
        "/v1/chat/completions",
        "text/event-stream",
        "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hel\"},\"finish_reason\":null}]}\n\n\
         data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo there\"},\"finish_reason\":\"stop\"}]}\n\n\
         data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":9,\"total_tokens\":14}}\n\n\
         data: [DONE]\n\n",
        Some(9),
    ),
    (
        "/v1/chat/completions",
        "text/event-stream",
        "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello there\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n",
        None,
    ),
    (
        "/v1/completions",
        "application/json",
        r#"{"id":"c","object":"text_completion","choices":[{"index":0,"text":"Hello there","finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":3,"total_tokens":8}}"#,
        Some(3),
    ),
    (
        "/v1/responses",
        "application/json",
        r#"{"id":"r","object":"response","output":[{"type":"message","content":[{"type":"output_text","text":"Hello there"}]}],"usage":{"input_tokens":5,"output_tokens":11,"total_tokens":16,"output_tokens_details":{"reasoning_tokens":0}}}"#,
        Some(11),
    ),
    (
        "/v1/responses",
        "text/event-stream",
        "event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"r\",\"output\":[],\"usage\":null}}\n\n\
         event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":1,\"output_index\":0,\"content_index\":0,\"delta\":\"Hello there\"}\n\n\
         event: response.output_text.done\ndata: {\"type\":\"response.output_text.done\",\"sequence_number\":2,\"output_index\":0,\"content_index\":0,\"text\":\"Hello there\"}\n\n\
         event: response.completed\ndata: {\"type\":\"response.completed\",\"sequence_number\":3,\"response\":{\"id\":\"r\",\"output\":[{\"type\":\"message\",\"content\":[{\"type\":\"output_text\",\"text\":\"Hello there\"}]}],\"usage\":{\"input_tokens\":5,\"output_tokens\":6,\"total_tokens\":11}}}\n\n",
        Some(6),
    ),
    (
        "/v1/messages",
        "application/json",
        r#"{"id":"m","type":"message","role":"assistant","content":[{"type":"text","text":"Hello there"}],"stop_reason":"end_turn","usage":{"input_tokens":5,"output_tokens":4}}"#,
        Some(4),
    ),
    (
        "/v1/messages",
        "text/event-stream",
        // Cumulative counts: 1 at the start, 9 at the end; 9 in all, not 10.
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"content\":[],\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}}\n\n\
         event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n\
         event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello there\"}}\n\n\
         event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n\
         event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":9}}\n\n\
         event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
        Some(9),
    ),
    (
        "/api/chat",
        "application/x-ndjson",
        "{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"Hello there\"},\"done\":false}\n\
         {\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done\":true,\"done_reason\":\"stop\",\"eval_count\":3}\n",
        Some(3),
    ),
    (
        "/api/generate",
        "application/json",
        r#"{"model":"m","response":"Hello there","done":true,"eval_count":2}"#,
        Some(2),
    ),
    (
        "/generate_stream",
        "text/event-stream",
        "data:{\"index\":0,\"token\":{\"id\":1,\"text\":\"Hello\",\"special\":false},\"generated_text\":null,\"details\":null}\n\n\
         data:{\"index\":1,\"token\":{\"id\":2,\"text\":\" there\",\"special\":false},\"generated_text\":\"Hello there\",\"details\":{\"finish_reason\":\"eos_token\",\"generated_tokens\":2}}\n\n",
        Some(2),
    ),
    // Counts anywhere else are not the answer's: a model's text, a choice's own member.
    (
        "/v1/chat/completions",
        "application/json",
        r#"{"choices":[{"index":0,"message":{"content":"\"usage\":{\"completion_tokens\":1}"},"usage":{"completion_tokens":1}}],"x":{"usage":{"completion_tokens":1}}}"#,
        None,
    ),
];

/// Feeds `answer` to a fresh exchange for `path` whole, split in two, and one byte at a time;
/// returns what the audit records of its output each time.
fn output_tokens(path: &str, content_type: &str, body: &str) -> Vec<Option<u64>> {
    let whole: Vec<&[u8]> = vec![body.as_bytes()];
    let (a, b) = body.as_bytes().split_at(body.len() / 2);
    let bytes: Vec<&[u8]> = body.as_bytes().chunks(1).collect();
    [whole, vec![a, b], bytes]
        .iter()
        .map(|chunks| {
            let (mut x, _) = exchange(OPEN, path, PROMPT);
            let d = answer(&mut x, Some(content_type), None, chunks);
            assert!(d.reply.is_none(), "{path} {body}: {:?}", d.reply);
            x.on_end();
            x.audit().response.output_tokens
        })
        .collect()
}

#[test]
fn the_output_tokens_an_answer_reports_are_read_in_every_format_whole_and_streamed() {
    for (path, content_type, body, want) in USAGE_ANSWERS {
        // "Hello there" is 11 bytes: less than a token's worth of 16, so every report stands.
        assert_eq!(output_tokens(path, content_type, body), [*want; 3], "{path} {body}");
    }
}

#[test]
fn a_tiny_reported_count_is_raised_to_one_token_per_16_bytes_of_text() {
    let text = "x".repeat(320);
    // Whole: every string counts (1 + 15 + 9 + 320 + 4 = 349 bytes): 22 tokens, not 0.
    let whole = format!(
        r#"{{"id":"c","object":"chat.completion","choices":[{{"index":0,"message":{{"role":"assistant","content":"{text}"}},"finish_reason":"stop"}}],"usage":{{"completion_tokens":0}}}}"#
    );
    assert_eq!(output_tokens("/v1/chat/completions", "application/json", &whole), [Some(22); 3]);
    // Streamed: the running text counts (320 bytes in 5 deltas), not the ids each event repeats.
    let mut stream = String::new();
    for piece in text.as_bytes().chunks(64) {
        let piece = std::str::from_utf8(piece).unwrap();
        stream += &format!(
            "data: {{\"id\":\"chatcmpl-0123456789\",\"object\":\"chat.completion.chunk\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{piece}\"}}}}]}}\n\n"
        );
    }
    stream += "data: {\"choices\":[],\"usage\":{\"completion_tokens\":1}}\n\ndata: [DONE]\n\n";
    assert_eq!(output_tokens("/v1/chat/completions", "text/event-stream", &stream), [Some(20); 3]);
}

/// A caller under `cfg` at `address`, at `now_ms`, with the shared `store`.
fn limited(policies: &Rc<Policies>, store: &Shared, caller: &str, now_ms: u64) -> (Exchange, Step) {
    let mut x = Exchange::new(Rc::clone(policies));
    x.set_limits(Box::new(store.clone()), now_ms);
    let v = Verified { client_address: Some(caller), ..Verified::tls("TLSv1.3") };
    let step = x.on_request_head(
        &RequestHead { method: "POST", path: "/v1/chat/completions", ..Default::default() },
        &v,
        false,
    );
    (x, step)
}

fn retry_after(step: &Step) -> Option<&str> {
    let Then::Reply(r) = &step.then else { return None };
    r.headers.iter().find(|(k, _)| k == "retry-after").map(|(_, v)| v.as_str())
}

#[test]
fn output_is_charged_in_the_tokens_the_answer_reports_and_in_bytes_without_a_report() {
    let policies = Rc::new(held(r#"{"limits": {"output_per_minute": 100}}"#));
    let store = Shared::default();
    // 130 tokens reported: 30 over, so the next request waits until the 30 are back at 100 a
    // minute (18 s).
    let (mut x, _) = limited(&policies, &store, "10.0.0.1:1", 0);
    body(&mut x, Side::Request, &[PROMPT], &mut Delivered::default());
    let reported =
        CHAT.replace(r#""finish_reason":"stop"}]"#, r#""finish_reason":"stop"}],"usage":{"completion_tokens":130}"#);
    answer(&mut x, Some("application/json"), None, &[reported.as_bytes()]);
    x.on_end();
    assert_eq!(x.audit().response.output_tokens, Some(130));
    assert!(
        x.audit().to_json().contains(r#""response":{"output_tokens":130,"scanned":true"#),
        "{}",
        x.audit().to_json()
    );
    assert_eq!(retry_after(&limited(&policies, &store, "10.0.0.1:2", 0).1), Some("18"));
    assert_eq!(retry_after(&limited(&policies, &store, "10.0.0.1:2", 18_000).1), None);
    // No report: the answer's bytes as sent (CHAT redacted, 191 bytes): 91 over, 54.6 s.
    let (mut x, _) = limited(&policies, &store, "10.0.0.2:1", 0);
    body(&mut x, Side::Request, &[PROMPT], &mut Delivered::default());
    let d = answer(&mut x, Some("application/json"), None, &[CHAT.as_bytes()]);
    x.on_end();
    assert_eq!((x.audit().response.output_tokens, d.bytes.len()), (None, 191));
    assert_eq!(retry_after(&limited(&policies, &store, "10.0.0.2:2", 0).1), Some("55"));
}

#[test]
fn callers_that_share_a_slot_share_its_allowance_and_each_key_is_counted_once() {
    let policies =
        Rc::new(held(r#"{"limits": {"requests_per_minute": 2, "output_per_minute": 1000, "max_callers": 1}}"#));
    let store = Shared::default();
    // The first request creates the slot's two buckets; nobody else creates any.
    let (mut x, step) = limited(&policies, &store, "10.0.0.1:1", 0);
    assert_eq!((step.then, x.new_limit_keys()), (Then::Hold, 2));
    x.on_end();
    assert_eq!(x.new_limit_keys(), 2);
    let (x, step) = limited(&policies, &store, "10.0.0.2:1", 0);
    assert_eq!((step.then, x.new_limit_keys()), (Then::Hold, 0));
    // One slot for every caller: a third caller finds the allowance spent.
    let (x, step) = limited(&policies, &store, "10.0.0.3:1", 0);
    assert_eq!((retry_after(&step), x.new_limit_keys()), (Some("30"), 0));
    assert_eq!(store.0.borrow_mut().get("inferguard.rl.r.0.default").0.map(|v| v.len()), Some(16));
    let err = Policies::from_json(r#"{"limits": {"max_callers": 0}}"#).unwrap_err();
    assert_eq!(err.to_string(), "limits.max_callers: expected an integer from 1 to 262144");
    let err = Policies::from_json(
        r#"{"policies": [{"name": "p", "match": {"paths": ["/x"]}, "limits": {"max_callers": 262145}}]}"#,
    )
    .unwrap_err();
    assert_eq!(err.to_string(), "policies[0].limits.max_callers: expected an integer from 1 to 262144");
}

#[test]
fn the_verified_caller_is_set_for_later_filters_and_a_clients_own_header_never_survives() {
    let policies = Rc::new(held(""));
    let head = RequestHead { method: "GET", path: "/v1/models", ..Default::default() };
    let ident = |v: &Verified| {
        let mut x = Exchange::new(Rc::clone(&policies));
        let step = x.on_request_head(&head, v, true);
        step.headers.iter().find(|(k, _)| k == IDENTITY_HEADER).and_then(|(_, v)| v.clone())
    };
    let jwt = Verified {
        jwt: crate::policy::JwtFacts { sub: Some("alice\u{e9}\n".as_bytes()), ..Default::default() },
        ..Verified::tls("TLSv1.3")
    };
    assert_eq!(ident(&jwt).as_deref(), Some("jwt:alice%C3%A9%0A"));
    let anon = Verified { client_address: Some("10.1.2.3:4444"), ..Verified::tls("TLSv1.3") };
    assert_eq!(ident(&anon).as_deref(), Some("anonymous:10.1.2.3"));
    assert_eq!(ident(&Verified::tls("TLSv1.3")).as_deref(), Some("anonymous:"));
}

#[test]
fn a_value_the_normal_form_would_take_apart_refuses_the_request() {
    // `%2F%2F` becomes one `/` in the normal form: the connection string would no longer read as
    // one, so it could not be redacted where it is forwarded.
    let (x, d) = exchange(OPEN, "/v1/files/DATABASE_URL%3Dpostgres%3A%2F%2Fapp%3As3cretPw%40db.internal%3A5432/x", b"");
    let r = d.reply.expect("refused");
    assert_eq!(r.status, 400);
    assert!(r.body.contains("malformed_path"), "{}", r.body);
    assert_eq!(x.logged_path(), "-");
    // Sent whole in the query it is redacted in place.
    let (x, d) = exchange(OPEN, "/v1/files/x?db=postgres%3A%2F%2Fapp%3As3cretPw%40db.internal%3A5432", b"");
    assert!(d.reply.is_none());
    assert!(!x.logged_path().contains("s3cretPw"), "{}", x.logged_path());
}

#[test]
fn the_keyed_prompt_digest_is_an_hmac_of_the_body_as_received_and_absent_without_a_key() {
    // HMAC-SHA256("a deployment secret!", PROMPT), computed independently (Python's hmac).
    let (x, _) =
        exchange(r#"{"audit": {"prompt_digest": {"key": "a deployment secret!"}}}"#, "/v1/chat/completions", PROMPT);
    assert_eq!(
        x.audit().request.digest.as_deref(),
        Some("hmac-sha256:e80344dd4c6a077ea815c8976dd3b826a0a7573b6b933e25033541f3ea4bed87")
    );
    assert!(x.audit().to_json().contains(r#""request":{"digest":"hmac-sha256:e80344dd4c6a077ea815c8976dd3b826a0a7573b6b933e25033541f3ea4bed87","scanned":true}"#), "{}", x.audit().to_json());
    let (x, _) = exchange("", "/v1/chat/completions", PROMPT);
    assert_eq!(x.audit().request.digest, None);
    let err = Policies::from_json(r#"{"audit": {"prompt_digest": {"key": "short"}}}"#).unwrap_err();
    assert_eq!(err.to_string(), "audit.prompt_digest.key: must be at least 16 bytes, got 5");
    let err = Policies::from_json(r#"{"audit": {"prompt_digest": {"kee": "a deployment secret!"}}}"#).unwrap_err();
    assert!(err.to_string().starts_with("audit.prompt_digest.kee: unknown field `kee`"), "{err}");
}

#[test]
fn the_record_has_the_start_time_and_duration_from_the_clock_it_is_given() {
    let mut x = Exchange::new(Rc::new(held("")));
    x.set_start_time(1_796_308_918_654);
    x.on_request_head(
        &RequestHead { method: "GET", path: "/v1/models", ..Default::default() },
        &Verified::tls("TLSv1.3"),
        true,
    );
    let json = x.audit().to_json();
    assert!(json.starts_with(r#"{"schema":1,"start_time":"2026-12-03T14:41:58.654Z","decision""#), "{json}");
    assert!(!json.contains("duration_ms"), "{json}");
    x.on_log(&LogFacts {
        request_id: Some("0f3c2a9e-7b1d-4c55-9a0e-3d2f1b6c8e47"),
        now_ms: Some(1_796_308_919_021),
        ..Default::default()
    });
    let json = x.audit().to_json();
    assert!(
        json.starts_with(
            r#"{"schema":1,"request_id":"0f3c2a9e-7b1d-4c55-9a0e-3d2f1b6c8e47","start_time":"2026-12-03T14:41:58.654Z","duration_ms":367,"#
        ),
        "{json}"
    );
}

mod capture {
    use super::*;

    /// (request, response, truncated, withheld) of the record's `capture`, as JSON values.
    fn captured(x: &Exchange) -> serde_json::Value {
        let v: serde_json::Value = serde_json::from_str(&x.audit().to_json()).unwrap();
        v["capture"].clone()
    }

    const CAPTURE: &str = r#"{"audit":{"capture":{"max_bytes":4096}}}"#;

    #[test]
    fn is_off_by_default() {
        let (mut x, _) = exchange("", "/v1/chat/completions", PROMPT);
        answer(&mut x, Some("application/json"), None, &[CHAT.as_bytes()]);
        assert_eq!(x.audit().capture, None);
        assert!(!x.audit().to_json().contains("capture"));
    }

    #[test]
    fn keeps_exactly_what_was_forwarded_after_redaction() {
        let prompt = br#"{"model":"m","messages":[{"role":"user","content":"I am jane@x.io"}]}"#;
        let (mut x, sent) = exchange(CAPTURE, "/v1/chat/completions", prompt);
        let d = answer(&mut x, Some("application/json"), None, &[CHAT.as_bytes()]);
        let c = captured(&x);
        assert_eq!(c["request"].as_str().unwrap().as_bytes(), sent.bytes);
        assert_eq!(c["request"], r#"{"model":"m","messages":[{"role":"user","content":"I am [REDACTED:EMAIL]"}]}"#);
        assert_eq!(c["response"].as_str().unwrap(), text(&d));
        assert!(!c.to_string().contains("jane") && !c.to_string().contains("bob"), "{c}");
        assert_eq!(c.as_object().unwrap().len(), 2, "{c}");
        // Unchanged bodies are kept as they went out too.
        let (mut x, _) = exchange(CAPTURE, "/v1/chat/completions", PROMPT);
        answer(&mut x, Some("application/json"), None, &[br#"{"choices":[]}"#]);
        assert_eq!(
            captured(&x),
            serde_json::json!({"request": std::str::from_utf8(PROMPT).unwrap(), "response": r#"{"choices":[]}"#})
        );
    }

    #[test]
    fn a_stream_is_kept_as_its_forwarded_bytes_joined_and_cut_at_max_bytes_on_a_character() {
        let chunks: [&[u8]; 3] = [
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"caf\u{e9} a@b.i\"}}]}\n\n".as_bytes(),
            b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"o now\"}}]}\n\n",
            b"data: [DONE]\n\n",
        ];
        let (mut x, _) = exchange(CAPTURE, "/v1/chat/completions", PROMPT);
        let d = answer(&mut x, Some("text/event-stream"), None, &chunks);
        assert_eq!(captured(&x)["response"].as_str().unwrap(), text(&d));
        // `é` is two bytes: a cut through it leaves it out, and says the answer was truncated.
        let at = text(&d).find('\u{e9}').unwrap() + 1;
        let cfg = format!(r#"{{"audit":{{"capture":{{"max_bytes":{at}}}}}}}"#);
        let (mut x, _) = exchange(&cfg, "/v1/chat/completions", PROMPT);
        answer(&mut x, Some("text/event-stream"), None, &chunks);
        let c = captured(&x);
        assert_eq!(c["response"].as_str().unwrap(), &text(&d)[..at - 1]);
        assert_eq!(c["truncated"], serde_json::json!(["request", "response"]));
        assert_eq!(c["request"].as_str().unwrap().as_bytes(), &PROMPT[..at]);
    }

    #[test]
    fn reads_no_more_of_a_body_than_it_keeps() {
        let (mut x, _) = exchange(r#"{"audit":{"capture":{"max_bytes":100}}}"#, "/v1/chat/completions", PROMPT);
        x.on_response_head(&ResponseHead { status: 200, ..Default::default() }, false);
        let line = b"plain text answer, long enough to be sniffed as text and streamed as it comes\n";
        assert_eq!(line.len(), 78);
        let mut asked = Vec::new();
        for end in [false, false, true] {
            let step = x.on_body(Side::Response, line.len(), end, &mut |s, n| {
                asked.push((s, n));
                line[s..s + n].to_vec()
            });
            assert_eq!(step.then, Then::Forward);
        }
        // Each chunk is read whole once, to be scanned; the capture then asks only for the 22
        // bytes it still has room for (the first chunk's bytes came with the step), then nothing.
        assert_eq!(asked, [(0, 78), (0, 78), (0, 22), (0, 78)]);
        let c = captured(&x);
        assert_eq!(c["response"].as_str().unwrap().as_bytes(), [&line[..], &line[..22]].concat());
        assert_eq!(c["truncated"], serde_json::json!(["response"]));
    }

    #[test]
    fn a_stopped_unscanned_or_reported_direction_is_withheld() {
        // Blocked mid-stream: what went out before is dropped from the capture too.
        let cfg = r#"{"detect":{"detectors":{"email":{"action":"block"}}},"audit":{"capture":{}}}"#;
        let (mut x, _) = exchange(cfg, "/v1/chat/completions", PROMPT);
        let later: [&[u8]; 2] = [
            b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hello \"}}]}\n\n",
            b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"mail a@b.io now\"}}]}\n\n",
        ];
        answer(&mut x, Some("text/event-stream"), None, &later);
        assert_eq!(x.audit().reason.as_deref(), Some("rule:email"));
        assert_eq!(
            captured(&x),
            serde_json::json!({"request": std::str::from_utf8(PROMPT).unwrap(), "withheld": {"response": "stopped"}})
        );
        // A blocked prompt: nothing went upstream, and no answer came.
        let (x, d) = exchange(cfg, "/v1/chat/completions", br#"{"messages":[{"content":"a@b.io"}]}"#);
        assert_eq!(d.reply.map(|r| r.status), Some(403));
        assert_eq!(captured(&x), serde_json::json!({"withheld": {"request": "stopped"}}));
        // Binary passes unscanned.
        let png: Vec<u8> =
            b"\x89PNG\r\n\x1a\n".iter().copied().chain((0..2000u32).map(|i| (i * 97 % 251) as u8)).collect();
        let (mut x, _) = exchange(r#"{"admission":{"endpoints":["/"]},"audit":{"capture":{}}}"#, "/v1/images", PROMPT);
        answer(&mut x, Some("image/png"), None, &[&png[..100], &png[100..]]);
        assert_eq!(captured(&x)["withheld"], serde_json::json!({"response": "unscanned"}));
        assert!(captured(&x)["response"].is_null());
        // A reported value is left in place: it is not kept.
        let (mut x, _) =
            exchange(r#"{"response":{"mode":"report"},"audit":{"capture":{}}}"#, "/v1/chat/completions", PROMPT);
        let d = answer(&mut x, Some("application/json"), None, &[CHAT.as_bytes()]);
        assert!(text(&d).contains("jane.doe@corp.example"));
        assert_eq!(captured(&x)["withheld"], serde_json::json!({"response": "report"}));
        assert!(!x.audit().to_json().contains("jane"));
    }

    #[test]
    fn goes_to_the_capture_log_when_configured_so() {
        let cfg = r#"{"audit":{"capture":{"to":"capture_log"}}}"#;
        let (mut x, _) = exchange(cfg, "/v1/chat/completions", PROMPT);
        x.set_start_time(1_796_308_918_654);
        answer(&mut x, Some("application/json"), None, &[CHAT.as_bytes()]);
        x.on_log(&LogFacts { request_id: Some("0f3c2a9e-7b1d-4c55-9a0e-3d2f1b6c8e47"), ..Default::default() });
        assert!(!x.audit().to_json().contains("capture"));
        let line = x.audit().capture_log_line().unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["request_id"], "0f3c2a9e-7b1d-4c55-9a0e-3d2f1b6c8e47");
        assert_eq!(v["start_time"], "2026-12-03T14:41:58.654Z");
        assert_eq!(v["policy"], "default");
        assert_eq!(v["capture"]["request"].as_str().unwrap().as_bytes(), PROMPT);
        assert!(v["capture"]["response"].as_str().unwrap().contains("[REDACTED:EMAIL]"));
        assert!(
            line.starts_with(r#"{"schema":1,"request_id":"0f3c2a9e-7b1d-4c55-9a0e-3d2f1b6c8e47","start_time":"#),
            "{line}"
        );
        // Nothing captured, nothing written: the capture log gets no line.
        let (x, _) = exchange(cfg, "/v1/models", b"");
        assert_eq!(x.audit().capture_log_line(), None);
        // In the access log, the record carries it.
        let (mut x, _) = exchange(CAPTURE, "/v1/chat/completions", PROMPT);
        answer(&mut x, Some("application/json"), None, &[CHAT.as_bytes()]);
        assert_eq!(x.audit().capture_log_line(), None);
    }

    #[test]
    fn a_named_policy_inherits_or_replaces_the_top_levels_capture() {
        let cfg = r#"{"audit":{"capture":{"max_bytes":8}},
                      "policies":[{"name":"quiet","match":{"paths":["/v1/completions"]},"audit":{}}]}"#;
        let (mut x, _) = exchange(cfg, "/v1/chat/completions", PROMPT);
        answer(&mut x, Some("application/json"), None, &[CHAT.as_bytes()]);
        assert_eq!(
            captured(&x),
            serde_json::json!({"request": "{\"model\"", "response": "{\"id\":\"c", "truncated": ["request", "response"]})
        );
        let (mut x, _) = exchange(cfg, "/v1/completions", PROMPT);
        answer(&mut x, Some("application/json"), None, &[CHAT.as_bytes()]);
        assert_eq!(x.audit().policy, "quiet");
        assert_eq!(x.audit().capture, None);
        // A policy chosen by the body's model: its capture, not the default's (which applied
        // while the body was held).
        let cfg = r#"{"audit":{"capture":{"max_bytes":8}},
                      "policies":[{"name":"m","match":{"models":["m"]},"audit":{"capture":{"to":"capture_log"}}}]}"#;
        let mut x = Exchange::new(Rc::new(held(cfg)));
        let head = RequestHead { method: "POST", path: "/v1/chat/completions", ..Default::default() };
        x.on_request_head(&head, &Verified::tls("TLSv1.3"), false);
        body(&mut x, Side::Request, &[&PROMPT[..10], &PROMPT[10..]], &mut Delivered::default());
        answer(&mut x, Some("application/json"), None, &[CHAT.as_bytes()]);
        assert_eq!(x.audit().policy, "m");
        assert!(!x.audit().to_json().contains("capture"));
        let line: serde_json::Value = serde_json::from_str(&x.audit().capture_log_line().unwrap()).unwrap();
        assert_eq!(line["capture"]["request"].as_str().unwrap().as_bytes(), PROMPT);
    }
}

/// Several edits written as one whole map give what one call per edit would: edited names gone,
/// sets added once, the last edit of a name winning, everything else kept (duplicates included).
#[test]
fn edits_applied_to_a_whole_map_match_one_call_per_edit() {
    let map: Vec<(String, String)> =
        [(":status", "200"), ("server", "up"), ("set-cookie", "a"), ("set-cookie", "b"), ("vary", "x")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    let edits: Vec<HeaderEdit> = vec![
        ("server".into(), None),
        ("vary".into(), Some("Origin".into())),
        ("x-frame-options".into(), Some("DENY".into())),
        ("x-frame-options".into(), Some("SAMEORIGIN".into())),
        ("content-length".into(), None),
    ];
    assert_eq!(
        edited_headers(&map, &edits),
        [
            (":status", "200"),
            ("set-cookie", "a"),
            ("set-cookie", "b"),
            ("vary", "Origin"),
            ("x-frame-options", "SAMEORIGIN")
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Headers that cannot wait (no `hold_headers`: Istio's `WasmPlugin`).

#[test]
fn flow_sends_the_heads_at_once_without_a_length_and_still_reads_each_body_whole() {
    let (mut x, up) = exchange_under(
        flowing(""),
        "/v1/chat/completions",
        br#"{"model":"m","messages":[{"role":"user","content":"mail jane@x.io"}]}"#,
    );
    // The request head went on at once, its length removed; the body waited and went redacted.
    assert!(up.headers.contains(&("content-length".into(), None)), "{:?}", up.headers);
    assert!(up.headers.contains(&("accept-encoding".into(), None)));
    assert_eq!(
        String::from_utf8(up.bytes).unwrap(),
        r#"{"model":"m","messages":[{"role":"user","content":"mail [REDACTED:EMAIL]"}]}"#
    );
    let step = x.on_response_head(
        &ResponseHead { status: 200, content_type: Some("application/json"), ..Default::default() },
        false,
    );
    assert_eq!(step.then, Then::Forward);
    assert!(step.headers.contains(&("content-length".into(), None)), "{:?}", step.headers);
    assert!(step.headers.iter().any(|(h, _)| h == "x-content-type-options"), "security headers at the head");
    let (a, b) = CHAT.as_bytes().split_at(40);
    let mut d = Delivered::default();
    body(&mut x, Side::Response, &[a, b], &mut d);
    assert!(d.headers.is_empty(), "no edit after the head: {:?}", d.headers);
    assert_eq!(
        text(&d),
        CHAT.replace(r"jane.doe@corp.example or \u0062ob@x.io", "[REDACTED:EMAIL] or [REDACTED:EMAIL]")
    );
}

#[test]
fn flow_writes_a_refused_answer_as_its_error_body() {
    // Blocked by a finding, and unreadable: both after a 200 head went out.
    let blocked = r#"{"response":{"mode":"block"}}"#;
    for (cfg, answer_bytes, reason, want) in [
        (
            blocked,
            CHAT.as_bytes(),
            "rule:email",
            r#"{"error":{"message":"blocked by inferguard policy (rule email)","type":"invalid_request_error","param":null,"code":"content_blocked"}}"#,
        ),
        ("", &br#"{"choices":[{"message":{"content":"jane@x.io"}}]"#[..], "malformed_response", ""),
    ] {
        let (mut x, _) = exchange_under(flowing(cfg), "/v1/chat/completions", PROMPT);
        let d = answer(&mut x, Some("application/json"), None, &[answer_bytes, b""]);
        assert!(d.reply.is_none(), "no status can follow a head that went out");
        let got = text(&d);
        assert!(!got.contains("jane"), "{got}");
        if !want.is_empty() {
            assert_eq!(got, want);
        }
        let v: serde_json::Value = serde_json::from_str(&got).unwrap();
        assert!(v["error"]["message"].is_string(), "the API's error shape: {got}");
        assert_eq!((x.audit().decision, x.audit().reason.as_deref()), (Decision::Blocked, Some(reason)));
        // Nothing more passes.
        let step = x.on_body(Side::Response, 5, true, &mut |_, _| b"jane@".to_vec());
        assert_eq!(step.body.as_deref(), Some(&b""[..]));
    }
}

#[test]
fn flow_masks_the_target_with_every_policys_engine_while_the_policy_waits_for_the_model() {
    // The named policy (chosen by the model) detects a term the default does not.
    let cfg = r#"{"admission":{"endpoints":["/"]},
        "policies":[{"name":"big","match":{"models":["big-*"]},
                     "detect":{"dictionaries":[{"name":"project","terms":["bluebird"]}]}}]}"#;
    let policies = Rc::new(Policies::from_json(cfg).unwrap());
    let mut x = Exchange::new(Rc::clone(&policies));
    let step = x.on_request_head(
        &RequestHead { method: "POST", path: "/v1/chat/completions?q=bluebird&to=jane@x.io", ..Default::default() },
        &Verified::tls("TLSv1.3"),
        false,
    );
    assert_eq!(step.then, Then::Forward);
    let path = step.headers.iter().find(|(h, _)| h == ":path").and_then(|(_, v)| v.clone()).unwrap();
    assert!(!path.contains("bluebird") && !path.contains("jane"), "{path}");
    assert_eq!(x.logged_path(), path);
    let prompt = br#"{"model":"big-1","messages":[]}"#;
    let step = x.on_body(Side::Request, prompt.len(), true, &mut |s, n| prompt[s..s + n].to_vec());
    assert_eq!((step.then, step.headers), (Then::Forward, vec![]));
    assert_eq!(x.audit().policy, "big");
    assert_eq!(x.audit().decision, Decision::Redacted);
}

#[test]
fn flow_refuses_a_compressed_answer_too_large_to_inflate_even_when_oversize_passes() {
    let cfg = r#"{"response":{"max_body_bytes":1024,"on_oversize":"pass_unscanned"}}"#;
    let (mut x, _) = exchange_under(flowing(cfg), "/v1/chat/completions", PROMPT);
    let mut plain = vec![b' '; 5000];
    plain.extend_from_slice(CHAT.as_bytes());
    let mut gz = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
    gz.extend(miniz_oxide::deflate::compress_to_vec(&plain, 6));
    gz.extend_from_slice(&[0; 8]);
    let d = answer(&mut x, Some("application/json"), Some("gzip"), &[&gz]);
    assert!(d.headers.contains(&("content-encoding".into(), None)), "{:?}", d.headers);
    assert!(text(&d).contains("response_too_large"), "{}", text(&d));
    assert_eq!(x.audit().reason.as_deref(), Some("response_too_large"));
}
