//! `inferguard`: the native command line over the same core the filter runs.
//!
//! The subcommands and their flags are declared below with clap's derive API; their doc comments
//! are the text of `--help`, which is where their behaviour is described.
//!
//! Exit statuses: 0 success; 1 an error (a file that cannot be read, an invalid configuration,
//! input that is not UTF-8); 2 a usage error (clap's); 3 `redact` refused its input (a `block`
//! rule fired).

use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use inferguard::detect::Engine;
use std::rc::Rc;

use inferguard::exchange::{Exchange, RequestHead, Side, Then};
use inferguard::policy::{
    encode_list, normalise_path, Identity, JwtFacts, Model, Policies, Request, Verdict, Verified,
};
use serde::Serialize;
use serde_json::Value;

// The help text is the doc comments below, shown verbatim: wrapped by hand at 80 columns (70 for
// an option's long help, which clap indents by 10), as the build has no terminal-width wrapping.
// The first paragraph of each is the summary that `-h` and the list of commands show.

/// Redact sensitive data from LLM inference traffic, with the filter's own engine
///
/// inferguard is a proxy-wasm filter for Envoy and Istio. This command line runs
/// the same core as the filter: it checks a plugin configuration as the filter
/// would load it, and redacts text with a configuration's policy.
#[derive(Parser, Debug)]
#[command(
    name = "inferguard",
    version,
    verbatim_doc_comment,
    subcommand_required = true,
    arg_required_else_help = true,
    after_long_help = "\
Exit status: 0 success; 1 an error (a file that cannot be read, an invalid
configuration, input that is not UTF-8); 2 a usage error; 3 `redact` refused its
input (a `block` rule fired)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
#[allow(clippy::large_enum_variant)] // parsed once per run
enum Command {
    CheckConfig(CheckConfigArgs),
    Redact(RedactArgs),
    Explain(ExplainArgs),
    ImportGitleaks(ImportGitleaksArgs),
}

/// Convert a gitleaks configuration into inferguard rules
///
/// Reads the gitleaks configuration FILE (TOML) and writes a configuration fragment,
/// {"detect": {"rules": [...], "rule_allowlist": {...}}}, to stdout or --output: each
/// rule's id, regex, secretGroup, entropy, keywords and allowlists (regexes, stopwords,
/// regexTarget, condition), and the global allowlist. Merge its `detect` section into a
/// plugin configuration. On stderr it says how many rules were carried, and which were
/// not and why (a regex feature regex-lite lacks, a rule that matches file paths only).
/// Exits 0 when the file was converted (even if some rules were not carried), 1 when it
/// cannot be read or is not a gitleaks configuration.
#[derive(Args, Debug)]
#[command(verbatim_doc_comment)]
struct ImportGitleaksArgs {
    /// The gitleaks configuration (TOML), such as gitleaks' own config/gitleaks.toml
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// Write the fragment here instead of stdout
    #[arg(long, short, value_name = "OUT")]
    output: Option<PathBuf>,
}

/// Check a plugin configuration exactly as the filter loads it
///
/// Parses and compiles the plugin configuration FILE exactly as the filter's
/// `on_configure` does. Exits 0 with a one-line summary on stdout, or 1 with the
/// message the filter would log on stderr.
#[derive(Args, Debug)]
#[command(verbatim_doc_comment)]
struct CheckConfigArgs {
    /// The plugin configuration (JSON), as given to the filter
    #[arg(value_name = "FILE")]
    file: PathBuf,
}

/// Redact stdin to stdout with a configuration's policy
///
/// Redacts stdin to stdout with the policy of FILE (a plugin configuration; the
/// default policy without one). Plain mode reads the whole input as one text; if a
/// `block` rule fires, nothing is written, the rule is named on stderr and the exit
/// status is 3. With --jsonl, each input line is a text of its own.
#[derive(Args, Debug)]
#[command(verbatim_doc_comment, args_override_self = true)]
struct RedactArgs {
    /// The plugin configuration [default: the default policy]
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Read and write JSON Lines, one text per line
    ///
    /// Each input line is an object {"id": ..., "text": "..."} and each
    /// output line is {"id": ..., "text": "<redacted>", "findings":
    /// [{"detector", "start", "end", "action"}]} (byte offsets into the
    /// input text), in the same order. A blocked line has "text": null and
    /// "blocked_by"; a line that cannot be read gets {"id": ..., "error":
    /// "..."} and the run goes on. Blank lines are skipped. The exit status
    /// is 0 even when lines are blocked.
    #[arg(long, verbatim_doc_comment)]
    jsonl: bool,
}

