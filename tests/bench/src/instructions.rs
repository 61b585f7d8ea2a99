//! `make bench-instructions`: the instructions Envoy executes per request, counted by callgrind.
//!
//! Wall-clock figures on a shared 2-core machine move by 10% or more between identical runs, so a
//! change of a few percent cannot be seen in them. Under callgrind the count is nearly exact: each
//! Envoy (bare, the no-op filter, inferguard, and a baseline build if given) runs under valgrind,
//! is warmed up, has its counters zeroed, serves a fixed number of requests on one keep-alive
//! connection, and is dumped. The count covers the whole process: TLS, HTTP, V8 and the filter.
//! Slow (valgrind runs Envoy about 50 times slower) but steady: run it to compare builds.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::{client, Envoy};

/// One scenario: its name, the stand-in's answer key, the request body, and how many requests
/// are counted (fewer for large answers, which take long under valgrind).
pub struct Scenario {
    pub name: &'static str,
    pub key: &'static str,
    pub body: Vec<u8>,
    pub requests: usize,
}

/// Warm-up requests before counting: V8 compiles the filter's hot functions in the background
/// (tier-up); counting after that measures the steady state.
const WARM_UP: usize = 40;

/// Instructions per request of `envoy` for each scenario.
pub fn count(envoy: &Envoy, tls: &Arc<rustls::ClientConfig>, scenarios: &[Scenario], dir: &str) -> Vec<f64> {
    scenarios
        .iter()
        .map(|s| {
            let mut c = client::Conn::open(tls, envoy.port).expect("connect");
            let mut send = |n: usize| {
                for _ in 0..n {
                    let t = c.post("/v1/chat/completions", &[("x-bench", s.key)], &s.body).expect("request");
                    assert!(t.status == 200 && t.body_len > 0, "{}: {} on {}", envoy.name, t.status, s.name);
                }
            };
            send(WARM_UP);
            control(envoy, "-z");
            send(s.requests);
            let total = dump(envoy, dir);
            total as f64 / s.requests as f64
        })
        .collect()
}

fn control(envoy: &Envoy, arg: &str) {
    let ok = Command::new("callgrind_control")
        .args([arg, &envoy.child.id().to_string()])
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "callgrind_control {arg} failed for {}", envoy.name);
}

/// Dumps the counters and reads the total from the newest dump file.
fn dump(envoy: &Envoy, dir: &str) -> u64 {
    let prefix = format!("cg-{}.{}.", envoy.name, envoy.child.id());
    let before = dumps(dir, &prefix).len();
    control(envoy, "-d");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let files = dumps(dir, &prefix);
        if files.len() > before {
            // The newest dump; wait until callgrind finished writing it (its totals line).
            let text = std::fs::read_to_string(files.last().expect("dump")).unwrap_or_default();
            if let Some(n) = text
                .lines()
                .find_map(|l| l.strip_prefix("totals: ").or_else(|| l.strip_prefix("summary: ")))
                .and_then(|v| v.trim().parse().ok())
            {
                return n;
            }
        }
        assert!(Instant::now() < deadline, "no callgrind dump for {}", envoy.name);
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Dump files of one Envoy, oldest first (callgrind numbers them `.1`, `.2`, ...).
fn dumps(dir: &str, prefix: &str) -> Vec<std::path::PathBuf> {
    let mut files: Vec<(u32, std::path::PathBuf)> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let n = name.strip_prefix(prefix)?.parse().ok()?;
                    Some((n, e.path()))
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files.into_iter().map(|(_, p)| p).collect()
}
