//! gitleaks' own default configuration (`tests/gitleaks/gitleaks.toml`, MIT, licence beside it),
//! imported with `inferguard::detect::gitleaks::import` as `inferguard import-gitleaks` does:
//! how many of its rules are carried, that the filter accepts the fragment, and recall on values
//! written here for a sample of its rules, one shot and streamed.

mod common;

use inferguard::detect::gitleaks::{import, PREFIX};
use inferguard::detect::Engine;
use inferguard::policy::Config;

fn vendored() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/gitleaks/gitleaks.toml")).unwrap()
}

/// The fragment as a plugin configuration, with the built-in detectors off so that every finding
/// is an imported rule's.
fn engine() -> Engine {
    let import = import(&vendored()).unwrap();
    let mut cfg = import.fragment.clone();
    let off: serde_json::Map<String, serde_json::Value> = [
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
    ]
    .iter()
    .map(|d| (d.to_string(), serde_json::json!({"enabled": false})))
    .collect();
    cfg["detect"]["detectors"] = serde_json::Value::Object(off);
    let cfg = Config::parse(&cfg.to_string()).unwrap();
    Engine::new(&cfg.default.detect).unwrap()
}

#[test]
fn the_default_gitleaks_config_is_carried() {
    let import = import(&vendored()).unwrap();
    let total = import.carried.len() + import.skipped.iter().filter(|(id, _)| id != "[allowlist]").count();
    eprintln!("gitleaks default config: carried {} of {total} rules", import.carried.len());
    for (id, why) in &import.skipped {
        eprintln!("  not carried: {id}: {why}");
    }
    assert_eq!(total, 222);
    assert_eq!(import.carried.len(), 221);
    assert_eq!(
        import.skipped,
        [("pkcs12-file".to_string(), "no regex: it matches file paths only, and traffic has none".to_string())]
    );
    // The global allowlist is carried too, its Go-only braces escaped.
    assert!(import.fragment["detect"]["rule_allowlist"]["regexes"].as_array().is_some_and(|r| r.len() > 10));
    // The filter accepts the fragment as it is.
    let cfg = Config::parse(&import.fragment.to_string()).unwrap();
    assert!(Engine::new(&cfg.default.detect).unwrap().summary().contains("221 rules"));
}

/// A deterministic value of `n` characters from `alphabet`, varied enough for every rule's
/// entropy threshold.
fn value(seed: usize, alphabet: &str, n: usize) -> String {
    let a: Vec<char> = alphabet.chars().collect();
    let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ (seed as u64).wrapping_mul(0x2545_F491_4F6C_DD1D);
    (0..n)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            a[(x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % a.len()]
        })
        .collect()
}

