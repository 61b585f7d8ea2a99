//! The filter's core without Envoy: the same exchanges the Envoy benchmark sends, driven through
//! `Exchange` directly. Built natively and for `wasm32-wasip1` (run by Node.js, whose V8 is the
//! engine Envoy embeds), so the two figures show what the wasm runtime costs by itself and what
//! is left to Envoy's buffering and host calls.
//!
//! Prints one line per scenario: microseconds per exchange (median of timed batches) and MB/s of
//! answer scanned. `--json` prints the same figures as one JSON object.

mod answers;
mod drive;

use std::rc::Rc;
use std::time::{Duration, Instant};

use inferguard::exchange::{Exchange, Side};
use inferguard::policy::Policies;

/// One whole exchange: request head and body, response head, and the response body in chunks,
/// driven as Envoy drives it. Returns the bytes the client would receive, so nothing is
/// optimised out.
fn exchange(policy: &Rc<Policies>, request: &[u8], content_type: &'static str, response: &[Vec<u8>]) -> usize {
    let mut x = Exchange::new(Rc::clone(policy));
    drive::start(&mut x, request, content_type != "application/json");
    drive::body(&mut x, Side::Response, response, true) + x.audit().to_json().len()
}

/// Median time of one call of `f`, over batches run for about `budget`. With `BENCH_ITERS=N`,
/// exactly N calls and their mean (for instruction counts under callgrind).
fn time(budget: Duration, f: &mut dyn FnMut() -> usize) -> Duration {
    let start = Instant::now();
    if let Some(n) = std::env::var("BENCH_ITERS").ok().and_then(|v| v.parse::<u32>().ok()) {
        let sink: usize = (0..n).map(|_| f()).sum();
        std::hint::black_box(sink);
        return start.elapsed() / n.max(1);
    }
    let mut sink = f();
    let once = start.elapsed().max(Duration::from_nanos(1));
    let per_batch = ((budget.as_secs_f64() / 30.0 / once.as_secs_f64()) as usize).clamp(1, 100_000);
    let mut samples = Vec::new();
    while start.elapsed() < budget || samples.len() < 3 {
        let t = Instant::now();
        for _ in 0..per_batch {
            sink = sink.wrapping_add(f());
        }
        samples.push(t.elapsed() / per_batch as u32);
    }
    std::hint::black_box(sink);
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    let json_out = std::env::args().any(|a| a == "--json");
    let budget = Duration::from_secs_f64(
        std::env::var("BENCH_SECONDS").ok().and_then(|v| v.parse().ok()).unwrap_or(1.0f64).max(0.05),
    );
    let policy = Rc::new(Policies::from_json(&std::env::var("BENCH_POLICY").unwrap_or_default()).expect("policy"));
    let answers = answers::Answers::new();
    let small_request = answers::chat_request("Summarise the incident.", false);
    let prompt_4k = answers::chat_request(&answers::prose(4096), false);
    let text = answers::prose(1 << 20);

    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let wanted = |name: &str| only.is_empty() || only.split(',').any(|o| name.contains(o));
    let mut rows: Vec<(&str, Duration, usize)> = Vec::new();
    let mut run = |name: &'static str, bytes: usize, f: &mut dyn FnMut() -> usize| {
        if wanted(name) {
            rows.push((name, time(budget, f), bytes));
        }
    };
    run("engine, 1 MB of prose", text.len(), &mut || policy.default_policy().engine.redact(&text).text.len());
    for (name, body) in [
        ("1 KB completion", &answers.json_1k),
        ("64 KB completion", &answers.json_64k),
        ("1 MB completion", &answers.json_1m),
    ] {
        let response = vec![body.clone()];
        run(name, body.len(), &mut || exchange(&policy, &small_request, "application/json", &response));
    }
    run("4 KB prompt scanned", prompt_4k.len(), &mut || {
        exchange(&policy, &prompt_4k, "application/json", std::slice::from_ref(&answers.small))
    });
    let sse_request = answers::chat_request("Summarise.", true);
    run("500-token SSE", answers.sse_events.iter().map(Vec::len).sum(), &mut || {
        exchange(&policy, &sse_request, "text/event-stream", &answers.sse_events)
    });

    let target = if cfg!(target_arch = "wasm32") { "wasm32" } else { "native" };
    if json_out {
        let obj: serde_json::Map<String, serde_json::Value> = rows
            .iter()
            .map(|(name, t, bytes)| {
                let us = t.as_secs_f64() * 1e6;
                (name.to_string(), serde_json::json!({"us": us, "mb_s": *bytes as f64 / us}))
            })
            .collect();
        println!("{}", serde_json::json!({ "target": target, "scenarios": obj }));
        return;
    }
    for (name, t, bytes) in rows {
        let us = t.as_secs_f64() * 1e6;
        println!("{target:<7} {name:<24} {us:>10.1} us {:>8.0} MB/s", bytes as f64 / us);
    }
}
