//! Table-driven tests of the engine; the labelled corpus lives in `tests/corpus`.

use super::*;

fn engine() -> Engine {
    Engine::new(&DetectConfig::default()).unwrap()
}

#[test]
fn placeholder() {
    let e = engine();
    assert_eq!(
        e.redact("mail jane@example.com now").text,
        "mail [REDACTED:EMAIL] now"
    );
}
