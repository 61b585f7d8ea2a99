//! One exchange driven as Envoy drives it: each body's chunks go to `Exchange::on_body`, the
//! host buffer grows while the exchange holds and is replaced or forwarded when it says so.

use inferguard::exchange::{Exchange, RequestHead, ResponseHead, Side, Then};

/// Feeds chunks of one body (the last one ends it when `end`); returns the bytes forwarded (a
/// local reply counts as its body).
pub fn body(x: &mut Exchange, side: Side, chunks: &[Vec<u8>], end: bool) -> usize {
    let mut held: Vec<u8> = Vec::new();
    let mut sent = 0;
    for (i, c) in chunks.iter().enumerate() {
        held.extend_from_slice(c);
        let end = end && i + 1 == chunks.len();
        let step = {
            let snapshot = &held;
            x.on_body(side, snapshot.len(), end, &mut |s, n| snapshot[s..s + n].to_vec())
        };
        if let Some(b) = step.body {
            held = b;
        }
        match step.then {
            Then::Forward => {
                sent += held.len();
                held.clear();
            }
            Then::Hold => {}
            Then::Reply(r) => return sent + r.body.len(),
        }
    }
    sent
}

/// Request head and body, then the response head; returns the exchange ready for the answer.
pub fn start(x: &mut Exchange, request: &[u8], stream_answer: bool) {
    let _ = x.on_request_head(&RequestHead { method: "POST", path: "/v1/chat/completions", ..Default::default() }, false);
    body(x, Side::Request, &[request.to_vec()], true);
    let ct = if stream_answer { "text/event-stream" } else { "application/json" };
    let _ = x.on_response_head(&ResponseHead { status: 200, content_type: Some(ct), content_encoding: None }, false);
}