/// Explain the decision on one request (not implemented yet)
///
/// Describes one request by its path, method, authority, Envoy route, model and
/// caller identity, and tells what the policy of FILE (the default policy without
/// one) would decide for it, and why. Not implemented yet: exits 2.
// Plain values, no clap types: they map one to one onto the library's description of a
// request. `explain` reads them once it is implemented.
#[derive(Args, Debug, Clone, PartialEq, Eq)]
#[command(verbatim_doc_comment, args_override_self = true)]
#[allow(dead_code)]
pub struct ExplainArgs {
    /// The plugin configuration [default: the default policy]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The request's path (`:path`), with its query if any
    #[arg(long, value_name = "PATH")]
    pub path: String,
    /// The request's method (`:method`)
    #[arg(long, value_name = "METHOD", default_value = "POST")]
    pub method: String,
    /// The request's authority (`:authority`, the Host)
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,
    /// The name of the Envoy route the request matched
    #[arg(long, value_name = "NAME")]
    pub route: Option<String>,
    /// The model the request asks for
    #[arg(long, value_name = "NAME")]
    pub model: Option<String>,
    /// The caller's subject (the token's `sub`)
    #[arg(long, value_name = "SUBJECT")]
    pub sub: Option<String>,
    /// A group the caller belongs to (repeatable)
    #[arg(long = "group", value_name = "GROUP")]
    pub groups: Vec<String>,
    /// A scope the caller's token grants (repeatable)
    #[arg(long = "scope", value_name = "SCOPE")]
    pub scopes: Vec<String>,
    /// The SPIFFE ID of the calling workload
    #[arg(long, value_name = "ID")]
    pub spiffe: Option<String>,
    /// The client presented a certificate (mutual TLS)
    #[arg(long)]
    pub mtls: bool,
    /// The request came without TLS
    #[arg(long)]
    pub plaintext: bool,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::CheckConfig(args) => check_config(&args.file),
        Command::Redact(args) => redact(&args),
        Command::Explain(args) => explain(args),
        Command::ImportGitleaks(args) => import_gitleaks(&args),
    }
}

/// `inferguard import-gitleaks`: the fragment to stdout (or `--output`), the account to stderr.
fn import_gitleaks(args: &ImportGitleaksArgs) -> ExitCode {
    let text = match std::fs::read_to_string(&args.file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("inferguard: {}: {e}", args.file.display());
            return ExitCode::from(1);
        }
    };
    let import = match inferguard::detect::gitleaks::import(&text) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("inferguard: {}: {e}", args.file.display());
            return ExitCode::from(1);
        }
    };
    let mut fragment = serde_json::to_string_pretty(&import.fragment).unwrap_or_default();
    fragment.push('\n');
    let written = match &args.output {
        Some(out) => std::fs::write(out, fragment).map_err(|e| format!("{}: {e}", out.display())),
        None => std::io::Write::write_all(&mut std::io::stdout(), fragment.as_bytes()).map_err(|e| e.to_string()),
    };
    if let Err(e) = written {
        eprintln!("inferguard: {e}");
        return ExitCode::from(1);
    }
    let total = import.carried.len() + import.skipped.iter().filter(|(id, _)| id != "[allowlist]").count();
    eprintln!("carried {} of {total} rules", import.carried.len());
    for (id, why) in &import.skipped {
        eprintln!("not carried: {id}: {why}");
    }
    ExitCode::SUCCESS
}

/// Runs one request head (and a body naming the model) through the same `Exchange` the filter
/// runs, and prints each named policy's verdict, the policy chosen and the decision.
fn explain(args: ExplainArgs) -> ExitCode {
    let policies = match load(args.config.as_deref()) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let groups = encode_list(&args.groups);
    let scope = args.scopes.join(" ");
    let verified = Verified {
        client_address: None,
        tls_version: (!args.plaintext).then_some("TLSv1.3"),
        client_certificate: args.mtls || args.spiffe.is_some(),
        spiffe: args.spiffe.as_deref(),
        route: args.route.as_deref(),
        // The cluster is not known here: assumed marked encrypted.
        upstream_tls: Some(true),
        jwt: JwtFacts {
            sub: args.sub.as_deref().map(str::as_bytes),
            scope: (!scope.is_empty() && args.sub.is_some()).then_some(scope.as_bytes()),
            groups: (args.sub.is_some() && !args.groups.is_empty()).then_some(groups.as_slice()),
            ..Default::default()
        },
    };
    let identity = Identity::from_verified(&verified);
    let policies = Rc::new(policies);
    let mut x = Exchange::new(Rc::clone(&policies));
    let head =
        RequestHead { method: &args.method, path: &args.path, authority: args.host.as_deref(), ..Default::default() };
    let body = args.model.as_ref().map(|m| serde_json::json!({ "model": m }).to_string().into_bytes());
    let mut step = x.on_request_head(&head, &verified, body.is_none());
    // The body follows the head unless the head was answered (its headers may have gone on).
    if let (false, Some(b)) = (matches!(step.then, Then::Reply(_)), &body) {
        step = x.on_body(Side::Request, b.len(), true, &mut |s, n| b[s..s + n].to_vec());
    }

    println!(
        "request:  {} {}{}{}",
        args.method,
        args.path,
        args.host.as_deref().map(|h| format!(" host={h}")).unwrap_or_default(),
        args.model.as_deref().map(|m| format!(" model={m}")).unwrap_or_default()
    );
    println!(
        "caller:   {} subject={} groups=[{}] scopes=[{}] {}{}",
        identity.source.as_str(),
        identity.subject.as_deref().unwrap_or("-"),
        identity.groups.join(","),
        identity.scopes.join(","),
        if args.plaintext { "plaintext" } else { "TLS" },
        if verified.client_certificate { " mTLS" } else { "" }
    );
    if let Some(route) = &args.route {
        println!("route:    {route}");
    }
    match normalise_path(&args.path) {
        Ok(path) => {
            let r = Request {
                authority: args.host.as_deref(),
                path: &path,
                route: args.route.as_deref(),
                identity: &identity,
            };
            let model = args.model.as_deref().map_or(Model::Absent, Model::Named);
            let verdicts = policies.explain(&r, model);
            if !verdicts.is_empty() {
                println!("policies, first match wins:");
            }
            for (name, v) in verdicts {
                let why = match v {
                    Verdict::Matches => "matches".to_owned(),
                    Verdict::Misses(what) => format!("no: {what}"),
                    Verdict::NeedsModel => "needs the model".to_owned(),
                };
                println!("  {name:<24} {why}");
            }
        }
        Err(e) => println!("path:     refused: {e}"),
    }
    let audit = x.audit();
    println!("policy:   {}", if audit.policy.is_empty() { "default" } else { &audit.policy });
    match &step.then {
        Then::Reply(r) => {
            println!("decision: {} ({} {})", audit.decision.as_str(), r.status, audit.reason.as_deref().unwrap_or(""));
            println!("reply:    {}", r.body);
            for (k, v) in &r.headers {
                println!("          {k}: {v}");
            }
        }
        _ => println!("decision: forwarded"),
    }
    println!("audit:    {}", audit.to_json());
    ExitCode::SUCCESS
}

