//! `cargo bench --bench engine`: throughput of the detection engine on realistic LLM answers.
//!
//! The corpus is generated here, deterministically: answers made of prose, code blocks, markdown
//! tables and lists, with a few percent of sensitive values planted in them. Before timing
//! anything, the benchmark checks that the engine finds exactly the planted values (per
//! detector). It then prints one line per figure: the build time of the catalog, MB/s for the
//! default catalog, the same for two baselines run on the same documents (the `regex` crate
//! running an equivalent catalog as one alternation, and a `memchr` pass, the floor no scanner
//! beats), the catalog with every rule gitleaks' default configuration carries
//! (`tests/gitleaks`; `INFERGUARD_BENCH_RULES=1` lists the costliest of them), and pathological
//! inputs beside the normal one to show that scanning stays linear.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use inferguard::detect::{DetectConfig, Engine};
use inferguard::policy::Config;

/// A small deterministic PRNG (xorshift64*), so the corpus is the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len())]
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    fn alnum(&mut self, n: usize) -> String {
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        (0..n).map(|_| A[self.below(A.len())] as char).collect()
    }
    fn digits(&mut self, n: usize) -> String {
        (0..n).map(|_| char::from(b'0' + self.below(10) as u8)).collect()
    }
}

const WORDS: &[&str] = &[
    "the",
    "a",
    "to",
    "of",
    "and",
    "in",
    "is",
    "that",
    "for",
    "it",
    "with",
    "as",
    "on",
    "this",
    "be",
    "you",
    "can",
    "are",
    "by",
    "or",
    "an",
    "from",
    "your",
    "will",
    "if",
    "not",
    "use",
    "we",
    "which",
    "function",
    "value",
    "request",
    "response",
    "model",
    "data",
    "server",
    "client",
    "example",
    "returns",
    "configure",
    "following",
    "step",
    "should",
    "error",
    "handle",
    "string",
    "list",
    "each",
    "when",
    "then",
    "output",
    "input",
    "file",
    "first",
    "also",
    "make",
    "sure",
    "more",
    "about",
    "these",
    "other",
    "using",
    "method",
    "create",
    "call",
    "new",
    "into",
    "only",
    "time",
    "because",
    "however",
    "result",
    "performance",
    "memory",
    "cache",
    "thread",
    "async",
    "query",
    "table",
    "index",
    "user",
    "account",
    "service",
    "deploy",
    "cluster",
    "network",
    "latency",
    "simple",
    "approach",
    "better",
    "case",
    "important",
    "note",
    "explain",
    "consider",
    "option",
    "default",
    "setting",
    "version",
    "update",
    "release",
    "support",
    "team",
    "project",
];

/// Sensitive values, each in a context where exactly it is found, by detector name.
fn plant(rng: &mut Rng, out: &mut String, planted: &mut BTreeMap<&'static str, usize>) {
    let first = rng.pick(&["jane", "john", "maria", "wei", "olga", "sam", "priya", "li"]);
    let last = rng.pick(&["doe", "smith", "garcia", "chen", "novak", "lee", "patel", "kim"]);
    let (det, text): (&'static str, String) = match rng.below(14) {
        0 => (
            "email",
            format!(
                "You can reach {first}.{last}@{} for details.",
                rng.pick(&["example.com", "corp.example.org", "mail.example.net"])
            ),
        ),
        1 => ("credit_card", format!("The card on file is {}.", card(rng))),
        2 => ("us_ssn", format!("SSN: {}", ssn(rng))),
        3 => ("phone", format!("Call ({}) 555-{} during office hours.", 200 + rng.below(700), 1000 + rng.below(9000))),
        4 => {
            ("ipv4", format!("The host at 10.{}.{}.{} responded.", rng.below(256), rng.below(256), 1 + rng.below(254)))
        }
        5 => ("iban", format!("Transfer to {} by Friday.", iban(rng))),
        6 => ("aws_access_key_id", format!("aws_access_key_id = AKIA{}", rng.alnum(16).to_ascii_uppercase())),
        7 => ("github_token", format!("export GH={}ghp_{}", "", rng.alnum(36))),
        8 => ("openai_api_key", format!("client = OpenAI(key=\"sk-proj-{}9\")", rng.alnum(40))),
        9 => ("jwt", format!("token {}", jwt(rng))),
        10 => ("password_assignment", format!("DB_PASSWORD=Pw{}x", rng.alnum(10))),
        11 => ("connection_string", format!("DATABASE_URL=postgres://app:{}@db.internal:5432/app", rng.alnum(12))),
        12 => ("ipv6", format!("Listen on 2001:db8:{:x}::{:x} only.", rng.below(65535), 1 + rng.below(65534))),
        _ => ("slack_token", format!("SLACK=xoxb-{}-{}-{}", rng.digits(12), rng.digits(13), rng.alnum(24))),
    };
    *planted.entry(det).or_default() += 1;
    out.push_str(&text);
}

