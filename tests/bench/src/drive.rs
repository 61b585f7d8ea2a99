//! One exchange driven as Envoy drives it: each body's chunks go to `Exchange::on_body`, the
//! host buffer grows while the exchange holds and is replaced or forwarded when it says so.

use inferguard::exchange::{Exchange, RequestHead, ResponseHead, Side, Then};
use inferguard::policy::Verified;

/// Feeds chunks of one body (the last one ends it when `end`); returns the bytes forwarded (a
/// local reply counts as its body).
pub fn body<C: AsRef<[u8]>>(x: &mut Exchange, side: Side, chunks: &[C], end: bool) -> usize {
    let mut held: Vec<u8> = Vec::new();
    let mut sent = 0;
    for (i, c) in chunks.iter().enumerate() {
        let c = c.as_ref();
        let end = end && i + 1 == chunks.len();
        // The host's buffer: this chunk, after what the exchange held (copied only then, as
        // Envoy's buffer grows; the read below is the host's one copy into the VM).
        let step = if held.is_empty() {
            x.on_body(side, c.len(), end, &mut |s, n| c[s..s + n].to_vec())
        } else {
            held.extend_from_slice(c);
            let snapshot = &held;
            x.on_body(side, snapshot.len(), end, &mut |s, n| snapshot[s..s + n].to_vec())
        };
        let forwarded = if held.is_empty() { c.len() } else { held.len() };
        match step.then {
            Then::Forward => {
                sent += step.body.map_or(forwarded, |b| b.len());
                held.clear();
            }
            Then::Hold => {
                if held.is_empty() {
                    held.extend_from_slice(c);
                }
            }
            Then::Reply(r) => return sent + r.body.len(),
        }
    }
    sent
}

/// Request head and body, then the response head; returns the exchange ready for the answer.
pub fn start(x: &mut Exchange, request: &[u8], stream_answer: bool) {
    let _ = x.on_request_head(
        &RequestHead { method: "POST", path: "/v1/chat/completions", ..Default::default() },
        &Verified::tls("TLSv1.3"),
        false,
    );
    body(x, Side::Request, &[request], true);
    let ct = if stream_answer { "text/event-stream" } else { "application/json" };
    let _ = x.on_response_head(
        &ResponseHead { status: 200, content_type: Some(ct), content_encoding: None, ..Default::default() },
        false,
    );
}
