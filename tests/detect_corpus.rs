//! The labelled corpus (`tests/corpus/*.txt`, format in `tests/corpus/README.md`): every marked
//! value must be found by the named detector with exactly its span, and nothing else may be found,
//! so decoys come out untouched. Each sample is checked in one shot and replayed as a stream.

mod common;

use std::path::Path;

use inferguard::detect::{DetectConfig, Engine, Finding};

/// One sample: the text with markers removed, and the expected (detector, start, end).
struct Sample {
    file: String,
    line: usize,
    text: String,
    want: Vec<(String, usize, usize)>,
}

fn parse(file: &str, src: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    let mut body = String::new();
    let mut first_line = 1;
    let mut push = |body: &mut String, line: usize| {
        let raw = body.strip_suffix('\n').unwrap_or(body).to_string();
        body.clear();
        if raw.trim().is_empty() {
            return;
        }
        let mut text = String::new();
        let mut want = Vec::new();
        let mut rest = raw.as_str();
        while let Some(open) = rest.find('⟦') {
            text.push_str(&rest[..open]);
            let after = &rest[open + '⟦'.len_utf8()..];
            let close = after.find('⟧').unwrap_or_else(|| panic!("{file}:{line}: unclosed marker"));
            let (det, value) =
                after[..close].split_once('|').unwrap_or_else(|| panic!("{file}:{line}: marker without '|'"));
            let start = text.len();
            text.push_str(value);
            want.push((det.to_string(), start, text.len()));
            rest = &after[close + '⟧'.len_utf8()..];
        }
        text.push_str(rest);
        out.push(Sample { file: file.to_string(), line, text, want });
    };
    for (i, l) in src.lines().enumerate() {
        if l == "%%" {
            push(&mut body, first_line);
            first_line = i + 2;
        } else if l.starts_with("%#") {
            if body.is_empty() {
                first_line = i + 2;
            }
        } else {
            body.push_str(l);
            body.push('\n');
        }
    }
    push(&mut body, first_line);
    out
}

fn corpus() -> Vec<Sample> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/corpus")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    files.sort();
    let mut all = Vec::new();
    for f in files {
        let src = std::fs::read_to_string(&f).expect("corpus file");
        let name = f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        all.extend(parse(&name, &src));
    }
    all
}

fn triples(found: &[Finding]) -> Vec<(String, usize, usize)> {
    found.iter().map(|f| (f.detector.to_string(), f.start, f.end)).collect()
}

fn describe(text: &str, t: &[(String, usize, usize)]) -> String {
    t.iter()
        .map(|(d, s, e)| format!("    {d} {:?}", text.get(*s..*e).unwrap_or("<bad span>")))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn labelled_corpus_has_no_miss_and_no_damaged_decoy() {
    let engine = Engine::new(&DetectConfig::default()).unwrap();
    let samples = corpus();
    assert!(samples.len() > 100, "corpus too small: {}", samples.len());
    let mut failures = Vec::new();
    let mut values = 0;
    for s in &samples {
        values += s.want.len();
        let got = triples(&engine.find_all(&s.text));
        if got != s.want {
            let missed: Vec<_> = s.want.iter().filter(|w| !got.contains(w)).cloned().collect();
            let extra: Vec<_> = got.iter().filter(|g| !s.want.contains(g)).cloned().collect();
            failures.push(format!(
                "{}:{}:\n  missed:\n{}\n  unexpected (damaged):\n{}",
                s.file,
                s.line,
                describe(&s.text, &missed),
                describe(&s.text, &extra)
            ));
        }
        if s.want.is_empty() && engine.redact(&s.text).text != s.text {
            failures.push(format!("{}:{}: decoy sample changed by redaction", s.file, s.line));
        }
    }
    assert!(failures.is_empty(), "{} of {} samples failed:\n{}", failures.len(), samples.len(), failures.join("\n"));
    assert!(values > 150, "too few labelled values: {values}");
}

#[test]
fn corpus_replayed_as_a_stream_matches_one_shot() {
    let engine = Engine::new(&DetectConfig::default()).unwrap();
    for s in corpus() {
        let whole = engine.redact(&s.text);
        let want = triples(&whole.findings);
        for chunk in [1, 2, 5, 16, 61, 4096] {
            let (out, found) = common::stream(&engine, &s.text, |fed| fed + chunk);
            assert_eq!(found, want, "{}:{} chunk {chunk}", s.file, s.line);
            assert_eq!(out, whole.text, "{}:{} chunk {chunk}", s.file, s.line);
        }
    }
}

#[test]
fn every_detector_appears_in_the_corpus() {
    let samples = corpus();
    let engine = Engine::new(&DetectConfig::default()).unwrap();
    let all = engine.summary();
    assert!(all.starts_with("22 detectors enabled"), "{all}");
    for d in [
        "email",
        "phone",
        "credit_card",
        "us_ssn",
        "iban",
        "ipv4",
        "ipv6",
        "aws_access_key_id",
        "aws_secret_access_key",
        "github_token",
        "gitlab_token",
        "slack_token",
        "slack_webhook",
        "openai_api_key",
        "anthropic_api_key",
        "stripe_key",
        "google_api_key",
        "jwt",
        "private_key",
        "bearer_token",
        "password_assignment",
        "connection_string",
    ] {
        let n = samples.iter().flat_map(|s| &s.want).filter(|w| w.0 == d).count();
        assert!(n >= 1, "no labelled {d} in the corpus");
    }
}
