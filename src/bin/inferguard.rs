//! `inferguard`: the native command line over the same core the filter runs.
//!
//! - `inferguard check-config FILE`: parses and compiles a plugin configuration exactly as the
//!   filter's `on_configure` does. Exit 0 with a one-line summary, or exit 1 with the message the
//!   filter would log.
//! - `inferguard redact [--config FILE] [--jsonl]`: redacts stdin to stdout with the policy of
//!   FILE (a plugin configuration; the default policy without one). Plain mode reads the whole
//!   input as one text; if a `block` rule fires, nothing is written, the rule is named on stderr
//!   and the exit status is 3. With `--jsonl`, each input line is an object
//!   `{"id": ..., "text": "..."}` and each output line is
//!   `{"id": ..., "text": "<redacted>", "findings": [{"detector", "start", "end", "action"}]}`
//!   (byte offsets into the input text), in the same order; a blocked line has `"text": null`
//!   and `"blocked_by"`; a line that cannot be read gets `{"id": ..., "error": "..."}` and the
//!   run goes on. Blank lines are skipped.

use std::io::{BufRead, Read, Write};
use std::process::ExitCode;

use inferguard::detect::Engine;
use inferguard::policy::Policy;
use serde::Serialize;
use serde_json::Value;

const USAGE: &str = "usage: inferguard check-config FILE\n       inferguard redact [--config FILE] [--jsonl]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("check-config") => check_config(&args[1..]),
        Some("redact") => redact(&args[1..]),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn check_config(args: &[String]) -> ExitCode {
    let [path] = args else {
        eprintln!("usage: inferguard check-config FILE");
        return ExitCode::from(2);
    };
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("inferguard: cannot read {path}: {e}");
            return ExitCode::FAILURE;
        }
    };
    match std::str::from_utf8(&text)
        .map_err(|_| "configuration: not valid UTF-8".to_string())
        .and_then(|t| Policy::from_json(t).map_err(|e| e.to_string()))
    {
        Ok(p) => {
            println!("{path}: ok: {}", p.summary());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{path}: invalid configuration: {e}");
            ExitCode::FAILURE
        }
    }
}

fn redact(args: &[String]) -> ExitCode {
    let mut config: Option<&str> = None;
    let mut jsonl = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--jsonl" => jsonl = true,
            "--config" => match it.next() {
                Some(f) => config = Some(f),
                None => return usage_error("--config needs a FILE"),
            },
            other => match other.strip_prefix("--config=") {
                Some(f) => config = Some(f),
                None => return usage_error(&format!("unexpected argument `{other}`")),
            },
        }
    }
    let policy = match config {
        None => Policy::from_json(""),
        Some(path) => match std::fs::read(path) {
            Ok(t) => match std::str::from_utf8(&t) {
                Ok(t) => Policy::from_json(t),
                Err(_) => {
                    eprintln!("{path}: invalid configuration: configuration: not valid UTF-8");
                    return ExitCode::FAILURE;
                }
            },
            Err(e) => {
                eprintln!("inferguard: cannot read {path}: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    let policy = match policy {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{}: invalid configuration: {e}", config.unwrap_or("default"));
            return ExitCode::FAILURE;
        }
    };
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let result = if jsonl {
        redact_jsonl(&policy.engine, stdin.lock(), &mut out)
    } else {
        redact_plain(&policy.engine, stdin.lock(), &mut out)
    };
    match result.and_then(|code| out.flush().map(|()| code)) {
        Ok(code) => code,
        // A closed pipe (`| head`) is not an error worth a message.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("inferguard: {e}");
            ExitCode::FAILURE
        }
    }
}

fn usage_error(msg: &str) -> ExitCode {
    eprintln!("inferguard redact: {msg}\n{USAGE}");
    ExitCode::from(2)
}

fn redact_plain(engine: &Engine, mut input: impl Read, out: &mut impl Write) -> std::io::Result<ExitCode> {
    let mut raw = Vec::new();
    input.read_to_end(&mut raw)?;
    let Ok(text) = String::from_utf8(raw) else {
        eprintln!("inferguard: the input is not UTF-8 text");
        return Ok(ExitCode::FAILURE);
    };
    let r = engine.redact(&text);
    if let Some(f) = r.blocked_by() {
        eprintln!("inferguard: blocked by rule {}", f.detector);
        return Ok(ExitCode::from(3));
    }
    out.write_all(r.text.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

/// One output line of `redact --jsonl`, with keys in the documented order.
#[derive(Serialize)]
#[serde(untagged)]
enum Reply<'a> {
    Done {
        id: Value,
        text: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        blocked_by: Option<&'a str>,
        findings: Vec<FindingOut<'a>>,
    },
    Failed {
        id: Value,
        error: String,
    },
}

#[derive(Serialize)]
struct FindingOut<'a> {
    detector: &'a str,
    start: usize,
    end: usize,
    action: &'static str,
}

fn redact_jsonl(engine: &Engine, input: impl BufRead, out: &mut impl Write) -> std::io::Result<ExitCode> {
    for (n, line) in input.split(b'\n').enumerate() {
        let line = line?;
        let line = line.strip_suffix(b"\r").unwrap_or(&line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let (id, text) = match parse_line(line) {
            Ok(v) => v,
            Err((id, msg)) => {
                write_line(out, &Reply::Failed { id, error: format!("line {}: {msg}", n + 1) })?;
                continue;
            }
        };
        let r = engine.redact(&text);
        let findings = r
            .findings
            .iter()
            .map(|f| FindingOut { detector: &f.detector, start: f.start, end: f.end, action: f.action.as_str() })
            .collect();
        let blocked_by = r.blocked_by().map(|f| f.detector.as_ref());
        let text = if blocked_by.is_some() { None } else { Some(r.text.as_str()) };
        write_line(out, &Reply::Done { id, text, blocked_by, findings })?;
    }
    Ok(ExitCode::SUCCESS)
}

fn write_line(out: &mut impl Write, reply: &Reply<'_>) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, reply)?;
    out.write_all(b"\n")
}

/// The `id` (null when absent) and `text` of one input line, or the `id` and why not.
fn parse_line(line: &[u8]) -> Result<(Value, String), (Value, String)> {
    let v: Value = serde_json::from_slice(line).map_err(|e| (Value::Null, format!("invalid JSON: {e}")))?;
    let Value::Object(mut obj) = v else {
        return Err((Value::Null, "expected an object {\"id\": ..., \"text\": \"...\"}".into()));
    };
    let id = obj.remove("id").unwrap_or(Value::Null);
    match obj.remove("text") {
        Some(Value::String(t)) => Ok((id, t)),
        Some(_) => Err((id, "\"text\" must be a string".into())),
        None => Err((id, "missing \"text\"".into())),
    }
}
