//! `inferguard`: the native command line over the same core the filter runs.
//!
//! - `inferguard check-config FILE`: parses and compiles a plugin configuration exactly as the
//!   filter's `on_configure` does. Exit 0 with a one-line summary, or exit 1 with the message the
//!   filter would log.

use std::process::ExitCode;

use inferguard::policy::Policy;

const USAGE: &str = "usage: inferguard check-config FILE";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("check-config") => check_config(&args[1..]),
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