fn luhn_complete(prefix: &str, len: usize, rng: &mut Rng) -> String {
    let mut d: Vec<u8> = prefix.bytes().map(|b| b - b'0').collect();
    while d.len() < len - 1 {
        d.push(rng.below(10) as u8);
    }
    let mut sum = 0u32;
    for (i, &x) in d.iter().rev().enumerate() {
        let mut v = u32::from(x);
        if i % 2 == 0 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    d.push(((10 - sum % 10) % 10) as u8);
    d.iter().map(|&x| char::from(b'0' + x)).collect()
}

fn card(rng: &mut Rng) -> String {
    let n = luhn_complete(rng.pick(&["4", "51", "55", "37"]), 16, rng);
    if n.starts_with("37") {
        return luhn_complete("37", 15, rng);
    }
    if rng.chance(50) {
        format!("{} {} {} {}", &n[..4], &n[4..8], &n[8..12], &n[12..])
    } else {
        n
    }
}

fn ssn(rng: &mut Rng) -> String {
    format!("{:03}-{:02}-{:04}", 1 + rng.below(665), 1 + rng.below(99), 1 + rng.below(9999))
}

fn iban(rng: &mut Rng) -> String {
    let bban = rng.digits(18);
    // Check digits: 98 - (BBAN + "DE00" as digits) mod 97.
    let mut rem = 0u64;
    for c in bban.bytes().chain(*b"131400") {
        rem = (rem * 10 + u64::from(c - b'0')) % 97;
    }
    format!("DE{:02}{bban}", 98 - rem)
}

fn jwt(rng: &mut Rng) -> String {
    format!("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiI{}In0.{}", rng.alnum(12), rng.alnum(43))
}

fn sentence(rng: &mut Rng, out: &mut String) {
    let n = 6 + rng.below(14);
    for i in 0..n {
        let w = rng.pick(WORDS);
        if i == 0 {
            let mut c = w.chars();
            if let Some(f) = c.next() {
                out.push(f.to_ascii_uppercase());
                out.push_str(c.as_str());
            }
        } else {
            out.push(' ');
            match rng.below(40) {
                0 => out.push_str(&format!("{}", rng.below(100))),
                1 => out.push_str(&format!("v{}.{}.{}", rng.below(5), rng.below(20), rng.below(10))),
                2 => out.push_str("“quoted”"),
                3 => out.push_str(&format!("{}%", rng.below(100))),
                4 => out.push_str("`config`"),
                _ => out.push_str(w),
            }
        }
        if i + 1 < n && rng.chance(8) {
            out.push_str(rng.pick(&[",", " —", ";", ":"]));
        }
    }
    out.push_str(rng.pick(&[". ", ". ", ". ", "? ", "! "]));
}

fn paragraph(rng: &mut Rng, out: &mut String, planted: &mut BTreeMap<&'static str, usize>) {
    for _ in 0..3 + rng.below(5) {
        if rng.chance(6) {
            plant(rng, out, planted);
            out.push(' ');
        } else {
            sentence(rng, out);
        }
    }
    out.push_str("\n\n");
}

fn code(rng: &mut Rng, out: &mut String, planted: &mut BTreeMap<&'static str, usize>) {
    out.push_str("```python\n");
    for _ in 0..4 + rng.below(10) {
        match rng.below(8) {
            0 => out.push_str(&format!("def {}_{}(x, y={}):\n", rng.pick(WORDS), rng.pick(WORDS), rng.below(10))),
            1 => out.push_str(&format!(
                "    result = client.{}(\"{}\", timeout={})\n",
                rng.pick(WORDS),
                rng.pick(WORDS),
                rng.below(60)
            )),
            2 => out.push_str(&format!(
                "    for i in range({}):\n        total += i * {}\n",
                rng.below(1000),
                rng.below(9)
            )),
            3 => {
                out.push_str(&format!("    # {} the {} before {}\n", rng.pick(WORDS), rng.pick(WORDS), rng.pick(WORDS)))
            }
            4 => out.push_str(&format!("    logger.info(\"{} %s\", {})\n", rng.pick(WORDS), rng.pick(WORDS))),
            5 if rng.chance(25) => {
                out.push_str("    ");
                plant(rng, out, planted);
                out.push('\n');
            }
            _ => out.push_str(&format!("    return {{\"{}\": {}, \"ok\": True}}\n", rng.pick(WORDS), rng.below(500))),
        }
    }
    out.push_str("```\n\n");
}

fn table(rng: &mut Rng, out: &mut String) {
    out.push_str("| Name | Region | Requests | Latency (ms) | Updated |\n|------|--------|----------|--------------|---------|\n");
    for _ in 0..3 + rng.below(6) {
        out.push_str(&format!(
            "| {} | {} | {} | {}.{} | 2024-{:02}-{:02} |\n",
            rng.pick(WORDS),
            rng.pick(&["us-east-1", "eu-west-2", "ap-south-1"]),
            rng.below(100_000),
            rng.below(900),
            rng.below(10),
            1 + rng.below(12),
            1 + rng.below(28)
        ));
    }
    out.push('\n');
}

/// One generated answer.
fn document(rng: &mut Rng, planted: &mut BTreeMap<&'static str, usize>) -> String {
    let mut d = String::new();
    for _ in 0..2 + rng.below(6) {
        match rng.below(10) {
            0..=5 => paragraph(rng, &mut d, planted),
            6 | 7 => code(rng, &mut d, planted),
            8 => table(rng, &mut d),
            _ => {
                for k in 1..=3 + rng.below(4) {
                    d.push_str(&format!("{k}. "));
                    sentence(rng, &mut d);
                    d.push('\n');
                }
                d.push('\n');
            }
        }
    }
    d
}

/// The regex-crate baseline: the same catalog as one alternation, without validators.
const REGEX_CATALOG: &[&str] = &[
    r"[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+",
    r"\+?\(?\d{1,4}\)?[ .-]\d{2,4}[ .-]\d{3,4}(?:[ .-]\d{2,4})?",
    r"\b(?:\d[ -]?){12,18}\d\b",
    r"\b\d{3}[- ]\d{2}[- ]\d{4}\b",
    r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b",
    r"\b(?:\d{1,3}\.){3}\d{1,3}\b",
    r"\b(?:[0-9A-Fa-f]{1,4}:){2,7}:?[0-9A-Fa-f]{0,4}\b",
    r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|ABIA|ACCA)[A-Z0-9]{16}\b",
    r"(?i:aws_?secret_?access_?key)\s*[:=]\s*[A-Za-z0-9/+=]{40}",
    r"\b(?:gh[pousr]_[A-Za-z0-9]{30,255}|github_pat_[A-Za-z0-9_]{22,255})",
    r"\bgl(?:pat|dt|rt|ptt)-[A-Za-z0-9_-]{20,}",
    r"\bxox[bpares]-[A-Za-z0-9-]{10,}",
    r"https://hooks\.slack\.com/services/[A-Za-z0-9/_-]+",
    r"\bsk-(?:ant-)?[A-Za-z0-9_-]{20,}",
    r"\b[rs]k_(?:live|test)_[A-Za-z0-9]{16,}",
    r"\bAIza[0-9A-Za-z_-]{35}",
    r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*",
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----",
    r"(?i:bearer)\s+[A-Za-z0-9._~+/=-]{8,}",
    r"(?i:password|passwd|secret|api_key|token)\s*[:=]\s*\S+",
    r"[A-Za-z][A-Za-z0-9+.-]*://[^\s:@/]+:[^\s@/]+@",
];