const HEX: &str = "0123456789abcdef";
const ALNUM: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const LOWER: &str = "abcdefghijklmnopqrstuvwxyz0123456789";
const UPPER: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const LETTERS: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// (rule id, prefix, alphabet, length, suffix): the value is prefix + random body + suffix.
const SAMPLE: &[(&str, &str, &str, usize, &str)] = &[
    ("adobe-client-secret", "p8e-", LOWER, 32, ""),
    ("age-secret-key", "AGE-SECRET-KEY-1", "QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L", 58, ""),
    ("alibaba-access-key-id", "LTAI", LOWER, 20, ""),
    ("artifactory-api-key", "AKCp", ALNUM, 69, ""),
    ("clickhouse-cloud-api-secret-key", "4b1d", ALNUM, 38, ""),
    ("clojars-api-token", "CLOJARS_", LOWER, 60, ""),
    ("databricks-api-token", "dapi", HEX, 32, ""),
    ("digitalocean-access-token", "doo_v1_", HEX, 64, ""),
    ("digitalocean-pat", "dop_v1_", HEX, 64, ""),
    ("digitalocean-refresh-token", "dor_v1_", HEX, 64, ""),
    ("doppler-api-token", "dp.pt.", LOWER, 43, ""),
    ("duffel-api-token", "duffel_live_", LOWER, 43, ""),
    ("easypost-api-token", "EZAK", LOWER, 54, ""),
    ("easypost-test-api-token", "EZTK", LOWER, 54, ""),
    ("flutterwave-public-key", "FLWPUBK_TEST-", "abcdefgh0123456789", 32, "-X"),
    ("frameio-api-token", "fio-u-", LOWER, 64, ""),
    ("github-fine-grained-pat", "github_pat_", ALNUM, 82, ""),
    ("github-oauth", "gho_", ALNUM, 36, ""),
    ("github-pat", "ghp_", ALNUM, 36, ""),
    ("github-refresh-token", "ghr_", ALNUM, 36, ""),
    ("gitlab-deploy-token", "gldt-", ALNUM, 20, ""),
    ("gitlab-feed-token", "glft-", ALNUM, 20, ""),
    ("gitlab-incoming-mail-token", "glimt-", ALNUM, 25, ""),
    ("gitlab-kubernetes-agent-token", "glagent-", ALNUM, 50, ""),
    ("gitlab-oauth-app-secret", "gloas-", ALNUM, 64, ""),
    ("gitlab-ptt", "glptt-", HEX, 40, ""),
    ("gitlab-rrt", "GR1348941", ALNUM, 20, ""),
    ("gitlab-scim-token", "glsoat-", ALNUM, 20, ""),
    ("grafana-service-account-token", "glsa_", ALNUM, 32, "_0a1b2c3d"),
    ("huggingface-access-token", "hf_", LETTERS, 34, ""),
    ("infracost-api-token", "ico-", ALNUM, 32, ""),
    ("linear-api-key", "lin_api_", LOWER, 40, ""),
    ("npm-access-token", "npm_", LOWER, 36, ""),
    ("octopus-deploy-api-key", "API-", UPPER, 26, ""),
    ("perplexity-api-key", "pplx-", ALNUM, 48, ""),
    ("prefect-api-token", "pnu_", ALNUM, 36, ""),
    ("pulumi-api-token", "pul-", HEX, 40, ""),
    ("readme-api-token", "rdme_", LOWER, 70, ""),
    ("rubygems-api-token", "rubygems_", HEX, 48, ""),
    ("sentry-user-token", "sntryu_", HEX, 64, ""),
    ("settlemint-personal-access-token", "sm_pat_", ALNUM, 16, ""),
    ("shippo-api-token", "shippo_live_", HEX, 40, ""),
    ("shopify-access-token", "shpat_", HEX, 32, ""),
    ("shopify-shared-secret", "shpss_", HEX, 32, ""),
    ("twilio-api-key", "SK", HEX, 32, ""),
    ("postman-api-token", "PMAK-", HEX, 24, "-9f3a1c7e5b2d4086af1e3c5b7d9e0a2c4f"),
];

#[test]
fn recall_on_a_sample_of_the_imported_rules() {
    let e = engine();
    let mut missed = Vec::new();
    assert!(SAMPLE.len() >= 40);
    for (k, &(id, prefix, alphabet, n, suffix)) in SAMPLE.iter().enumerate() {
        let v = format!("{prefix}{}{suffix}", value(k, alphabet, n));
        let text = format!("export TOKEN={v}\nthen run the deploy");
        let found = e.find_all(&text);
        let want = format!("{PREFIX}{id}");
        let hit = found.iter().any(|f| f.detector.as_ref() == want && text[f.start..f.end] == v);
        if !hit {
            missed.push(format!("{id}: {v} -> {:?}", found.iter().map(|f| f.detector.to_string()).collect::<Vec<_>>()));
        }
        // Streamed in small chunks, the same.
        let (_, streamed) = common::stream(&e, &text, |fed| fed + 7);
        let whole: Vec<_> = found.iter().map(|f| (f.detector.to_string(), f.start, f.end)).collect();
        assert_eq!(streamed, whole, "{id}: streamed");
    }
    let recall = (SAMPLE.len() - missed.len()) as f64 / SAMPLE.len() as f64;
    eprintln!("recall on {} sampled gitleaks rules: {:.1}%", SAMPLE.len(), 100.0 * recall);
    assert!(missed.is_empty(), "missed:\n{}", missed.join("\n"));
}

#[test]
fn keywords_gate_rules_and_allowlists_hold() {
    let e = engine();
    // No keyword, no rule run: plain prose comes out untouched.
    let prose = "The quarterly report covers revenue, churn and the hiring plan for next year.";
    assert!(e.find_all(prose).is_empty());
    // The global allowlist: a value that is one repeated letter is not a secret.
    assert!(e.find_all("lin_api_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa").is_empty());
    // Entropy applies to the secret group: a low-entropy body is left alone.
    assert!(e.find_all("pul-0101010101010101010101010101010101010101").is_empty());
}