/// Loads a configuration (the default policy without one), printing the error as the filter
/// would log it.
fn load(config: Option<&Path>) -> Result<Policies, ExitCode> {
    let text = match config {
        None => String::new(),
        Some(path) => match std::fs::read(path) {
            Ok(t) => match String::from_utf8(t) {
                Ok(t) => t,
                Err(_) => {
                    eprintln!("{}: invalid configuration: configuration: not valid UTF-8", path.display());
                    return Err(ExitCode::FAILURE);
                }
            },
            Err(e) => {
                eprintln!("inferguard: cannot read {}: {e}", path.display());
                return Err(ExitCode::FAILURE);
            }
        },
    };
    Policies::from_json(&text).map_err(|e| {
        let shown = config.map_or_else(|| "default".into(), |p| p.display().to_string());
        eprintln!("{shown}: invalid configuration: {e}");
        ExitCode::FAILURE
    })
}

fn check_config(path: &Path) -> ExitCode {
    let path_shown = path.display();
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("inferguard: cannot read {path_shown}: {e}");
            return ExitCode::FAILURE;
        }
    };
    match std::str::from_utf8(&text)
        .map_err(|_| "configuration: not valid UTF-8".to_string())
        .and_then(|t| Policies::from_json(t).map_err(|e| e.to_string()))
    {
        Ok(p) => {
            println!("{path_shown}: ok: {}", p.summary());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{path_shown}: invalid configuration: {e}");
            ExitCode::FAILURE
        }
    }
}

fn redact(args: &RedactArgs) -> ExitCode {
    let policy = match load(args.config.as_deref()) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let result = if args.jsonl {
        redact_jsonl(&policy.default_policy().engine, stdin.lock(), &mut out)
    } else {
        redact_plain(&policy.default_policy().engine, stdin.lock(), &mut out)
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

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::{Cli, Command, ExplainArgs};

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    /// `args`: split on spaces.
    fn explain_args(args: &str) -> ExplainArgs {
        match Cli::try_parse_from(["inferguard", "explain"].into_iter().chain(args.split(' '))).unwrap().command {
            Command::Explain(a) => a,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn explain_arguments_map_onto_plain_fields() {
        assert_eq!(
            explain_args("--path /v1/chat/completions"),
            ExplainArgs {
                config: None,
                path: "/v1/chat/completions".into(),
                method: "POST".into(),
                host: None,
                route: None,
                model: None,
                sub: None,
                groups: vec![],
                scopes: vec![],
                spiffe: None,
                mtls: false,
                plaintext: false,
            }
        );
        assert_eq!(
            explain_args(
                "--config=p.json --path /v1/messages --method GET --host api.example.com:8443 --route anthropic \
                 --model claude --sub alice --group a --scope s1 --group b --scope s2 \
                 --spiffe spiffe://td/ns/x/sa/y --mtls --plaintext"
            ),
            ExplainArgs {
                config: Some("p.json".into()),
                path: "/v1/messages".into(),
                method: "GET".into(),
                host: Some("api.example.com:8443".into()),
                route: Some("anthropic".into()),
                model: Some("claude".into()),
                sub: Some("alice".into()),
                groups: vec!["a".into(), "b".into()],
                scopes: vec!["s1".into(), "s2".into()],
                spiffe: Some("spiffe://td/ns/x/sa/y".into()),
                mtls: true,
                plaintext: true,
            }
        );
        // A single-valued option given twice: the last one counts.
        assert_eq!(explain_args("--path /a --path /b").path, "/b");
    }
}