/// ASCII `\\b` and `\\d`: the regex crate's fastest settings for these patterns (Unicode word
/// boundaries make its DFA give up on non-ASCII text).
fn ascii_classes(p: &str) -> String {
    p.replace(r"\b", r"(?-u:\b)").replace(r"\d", "[0-9]")
}

fn mbps(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e6
}

/// The best of `runs` timings of `f` (after one warm-up run): on a shared machine the fastest
/// run is the one least disturbed by other work.
fn time(runs: usize, mut f: impl FnMut() -> usize) -> (Duration, usize) {
    let mut best = Duration::MAX;
    let mut count = black_box(f());
    for _ in 0..runs {
        let t = Instant::now();
        count = black_box(f());
        best = best.min(t.elapsed());
    }
    (best, count)
}

fn main() {
    // The corpus.
    let mut rng = Rng(0x1d_5eed_cafe);
    let mut planted = BTreeMap::new();
    let mut docs = Vec::new();
    let mut total = 0;
    while total < 8 << 20 {
        let d = document(&mut rng, &mut planted);
        total += d.len();
        docs.push(d);
    }
    let planted_total: usize = planted.values().sum();
    let engine = Engine::new(&DetectConfig::default()).expect("default catalog");

    // Verify the expected counts before timing anything.
    let mut found: BTreeMap<String, usize> = BTreeMap::new();
    let mut sensitive_bytes = 0;
    for d in &docs {
        for f in engine.find_all(d) {
            *found.entry(f.detector.to_string()).or_default() += 1;
            sensitive_bytes += f.end - f.start;
        }
    }
    let want: BTreeMap<String, usize> = planted.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    assert_eq!(found, want, "the engine must find exactly the planted values");
    println!(
        "corpus: {:.1} MiB in {} LLM answers (prose, code, tables, lists), {planted_total} planted values in {} kinds, {:.1}% of bytes sensitive: all found, nothing else",
        total as f64 / (1 << 20) as f64,
        docs.len(),
        planted.len(),
        100.0 * sensitive_bytes as f64 / total as f64
    );

    // `INFERGUARD_BENCH_PROFILE=N`: only the engine on the corpus, N + 1 times (60 unless N is a
    // number), long enough for a profiler; `=0` is one pass, for callgrind.
    if let Some(runs) = std::env::var_os("INFERGUARD_BENCH_PROFILE") {
        let runs = runs.to_str().and_then(|r| r.parse().ok()).unwrap_or(60);
        let (d, n) = time(runs, || docs.iter().map(|doc| engine.find_all(doc).len()).sum());
        println!("profile run: {:.0} MB/s ({n} findings)", mbps(total, d));
        let mut counts = BTreeMap::new();
        for d in &docs {
            let b = d.as_bytes();
            for (i, &c) in b.iter().enumerate() {
                let k = match c {
                    b'0'..=b'9' if i == 0 || !b[i - 1].is_ascii_digit() => "digit group",
                    b'0'..=b'9' => "digit",
                    b'@' | b':' | b'=' | b'_' | b'-' | b'A' | b'J' | b'B' => "punct/letter anchor",
                    0xC2 | 0xE1 | 0xE2 | 0xE3 | 0xEF => "high lead",
                    _ => continue,
                };
                *counts.entry(k).or_insert(0usize) += 1;
            }
        }
        for (k, v) in counts {
            println!("  {k}: {:.2}% of bytes", 100.0 * v as f64 / total as f64);
        }
        for c in [b'@', b':', b'=', b'_', b'-', b'A', b'J', b'B'] {
            let v: usize = docs.iter().map(|d| d.bytes().filter(|&x| x == c).count()).sum();
            println!("  {:?}: {:.2}%", c as char, 100.0 * v as f64 / total as f64);
        }
        return;
    }

    // Building the catalog, as Envoy does at every configuration.
    let (d, _) = time(201, || Engine::new(&DetectConfig::default()).map(|e| e.max_left_context()).unwrap_or(0));
    println!("build: default catalog (22 detectors): {:.1} µs", d.as_secs_f64() * 1e6);
    let big = {
        let terms: Vec<String> = (0..1000).map(|i| format!("\"customer{i:04} {}\"", WORDS[i % WORDS.len()])).collect();
        format!(
            r#"{{"detect": {{"rules": [{{"name": "ticket", "pattern": "\\bINC-[0-9]{{6}}\\b"}}, {{"name": "emp", "pattern": "(?i)\\bemp-[0-9]{{5}}\\b"}}], "dictionaries": [{{"name": "customers", "terms": [{}]}}]}}}}"#,
            terms.join(",")
        )
    };
    let big_cfg = Config::parse(&big).expect("big config");
    let (d, _) = time(21, || Engine::new(&big_cfg.default.detect).map(|e| e.max_left_context()).unwrap_or(0));
    println!("build: default catalog + 2 rules + 1000-term dictionary: {:.2} ms", d.as_secs_f64() * 1e3);

    // Throughput, per document as the filter calls it.
    let runs = 11;
    let (d, n) = time(runs, || docs.iter().map(|doc| engine.find_all(doc).len()).sum());
    assert_eq!(n, planted_total);
    let ours = mbps(total, d);
    println!("inferguard, default catalog: {ours:.0} MB/s ({n} findings, verified)");
    let (d, n) = time(runs, || docs.iter().map(|doc| engine.redact(doc).text.len()).sum());
    println!("inferguard, default catalog, redact (find + render): {:.0} MB/s ({n} output bytes)", mbps(total, d));

    let alternation = REGEX_CATALOG.iter().map(|p| format!("(?:{p})")).collect::<Vec<_>>().join("|");
    let t = Instant::now();
    let re = regex::Regex::new(&ascii_classes(&alternation)).expect("baseline regex");
    let re_build = t.elapsed();
    let (d, n) = time(runs, || docs.iter().map(|doc| re.find_iter(doc).count()).sum());
    let theirs = mbps(total, d);
    println!("regex crate, same catalog as one alternation (no validators, built in {:.1} ms): {theirs:.0} MB/s ({n} matches)", re_build.as_secs_f64() * 1e3);
    let set = regex::RegexSet::new(REGEX_CATALOG.iter().map(|p| ascii_classes(p))).expect("baseline set");
    let (d, n) = time(runs, || docs.iter().map(|doc| set.matches(doc).iter().count()).sum());
    println!(
        "regex crate, same catalog as a RegexSet (which patterns match, no positions): {:.0} MB/s ({n} pattern hits)",
        mbps(total, d)
    );
    let (d, n) = time(runs, || docs.iter().map(|doc| memchr::memchr_iter(b'@', doc.as_bytes()).count()).sum());
    println!("memchr pass (count '@', the floor): {:.0} MB/s ({n} bytes)", mbps(total, d));
    println!("inferguard vs regex alternation: {:.1}x", ours / theirs);

    // Every rule gitleaks' default configuration carries (tests/gitleaks), on top of the catalog.
    let toml = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/gitleaks/gitleaks.toml"))
        .expect("vendored gitleaks config");
    let import = inferguard::detect::gitleaks::import(&toml).expect("gitleaks config");
    let cfg = Config::parse(&import.fragment.to_string()).expect("fragment");
    let t = Instant::now();
    let gl = Engine::new(&cfg.default.detect).expect("imported rules");
    let gl_build = t.elapsed();
    // Every planted value is still redacted (by a detector or a rule that names it otherwise).
    let redacted_all = docs.iter().all(|d| {
        let r = gl.redact(d);
        engine.find_all(d).iter().all(|f| !r.text.contains(&d[f.start..f.end]))
    });
    assert!(redacted_all, "with the gitleaks rules on, every planted value is still redacted");
    // `INFERGUARD_BENCH_RULES=1`: the ten costliest imported rules, each alone on 1 MiB.
    if std::env::var_os("INFERGUARD_BENCH_RULES").is_some() {
        let sample: Vec<&String> = docs.iter().take(600).collect();
        let bytes: usize = sample.iter().map(|d| d.len()).sum();
        let rules = import.fragment["detect"]["rules"].as_array().cloned().unwrap_or_default();
        let mut costs: Vec<(f64, String)> = rules
            .iter()
            .map(|r| {
                let one = serde_json::json!({"detect": {"rules": [r]}});
                let cfg = Config::parse(&one.to_string()).expect("one rule");
                let e = Engine::new(&cfg.default.detect).expect("one rule");
                let (d, _) = time(1, || sample.iter().map(|d| e.find_all(d).len()).sum());
                (mbps(bytes, d), r["name"].as_str().unwrap_or("").to_string())
            })
            .collect();
        costs.sort_by(|a, b| a.0.total_cmp(&b.0));
        for (m, name) in costs.iter().take(10) {
            println!("  alone with the catalog: {name}: {m:.0} MB/s");
        }
    }
    let (d, n) = time(3, || docs.iter().map(|d| gl.find_all(d).len()).sum());
    println!(
        "inferguard, default catalog + {} gitleaks rules (built in {:.1} ms): {:.0} MB/s ({n} findings)",
        import.carried.len(),
        gl_build.as_secs_f64() * 1e3,
        mbps(total, d)
    );

    // Pathological inputs: each is 1 MiB of what makes a naive scanner slow.
    let mib = 1 << 20;
    let fill = |unit: &str| unit.repeat(mib / unit.len());
    let cases: Vec<(&str, String)> = vec![
        ("normal prose and code (the corpus above)", docs.concat()[..mib].to_string()),
        ("digits and spaces \"1 1 1 ...\"", fill("1 ")),
        ("one long run of digits", fill("1234567890")),
        ("dotted numbers \"1.2.3.4.5...\"", fill("1.")),
        ("at signs \"a@a@a@...\"", fill("a@")),
        ("local parts without an @ \"a.b.c...\"", fill("a.")),
        ("colons \"a:b:c:...\"", fill("a:")),
        ("hex and colons \"ab:ab:...\"", fill("ab:")),
        ("dashes \"-----...\"", fill("-")),
        (
            "unterminated key \"-----BEGIN PRIVATE KEY-----\" + base64",
            format!("-----BEGIN PRIVATE KEY-----\n{}", fill("QUJD").chars().take(mib - 28).collect::<String>()),
        ),
        ("repeated BEGIN lines", fill("-----BEGIN RSA PRIVATE KEY-----\n")),
        ("token prefixes \"ghp_ghp_...\"", fill("ghp_")),
        ("labels \"password=password=...\"", fill("password=")),
        ("JWT-like \"eyJeyJ.eyJ.\"", fill("eyJ.")),
        ("fullwidth digits", fill("４")),
        ("zero-width spaces between digits", fill("1\u{200B}")),
    ];
    for (name, text) in &cases {
        let (d, _) = time(5, || engine.find_all(text).len());
        println!(
            "pathological {name}: {:.0} MB/s ({:.2} ms per MiB)",
            mbps(text.len(), d),
            d.as_secs_f64() * 1e3 * mib as f64 / text.len() as f64
        );
    }
    // Streaming: the stream layer rescans held text; show the cost of a realistic chunking.
    let doc = docs.concat();
    let (d, _) = time(3, || {
        let mut from = 0;
        let mut buf_start = 0;
        let mut n = 0;
        let mut end = 0;
        while end < doc.len() {
            end = (end + 16).min(doc.len());
            while !doc.is_char_boundary(end) {
                end += 1;
            }
            let fin = if end == doc.len() { inferguard::detect::End::Final } else { inferguard::detect::End::More };
            let s = engine.scan(&doc[buf_start..end], from - buf_start, fin);
            n += s.findings.len();
            from = buf_start + s.settled;
            buf_start = from.saturating_sub(engine.max_left_context());
            while !doc.is_char_boundary(buf_start) {
                buf_start -= 1;
            }
        }
        n
    });
    println!("inferguard, streamed in 16-byte chunks with left context: {:.0} MB/s", mbps(doc.len(), d));
}
