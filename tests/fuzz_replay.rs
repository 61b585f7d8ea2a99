//! Every committed fuzz corpus file (`tests/fuzz/corpus/<target>/`), run through the same checks
//! the fuzz targets make (`tests/fuzz/src/lib.rs`): a regression a fuzzer once found fails
//! `make test`, without a fuzzer or a nightly compiler.

#[path = "fuzz/src/lib.rs"]
#[allow(dead_code)]
mod checks;

fn replay(target: &str, check: fn(&[u8])) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/corpus").join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 5, "{target}: only {} corpus files", files.len());
    for f in &files {
        let data = std::fs::read(f).unwrap();
        if let Err(p) = std::panic::catch_unwind(|| check(&data)) {
            let msg = p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()));
            panic!("{}: {}", f.display(), msg.unwrap_or_default());
        }
    }
}

#[test]
fn every_answer_in_the_corpus_keeps_the_invariants() {
    replay("answer", checks::answer);
}

#[test]
fn every_prompt_in_the_corpus_keeps_the_invariants() {
    replay("prompt", checks::prompt);
}

#[test]
fn every_configuration_in_the_corpus_keeps_the_invariants() {
    replay("config", checks::config);
}

#[test]
fn the_checks_see_a_value_a_client_would_read() {
    // The oracle itself: a value in a JSON string, in an SSE event's, in a key; a marker is none.
    assert_eq!(checks::surviving(br#"{"a":"mail jane@x.io"}"#).len(), 1);
    assert_eq!(checks::surviving(b"data: {\"jane@x.io\":1}\n\ndata: [DONE]\n\n").len(), 1);
    assert!(checks::surviving(br#"{"a":"mail [REDACTED:EMAIL]"}"#).is_empty());
    assert!(std::panic::catch_unwind(|| checks::answer(b"\x00\x03\x10jane@x.io")).is_ok());
}

#[test]
fn every_request_target_in_the_corpus_keeps_the_invariants() {
    replay("request_target", checks::request_target);
}

#[test]
fn every_json_document_in_the_corpus_reads_as_a_client_reads_it() {
    replay("json_reader", checks::json_reader);
}
