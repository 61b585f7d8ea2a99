//! Shared by the engine's test suites.

use inferguard::detect::{End, Engine, Finding};

#[allow(dead_code)]
/// Feeds `text` to [`Engine::scan`] the way a stream layer does: in chunks whose ends
/// `next_end(fed)` chooses (moved forward to char boundaries), releasing what the engine settles
/// and keeping only `max_left_context` bytes of released text. Returns the rendered output and
/// the findings in offsets of the whole text, checking the scan contract at every step.
pub fn stream(
    engine: &Engine,
    text: &str,
    mut next_end: impl FnMut(usize) -> usize,
) -> (String, Vec<(String, usize, usize)>) {
    let (mut buf, mut out, mut found) = (String::new(), String::new(), Vec::new());
    let (mut base, mut from, mut fed) = (0usize, 0usize, 0usize);
    loop {
        let mut next = next_end(fed).clamp(fed, text.len());
        while !text.is_char_boundary(next) {
            next += 1;
        }
        buf.push_str(&text[fed..next]);
        fed = next;
        let end = if fed == text.len() { End::Final } else { End::More };
        let scan = engine.scan(&buf, from, end);
        assert!(scan.settled >= from && scan.settled <= buf.len() && buf.is_char_boundary(scan.settled));
        let shifted: Vec<Finding> =
            scan.findings.iter().map(|f| Finding { start: f.start - from, end: f.end - from, ..f.clone() }).collect();
        engine.render(&buf[from..scan.settled], &shifted, &mut out);
        found.extend(scan.findings.iter().map(|f| (f.detector.to_string(), base + f.start, base + f.end)));
        from = scan.settled;
        let mut cut = from.saturating_sub(engine.max_left_context());
        while !buf.is_char_boundary(cut) {
            cut -= 1;
        }
        buf.drain(..cut);
        base += cut;
        from -= cut;
        if end == End::Final {
            return (out, found);
        }
    }
}

/// What Envoy would deliver for one body driven through an [`inferguard::exchange::Exchange`].
#[allow(dead_code)]
#[derive(Debug, Default)]
pub struct Delivered {
    /// The bytes forwarded, in order.
    pub bytes: Vec<u8>,
    /// The local reply sent instead, if any.
    pub reply: Option<inferguard::exchange::LocalReply>,
    /// Header edits asked for.
    pub headers: Vec<inferguard::policy::browser::HeaderEdit>,
}

/// Feeds `chunks` of one body the way Envoy does: the host buffer grows while the exchange
/// holds, and is replaced or forwarded when it says so. `after_forward` sees everything
/// forwarded so far, after each forward.
#[allow(dead_code)]
pub fn drive_body(
    x: &mut inferguard::exchange::Exchange,
    side: inferguard::exchange::Side,
    chunks: &[&[u8]],
    d: &mut Delivered,
    mut after_forward: impl FnMut(&[u8]),
) {
    use inferguard::exchange::Then;
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
            Then::Forward => {
                d.bytes.append(&mut held);
                after_forward(&d.bytes);
            }
            Then::Hold => {}
            Then::Reply(r) => d.reply = Some(r),
        }
    }
}

/// Streamed, `text` gives exactly what redacting it whole gave (`whole`): split at every character
/// boundary, and one byte at a time.
#[allow(dead_code)]
pub fn assert_streams_as_whole(engine: &Engine, name: &str, text: &str, whole: &inferguard::detect::Redaction) {
    let want = whole.text.as_str();
    let want_found: Vec<(String, usize, usize)> =
        whole.findings.iter().map(|f| (f.detector.to_string(), f.start, f.end)).collect();
    for p in (0..=text.len()).filter(|&p| text.is_char_boundary(p)) {
        let (out, found) = stream(engine, text, |fed| if fed < p { p } else { text.len() });
        assert_eq!(out, want, "{name}: split at {p}");
        assert_eq!(found, want_found, "{name}: split at {p}");
    }
    let (out, found) = stream(engine, text, |fed| fed + 1);
    assert_eq!((out.as_str(), &found), (want, &want_found), "{name}: one byte at a time");
}
