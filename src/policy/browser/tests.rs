//! Origins, patterns, the configuration's refusals, preflight and actual-request decisions, and
//! the header edits, table by table.

use super::*;
use crate::policy::Policies;

fn o(s: &str) -> Origin {
    Origin::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

#[test]
fn origins_parse_and_serialise_as_rfc_6454_says() {
    for (text, want) in [
        ("https://example.com", Ok("https://example.com")),
        ("https://EXAMPLE.com", Ok("https://example.com")),
        ("HTTPS://Example.COM", Ok("https://example.com")),
        ("https://example.com:443", Ok("https://example.com")),
        ("https://example.com:8443", Ok("https://example.com:8443")),
        ("http://example.com:80", Ok("http://example.com")),
        ("http://example.com:443", Ok("http://example.com:443")),
        ("http://127.0.0.1:8080", Ok("http://127.0.0.1:8080")),
        ("http://[::1]:8080", Ok("http://[::1]:8080")),
        ("http://[0:0:0:0:0:0:0:1]", Ok("http://[::1]")),
        ("https://xn--bcher-kva.example", Ok("https://xn--bcher-kva.example")),
        ("null", Ok("null")),
        ("NULL", Err(OriginError::Scheme)),
        ("", Err(OriginError::Malformed)),
        ("https://example.com/", Err(OriginError::Path)),
        ("https://example.com/app", Err(OriginError::Path)),
        ("https://example.com?x", Err(OriginError::Path)),
        ("https://example.com#x", Err(OriginError::Path)),
        ("https://example.com.", Err(OriginError::Host)),
        ("https://example..com", Err(OriginError::Host)),
        ("https://-example.com", Err(OriginError::Host)),
        ("https://user@example.com", Err(OriginError::Userinfo)),
        ("https://user:pw@example.com", Err(OriginError::Userinfo)),
        ("https://example.com:", Err(OriginError::Port)),
        ("https://example.com:0", Err(OriginError::Port)),
        ("https://example.com:65536", Err(OriginError::Port)),
        ("https://example.com:+443", Err(OriginError::Port)),
        ("https://example.com:0443", Ok("https://example.com")),
        ("ftp://example.com", Err(OriginError::Scheme)),
        ("chrome-extension://abc", Err(OriginError::Scheme)),
        ("example.com", Err(OriginError::Scheme)),
        ("https://bücher.example", Err(OriginError::NonAscii)),
        ("https://exa mple.com", Err(OriginError::Malformed)),
        ("https://example.com\r\n", Err(OriginError::Malformed)),
        ("http://0x7f.1", Err(OriginError::Host)),
        ("http://127.000.0.1", Err(OriginError::Host)),
        ("http://1.2.3.4.5", Err(OriginError::Host)),
        ("https://[::1", Err(OriginError::Host)),
        ("https://[::1]x", Err(OriginError::Host)),
    ] {
        let got = Origin::parse(text).map(|o| o.to_string());
        assert_eq!(got.as_deref().map_err(|e| *e), want, "{text:?}");
    }
}

#[test]
fn patterns_match_whole_origins_and_whole_labels_never_substrings() {
    let cases: &[(&str, &str, bool)] = &[
        ("https://example.com", "https://example.com", true),
        ("https://example.com", "https://EXAMPLE.com", true),
        ("https://example.com", "https://example.com:443", true),
        ("https://example.com", "https://example.com:8443", false),
        ("https://example.com", "http://example.com", false),
        ("https://example.com", "https://example.com.evil.net", false),
        ("https://example.com", "https://evilexample.com", false),
        ("https://example.com", "https://www.example.com", false),
        ("https://example.com", "null", false),
        ("https://example.com:8443", "https://example.com:8443", true),
        ("https://example.com:8443", "https://example.com", false),
        ("https://*.example.com", "https://app.example.com", true),
        ("https://*.example.com", "https://APP.Example.COM", true),
        ("https://*.example.com", "https://a.b.example.com", true),
        ("https://*.example.com", "https://app.example.com:443", true),
        ("https://*.example.com", "https://example.com", false),
        ("https://*.example.com", "https://example.com.evil.net", false),
        ("https://*.example.com", "https://app.example.com.evil.net", false),
        ("https://*.example.com", "https://evilexample.com", false),
        ("https://*.example.com", "https://app.evilexample.com", false),
        ("https://*.example.com", "https://app-example.com", false),
        ("https://*.example.com", "http://app.example.com", false),
        ("https://*.example.com", "https://app.example.com:8443", false),
        ("https://*.example.com", "null", false),
        ("https://*.example.com:8443", "https://app.example.com:8443", true),
        ("https://*.example.com:8443", "https://app.example.com", false),
        ("null", "null", true),
        ("null", "https://example.com", false),
        ("*", "https://anything.test", true),
        ("*", "http://127.0.0.1:9", true),
        ("*", "null", false),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080", true),
        ("http://127.0.0.1:8080", "http://localhost:8080", false),
        ("http://[::1]:8080", "http://[0::1]:8080", true),
    ];
    for (pattern, origin, want) in cases {
        let p = OriginPattern::parse(pattern).unwrap_or_else(|e| panic!("{pattern}: {e}"));
        assert_eq!(p.matches(&o(origin)), *want, "{pattern} vs {origin}");
    }
}

#[test]
fn wildcards_are_whole_first_labels_only() {
    for bad in [
        "https://*",
        "https://*.com",
        "https://*example.com",
        "https://a*.example.com",
        "https://app.*.example.com",
        "*://example.com",
        "https://*.*.example.com",
        "https://*.127.0.0.1",
        "https://*.example.com/",
        "**",
    ] {
        assert!(OriginPattern::parse(bad).is_err(), "{bad}");
    }
}

fn load_err(cfg: &str) -> String {
    Policies::from_json(cfg).expect_err(cfg).to_string()
}

#[test]
fn configuration_errors_name_the_field() {
    for (cfg, want) in [
        (
            r#"{"cors":{"allowed_origins":["https://example.com/"]}}"#,
            "cors.allowed_origins[0]: an origin has no path, query or fragment (not even a trailing `/`)",
        ),
        (
            r#"{"policies":[{"name":"a"},{"name":"b","cors":{"allowed_origins":["https://ok.example","https://*.example.com"],"allow_credentials":true}}]}"#,
            "policies[1].cors.allowed_origins[1]: a wildcard origin or `null` cannot be combined with `allow_credentials: true`",
        ),
        (r#"{"cors":{"allowed_origins":["*"],"allow_credentials":true}}"#, "cors.allowed_origins[0]: a wildcard origin"),
        (r#"{"cors":{"allowed_origins":["null"],"allow_credentials":true}}"#, "cors.allowed_origins[0]: a wildcard origin or `null`"),
        (r#"{"cors":{"allowed_origins":["https://user@example.com"]}}"#, "cors.allowed_origins[0]: an origin has no user information"),
        (r#"{"cors":{"allowed_origins":["example.com"]}}"#, "cors.allowed_origins[0]: the scheme must be"),
        (r#"{"cors":{"allowed_origins":["https://a*.example.com"]}}"#, "cors.allowed_origins[0]: `*` is allowed only alone"),
        (r#"{"cors":{"allowed_methods":["GET","PO ST"]}}"#, "cors.allowed_methods[1]: expected an HTTP token"),
        (r#"{"cors":{"allowed_headers":["*"]}}"#, "cors.allowed_headers[0]: expected an HTTP token"),
        (r#"{"cors":{"max_age":100000}}"#, "cors.max_age: invalid type: integer `100000`, expected an integer from 0 to 86400"),
        (r#"{"cors":{"on_refused_origin":"allow"}}"#, "cors.on_refused_origin: unknown variant `allow`"),
        (r#"{"cors":{"allowed_origin":[]}}"#, "cors.allowed_origin: unknown field"),
        (r#"{"headers":{"security":{"Access-Control-Allow-Origin":"*"}}}"#, "headers.security.Access-Control-Allow-Origin: `access-control-allow-origin` is not a security header: the `cors` section sets CORS headers"),
        (r#"{"headers":{"security":{"Content-Type":"text/html"}}}"#, "headers.security.Content-Type: `content-type` is not a security header"),
        (r#"{"headers":{"security":{"X-Frame-Options":"DENY\r\nX-Evil: 1"}}}"#, "headers.security.X-Frame-Options: expected a non-empty header value"),
        (r#"{"headers":{"security":{"X-Frame-Options":7}}}"#, "headers.security.X-Frame-Options: invalid type: integer `7`, expected a string"),
        (r#"{"headers":{"strip":["*"]}}"#, "headers.strip[0]: expected a header name"),
        (r#"{"headers":{"strip":["content-*"]}}"#, "headers.strip[0]: it would remove `content-type`"),
        (r#"{"policies":[{"name":"a","headers":{"strip":["va*"]}}]}"#, "policies[0].headers.strip[0]: it would remove `vary`"),
    ] {
        let got = load_err(cfg);
        assert!(got.starts_with(want), "{cfg}\n got: {got}\nwant: {want}");
    }
}

fn browser(cfg: &str) -> Browser {
    Policies::from_json(cfg).unwrap().default_policy().browser.clone()
}

const APP: &str = r#"{"cors":{"allowed_origins":["https://app.example.com","https://*.example.org","null"],
    "allowed_methods":["GET","POST"],"allowed_headers":["Authorization","content-type"],
    "expose_headers":["x-request-id"],"max_age":300}}"#;

fn req<'a>(origin: Option<&'a str>, method: Option<&'a str>, headers: Option<&'a str>) -> CorsRequest<'a> {
    CorsRequest {
        method: if method.is_some() { "OPTIONS" } else { "POST" },
        origin,
        request_method: method,
        request_headers: headers,
        authority: Some("api.example.net:8443"),
        https: true,
    }
}

#[test]
fn preflights_are_allowed_only_for_an_allowed_origin_method_and_headers() {
    let b = browser(APP);
    for (origin, method, headers, want) in [
        ("https://app.example.com", "POST", None, Ok("https://app.example.com")),
        ("https://APP.example.com:443", "POST", Some("content-type"), Ok("https://app.example.com")),
        ("https://app.example.com", "GET", Some("authorization, Content-Type"), Ok("https://app.example.com")),
        ("https://x.y.example.org", "POST", Some("authorization"), Ok("https://x.y.example.org")),
        ("null", "POST", None, Ok("null")),
        ("https://app.example.com", "PUT", None, Err(PreflightRefusal::Method)),
        ("https://app.example.com", "post", None, Err(PreflightRefusal::Method)),
        ("https://app.example.com", "POST", Some("content-type,x-custom"), Err(PreflightRefusal::Headers)),
        ("https://app.example.com.evil.net", "POST", None, Err(PreflightRefusal::Origin)),
        ("https://evilexample.com", "POST", None, Err(PreflightRefusal::Origin)),
        ("https://example.org", "POST", None, Err(PreflightRefusal::Origin)),
        ("http://app.example.com", "POST", None, Err(PreflightRefusal::Origin)),
        ("https://app.example.com:8443", "POST", None, Err(PreflightRefusal::Origin)),
        ("https://app.example.com/", "POST", None, Err(PreflightRefusal::Origin)),
        ("https://app.example.com.", "POST", None, Err(PreflightRefusal::Origin)),
        ("https://u@app.example.com", "POST", None, Err(PreflightRefusal::Origin)),
    ] {
        let r = req(Some(origin), Some(method), headers);
        assert!(r.is_preflight());
        assert_eq!(b.preflight(&r), want.map(|o| Cors::Allowed(o.to_owned())), "{origin} {method} {headers:?}");
    }
    // The default policy allows no cross-origin caller at all.
    let none = Browser::default();
    assert_eq!(
        none.preflight(&req(Some("https://app.example.com"), Some("POST"), None)),
        Err(PreflightRefusal::Origin)
    );
}

#[test]
fn actual_requests_are_allowed_refused_or_not_cors() {
    let b = browser(APP);
    for (origin, want) in [
        (None, Cors::NotCors),
        (Some("https://api.example.net:8443"), Cors::NotCors),
        (Some("https://API.example.net:8443"), Cors::NotCors),
        (Some("https://app.example.com"), Cors::Allowed("https://app.example.com".into())),
        (Some("https://app.example.com:443"), Cors::Allowed("https://app.example.com".into())),
        (Some("https://evil.test"), Cors::Refused),
        (Some("https://app.example.com.evil.net"), Cors::Refused),
        (Some("garbage"), Cors::Refused),
        (Some("https://api.example.net"), Cors::Refused),
    ] {
        assert_eq!(b.actual(&req(origin, None, None)), want, "{origin:?}");
    }
    assert_eq!(
        browser(r#"{"cors":{"allowed_origins":["*"]}}"#).actual(&req(Some("https://x.test"), None, None)),
        Cors::Allowed("*".into())
    );
    assert_eq!(Browser::default().actual(&req(Some("https://app.example.com"), None, None)), Cors::Refused);
}

fn edits(
    b: &Browser,
    cors: &Cors,
    preflight: bool,
    tls: bool,
    upstream: Option<&[(&str, &str)]>,
) -> Vec<(String, Option<String>)> {
    b.response_headers(cors, preflight, tls, upstream).into_iter().map(|(k, v)| (k.into_owned(), v)).collect()
}

fn set(pairs: &[(&str, &str)]) -> Vec<(String, Option<String>)> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), Some((*v).to_owned()))).collect()
}

const SECURITY: &[(&str, &str)] = &[
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("content-security-policy", "default-src 'none'; frame-ancestors 'none'"),
    ("referrer-policy", "no-referrer"),
    ("cache-control", "no-store"),
    ("strict-transport-security", "max-age=31536000"),
];

#[test]
fn a_local_reply_gets_the_security_headers_and_vary_and_hsts_only_over_tls() {
    let b = Browser::default();
    let mut want = set(SECURITY);
    want.extend(set(&[("vary", "Origin")]));
    assert_eq!(edits(&b, &Cors::NotCors, false, true, None), want);
    want.retain(|(k, _)| k != "strict-transport-security");
    assert_eq!(edits(&b, &Cors::Refused, false, false, None), want);
}

#[test]
fn a_preflight_gets_exactly_the_allowed_headers() {
    let b = browser(APP);
    let got = edits(&b, &Cors::Allowed("https://app.example.com".into()), true, true, None);
    let mut want = set(SECURITY);
    want.extend(set(&[
        ("access-control-allow-origin", "https://app.example.com"),
        ("access-control-allow-methods", "GET, POST"),
        ("access-control-allow-headers", "authorization, content-type"),
        ("access-control-max-age", "300"),
        ("vary", "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"),
    ]));
    assert_eq!(got, want);
    let creds = browser(
        r#"{"cors":{"allowed_origins":["https://app.example.com"],"allow_credentials":true,"allowed_headers":[]}}"#,
    );
    let got = edits(&creds, &Cors::Allowed("https://app.example.com".into()), true, false, None);
    let cors: Vec<_> = got.iter().filter(|(k, _)| k.starts_with("access-control-")).cloned().collect();
    assert_eq!(
        cors,
        set(&[
            ("access-control-allow-origin", "https://app.example.com"),
            ("access-control-allow-credentials", "true"),
            ("access-control-allow-methods", "GET, POST"),
            ("access-control-max-age", "600"),
        ])
    );
}

#[test]
fn upstream_cors_and_stack_headers_are_removed_and_the_policy_decides() {
    let b = browser(
        r#"{"cors":{"allowed_origins":["https://app.example.com"],"expose_headers":["x-request-id"]},
            "headers":{"security":{"X-Frame-Options":null,"Content-Security-Policy":"sandbox","Permissions-Policy":"camera=()"},
                       "strip":["x-vllm-*","X-Model-Version"]}}"#,
    );
    let upstream: &[(&str, &str)] = &[
        (":status", "200"),
        ("content-type", "application/json"),
        ("Access-Control-Allow-Origin", "*"),
        ("access-control-allow-credentials", "true"),
        ("access-control-expose-headers", "*"),
        ("server", "uvicorn"),
        ("x-powered-by", "vLLM"),
        ("x-envoy-upstream-service-time", "3"),
        ("x-vllm-version", "0.9"),
        ("x-vllm-engine", "v1"),
        ("x-model-version", "7"),
        ("x-vllm", "kept: the prefix is `x-vllm-`"),
        ("x-request-id", "abc"),
        ("vary", "Accept-Encoding"),
        ("cache-control", "public, max-age=3600"),
    ];
    let got = edits(&b, &Cors::Allowed("https://app.example.com".into()), false, true, Some(upstream));
    let mut want: Vec<(String, Option<String>)> = [
        "access-control-allow-origin",
        "access-control-allow-credentials",
        "access-control-expose-headers",
        "server",
        "x-powered-by",
        "x-envoy-upstream-service-time",
        "x-vllm-version",
        "x-vllm-engine",
        "x-model-version",
    ]
    .iter()
    .map(|k| ((*k).to_owned(), None))
    .collect();
    want.extend(set(&[
        ("x-content-type-options", "nosniff"),
        ("content-security-policy", "sandbox"),
        ("referrer-policy", "no-referrer"),
        ("cache-control", "no-store"),
        ("strict-transport-security", "max-age=31536000"),
        ("permissions-policy", "camera=()"),
        ("access-control-allow-origin", "https://app.example.com"),
        ("access-control-expose-headers", "x-request-id"),
        ("vary", "Accept-Encoding, Origin"),
    ]));
    assert_eq!(got, want);
    // A refused origin: the upstream's CORS headers go, none come back.
    let got = edits(&b, &Cors::Refused, false, true, Some(upstream));
    assert!(!got.iter().any(|(k, v)| k.starts_with("access-control-") && v.is_some()), "{got:?}");
    // Vary is not repeated, and `*` stays alone.
    for (vary, want) in [("origin", "origin"), ("Accept, ORIGIN", "Accept, ORIGIN"), ("*", "*")] {
        let got = edits(&b, &Cors::NotCors, false, true, Some(&[("vary", vary)]));
        assert_eq!(got.last(), Some(&("vary".to_owned(), Some(want.to_owned()))));
    }
}

#[test]
fn named_policies_inherit_cors_and_headers_from_the_default() {
    let p = Policies::from_json(
        r#"{"cors":{"allowed_origins":["https://app.example.com"]},"headers":{"strip":["x-a"]},
            "policies":[{"name":"inherits"},{"name":"own","cors":{"max_age":5}}]}"#,
    )
    .unwrap();
    let [inherits, own] = p.named() else { panic!() };
    assert_eq!(inherits.browser.cors.allowed_origins, [OriginPattern::Exact(o("https://app.example.com"))]);
    assert_eq!(inherits.browser.headers.strip, ["x-a"]);
    // A section given replaces the default's whole: its absent fields take the built-in defaults.
    assert!(own.browser.cors.allowed_origins.is_empty());
    assert_eq!(own.browser.cors.max_age, 5);
    assert_eq!(own.browser.headers.strip, ["x-a"]);
}
