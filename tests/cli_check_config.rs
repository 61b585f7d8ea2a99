//! `inferguard check-config`: the same verdict, and the same messages, as the filter's `on_configure`.

use std::io::Write;
use std::process::Command;

fn check(config: &str) -> (i32, String, String) {
    let mut f = tempfile();
    f.1.write_all(config.as_bytes()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_inferguard")).args(["check-config", &f.0]).output().unwrap();
    let _ = std::fs::remove_file(&f.0);
    (out.status.code().unwrap_or(-1), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

fn tempfile() -> (String, std::fs::File) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let path = std::env::temp_dir().join(format!(
        "inferguard-check-{}-{}.json",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let file = std::fs::File::create(&path).unwrap();
    (path.to_string_lossy().into_owned(), file)
}

#[test]
fn accepts_the_shipped_and_the_empty_configuration_with_a_one_line_summary() {
    for cfg in ["", "{}", &std::fs::read_to_string("envoy/inferguard.json").unwrap()] {
        let (code, out, err) = check(cfg);
        assert_eq!(code, 0, "{err}");
        assert_eq!(out.lines().count(), 1, "{out}");
        assert!(out.contains(": ok: "), "{out}");
        assert!(out.contains("response max_body_bytes="), "{out}");
    }
}

#[test]
fn rejects_a_wrong_type_naming_the_field() {
    let (code, out, err) = check(r#"{"response": {"max_body_bytes": "big"}}"#);
    assert_eq!(code, 1);
    assert_eq!(out, "");
    assert!(
        err.trim_end().ends_with(
            r#"invalid configuration: response.max_body_bytes: invalid type: string "big", expected a positive integer"#
        ),
        "{err}"
    );
}

#[test]
fn rejects_an_unknown_field_naming_it() {
    let (code, _, err) = check(r#"{"request": {"max_body_byte": 5}}"#);
    assert_eq!(code, 1);
    assert!(err.contains("request.max_body_byte: unknown field `max_body_byte`, expected one of"), "{err}");
}

#[test]
fn rejects_zero_and_broken_json() {
    let (code, _, err) = check(r#"{"request": {"max_body_bytes": 0}}"#);
    assert_eq!(code, 1);
    assert!(err.contains("request.max_body_bytes: expected a positive integer, got 0"), "{err}");
    let (code, _, err) = check("{\"request\": ");
    assert_eq!(code, 1);
    assert!(err.contains("configuration: invalid JSON: EOF while parsing a value at line 1 column 12"), "{err}");
}

#[test]
fn the_readme_configuration_examples_are_accepted() {
    let readme = std::fs::read_to_string("README.md").unwrap();
    let mut checked = 0;
    for block in readme.split("```json\n").skip(1) {
        let text = block.split("```").next().unwrap();
        let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else { continue };
        if v.get("detect").is_some() || v.get("request").is_some() || v.get("response").is_some() {
            let (code, out, err) = check(text);
            assert_eq!(code, 0, "{text}\n{err}");
            assert!(out.contains(": ok: "), "{out}");
            checked += 1;
        }
    }
    assert!(checked >= 1, "no configuration example found in README.md");
}

#[test]
fn check_config_help_says_what_it_checks_and_how_it_exits() {
    let out = Command::new(env!("CARGO_BIN_EXE_inferguard")).args(["check-config", "--help"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("Check a plugin configuration exactly as the filter loads it\n"), "{text}");
    assert!(text.contains("`on_configure` does. Exits 0 with a one-line summary on stdout, or 1 with the"), "{text}");
    assert!(text.contains("\nUsage: inferguard check-config <FILE>\n"), "{text}");
}

#[test]
fn check_config_takes_exactly_one_file() {
    for args in [&["check-config"][..], &["check-config", "a.json", "b.json"], &["check-config", "--strict", "a.json"]]
    {
        let out = Command::new(env!("CARGO_BIN_EXE_inferguard")).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        assert!(out.stdout.is_empty());
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.starts_with("error: "), "{err}");
        assert!(err.contains("\nUsage: inferguard check-config <FILE>\n"), "{err}");
    }
}
