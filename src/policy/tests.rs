//! Reading, compiling and selecting policies.

use super::*;

mod config {
    use crate::policy::Config;

    fn err(json: &str) -> String {
        Config::parse(json).unwrap_err().to_string()
    }

    #[test]
    fn errors_name_the_field_and_what_was_wanted() {
        for (json, want) in [
            (r#"[]"#, "configuration: invalid type: sequence, expected an object"),
            (
                r#"{"request": {"enabled": "yes"}}"#,
                r#"request.enabled: invalid type: string "yes", expected a boolean"#,
            ),
            (r#"{"request": {"max_body_bytes": 1.5}}"#, "request.max_body_bytes: expected a positive integer, got 1.5"),
            (r#"{"request": {"max_body_bytes": -3}}"#, "request.max_body_bytes: expected a positive integer, got -3"),
            (
                r#"{"request": {"mode": "drop"}}"#,
                "request.mode: unknown variant `drop`, expected one of `redact`, `block`, `report`",
            ),
            (r#"{"request": {"on_oversize": null}}"#, "request.on_oversize: invalid type: null, expected a string"),
            (
                r#"{"detect": {"rules": [{"name": "a", "pattern": "x"}, {"name": "b", "pattern": "y", "keep_last": 300}]}}"#,
                "detect.rules[1].keep_last: invalid type: integer `300`, expected an integer from 0 to 255",
            ),
            (
                r#"{"detect": {"dictionaries": [{"name": "d", "terms": ["a", 7]}]}}"#,
                "detect.dictionaries[0].terms[1]: invalid type: integer `7`, expected a string",
            ),
            (r#"{"detect": {"detectors": []}}"#, "detect.detectors: invalid type: sequence, expected a map"),
            (
                r#"{"detect": {"field_rules": {"key": []}}}"#,
                "detect.field_rules.key: unknown field `key`, expected one of `keys`, `action`, `keep_last`",
            ),
            (r#"{"request": {"mode": "block", "mode": "report"}}"#, "request.mode: duplicate field `mode`"),
            (
                r#"{"detect": {"detectors": {"email": {"enabled": false}, "email": {"enabled": true}}}}"#,
                "detect.detectors.email: duplicate field `email`",
            ),
            (
                r#"{"detect": {"rules": [{"name": "a", "pattern": "x", "name": "b"}]}}"#,
                "detect.rules[0].name: duplicate field `name`",
            ),
        ] {
            assert_eq!(err(json), want, "{json}");
        }
    }

    #[test]
    fn a_long_string_in_the_wrong_place_is_not_copied_whole() {
        let e = err(r#"{"request": {"enabled": "sk-live-0123456789abcdefghijklmnop"}}"#);
        assert_eq!(e, r#"request.enabled: invalid type: string "sk-live-0123...", expected a boolean"#);
    }

    #[test]
    fn absent_fields_keep_their_defaults() {
        let c =
            Config::parse(r#"{"request": {"mode": "report"}, "detect": {"field_rules": {"action": "hash"}}}"#).unwrap();
        assert_eq!(c.default.request.mode, crate::policy::Mode::Report);
        assert!(c.default.request.enabled);
        assert_eq!(c.default.response.max_body_bytes.get(), crate::policy::DEFAULT_MAX_BODY_BYTES);
        assert_eq!(c.default.detect.field_rules.keys.len(), crate::detect::config::DEFAULT_FIELD_KEYS.len());
        assert_eq!(c.default.detect.field_rules.action, crate::detect::Action::Hash);
    }
}

mod selection {
    use super::*;
    use crate::wire::endpoint::classify;

    const CONFIG: &str = r#"{
        "policies": [
            {"name": "restricted", "match": {"models": ["gpt-4*"], "paths": ["/v1"]},
             "admission": {"require_client_certificate": true, "required_scopes": ["inference:restricted"]}},
            {"name": "batch", "match": {"spiffe": ["spiffe://cluster.local/ns/batch/*"]},
             "response": {"mode": "block"}},
            {"name": "internal", "match": {"hosts": ["*.internal.example.com"], "routes": ["default"]}},
            {"name": "research", "match": {"groups": ["research"]},
             "admission": {"models": [{"groups": ["research"], "allow": ["llama-*"], "deny": ["*-uncensored"]}]}}
        ]
    }"#;

    fn pick(p: &Policies, r: &Request, m: Model) -> String {
        match p.select(r, m) {
            Selected::Policy(p) => p.name.clone(),
            Selected::AwaitModel => "(await model)".into(),
        }
    }

    #[test]
    fn the_first_match_wins_in_two_steps() {
        let p = Policies::from_json(CONFIG).unwrap();
        let anon = Identity::default();
        let batch = Identity {
            source: Source::Mtls,
            spiffe: Some("spiffe://cluster.local/ns/batch/sa/etl".into()),
            subject: Some("spiffe://cluster.local/ns/batch/sa/etl".into()),
            ..Default::default()
        };
        let chat = Request {
            authority: Some("api.example.com"),
            path: "/v1/chat/completions",
            route: Some("default"),
            identity: &anon,
        };
        // `restricted` names models: the head alone cannot decide.
        assert_eq!(pick(&p, &chat, Model::Unread), "(await model)");
        assert_eq!(pick(&p, &chat, Model::Named("GPT-4o")), "restricted");
        assert_eq!(pick(&p, &chat, Model::Named("llama-3")), "default");
        assert_eq!(pick(&p, &chat, Model::Absent), "default");
        // Not under /v1: `restricted` is out at the head, so the head decides.
        let ollama = Request { path: "/api/chat", ..chat };
        assert_eq!(pick(&p, &ollama, Model::Unread), "default");
        assert_eq!(pick(&p, &Request { identity: &batch, ..ollama }, Model::Unread), "batch");
        let internal = Request { authority: Some("llm.INTERNAL.example.com:8443"), ..ollama };
        assert_eq!(pick(&p, &internal, Model::Unread), "internal");
        assert_eq!(pick(&p, &Request { route: Some("legacy-plaintext"), ..internal }, Model::Unread), "default");
        // A suffix is not a subdomain.
        assert_eq!(
            pick(&p, &Request { authority: Some("evilinternal.example.com"), ..internal }, Model::Unread),
            "default"
        );
        // Segments, not string prefixes.
        assert_eq!(pick(&p, &Request { path: "/v1beta/chat", ..chat }, Model::Named("gpt-4o")), "default");
    }

    #[test]
    fn explain_gives_each_policy_its_first_failing_criterion() {
        let p = Policies::from_json(CONFIG).unwrap();
        let anon = Identity::default();
        let r = Request { authority: None, path: "/api/chat", route: Some("default"), identity: &anon };
        let got: Vec<(String, Verdict)> =
            p.explain(&r, Model::Named("m")).into_iter().map(|(n, v)| (n.to_owned(), v)).collect();
        assert_eq!(
            got,
            [
                ("restricted".into(), Verdict::Misses("match.paths".into())),
                ("batch".into(), Verdict::Misses("match.spiffe".into())),
                ("internal".into(), Verdict::Misses("match.hosts".into())),
                ("research".into(), Verdict::Misses("match.groups".into())),
            ]
        );
    }

    #[test]
    fn named_policies_inherit_absent_sections_and_share_the_engine() {
        let p = Policies::from_json(
            r#"{"response": {"mode": "report"}, "policies": [{"name": "a"}, {"name": "b", "detect": {}}]}"#,
        )
        .unwrap();
        let (a, b, d) = (&p.named()[0], &p.named()[1], p.default_policy());
        assert_eq!(a.response.mode, Mode::Report);
        assert!(Rc::ptr_eq(&a.engine, &d.engine));
        assert!(!Rc::ptr_eq(&b.engine, &d.engine));
    }

    #[test]
    fn capture_is_off_by_default_read_with_defaults_and_inherited_as_a_section() {
        use crate::policy::{CaptureConfig, CaptureTo};
        assert_eq!(Policies::from_json("").unwrap().default_policy().capture, None);
        let p = Policies::from_json(
            r#"{"audit": {"prompt_digest": {"key": "0123456789abcdef"}, "capture": {}},
                "policies": [{"name": "inherits"},
                             {"name": "own", "audit": {"capture": {"max_bytes": 16, "to": "capture_log"}}},
                             {"name": "off", "audit": {}}]}"#,
        )
        .unwrap();
        let default = CaptureConfig { max_bytes: 4096, to: CaptureTo::AccessLog };
        assert_eq!(p.default_policy().capture, Some(default));
        assert_eq!(p.named()[0].capture, Some(default));
        assert_eq!(p.named()[1].capture, Some(CaptureConfig { max_bytes: 16, to: CaptureTo::CaptureLog }));
        assert_eq!(p.named()[2].capture, None);
        assert!(p.prompt_digest(b"x").is_some());
        let top = Policies::from_json(r#"{"audit": {"capture": {"max_bytes": 1048576, "to": "access_log"}}}"#).unwrap();
        assert_eq!(top.default_policy().capture.map(|c| c.max_bytes), Some(1 << 20));
    }

    #[test]
    fn errors_name_the_policy() {
        for (cfg, want) in [
            (
                r#"{"policies": [{"name": "a", "match": {"models": [7]}}]}"#,
                "policies[0].match.models[0]: invalid type: integer `7`, expected a string",
            ),
            (
                r#"{"policies": [{"name": "a"}, {"name": "b", "detect": {"rules": [{"name": "r", "pattern": "("}]}}]}"#,
                "policies[1].detect.rules[0].pattern: invalid regex",
            ),
            (r#"{"policies": [{"name": "a"}, {"name": "a"}]}"#, "policies[1].name: the name `a` is already taken"),
            (r#"{"policies": [{"name": "default"}]}"#, "policies[0].name: the name `default` is already taken"),
            (r#"{"policies": [{"name": "no spaces"}]}"#, "policies[0].name: expected 1 to 64 ASCII letters"),
            (r#"{"policies": [{"match": {}}]}"#, "policies[0]: missing field `name`"),
            (
                r#"{"policies": [{"name": "a", "match": {"paths": ["v1"]}}]}"#,
                "policies[0].match.paths[0]: expected a path starting with `/`",
            ),
            (
                r#"{"policies": [{"name": "a", "admission": {"endpoints": ["ollama.pul"]}}]}"#,
                "policies[0].admission.endpoints[0]: unknown endpoint `ollama.pul`",
            ),
            (
                r#"{"admission": {"required_scopes": ["a b"]}}"#,
                "admission.required_scopes[0]: a scope is one non-empty word",
            ),
            (
                r#"{"admission": {"min_tls_version": "TLSv1.4"}}"#,
                "admission.min_tls_version: unknown variant `TLSv1.4`",
            ),
            (
                r#"{"policies": [{"name": "a", "match": {"model": ["x"]}}]}"#,
                "policies[0].match.model: unknown field `model`",
            ),
            (
                r#"{"audit": {"capture": {"max_bytes": 0}}}"#,
                "audit.capture.max_bytes: expected a positive integer, got 0",
            ),
            (
                r#"{"audit": {"capture": {"max_bytes": 1048577}}}"#,
                "audit.capture.max_bytes: expected at most 1048576 bytes, got 1048577",
            ),
            (
                r#"{"audit": {"capture": {"max_bytes": "4k"}}}"#,
                r#"audit.capture.max_bytes: invalid type: string "4k", expected a positive integer"#,
            ),
            (
                r#"{"audit": {"capture": {"to": "stdout"}}}"#,
                "audit.capture.to: unknown variant `stdout`, expected one of `access_log`, `capture_log`",
            ),
            (
                r#"{"audit": {"capture": {"max_byte": 10}}}"#,
                "audit.capture.max_byte: unknown field `max_byte`, expected one of `max_bytes`, `to`",
            ),
            (r#"{"audit": {"capture": true}}"#, "audit.capture: invalid type: boolean `true`, expected an object"),
            (
                r#"{"audit": {"captures": {}}}"#,
                "audit.captures: unknown field `captures`, expected one of `prompt_digest`, `capture`",
            ),
            (
                r#"{"policies": [{"name": "a", "audit": {"capture": {"to": "file"}}}]}"#,
                "policies[0].audit.capture.to: unknown variant `file`",
            ),
            (
                r#"{"policies": [{"name": "a", "audit": {"prompt_digest": {"key": "0123456789abcdef"}}}]}"#,
                "policies[0].audit.prompt_digest: deployment-wide: set it in the top level's `audit`, not in a named policy",
            ),
        ] {
            let err = Policies::from_json(cfg).unwrap_err().to_string();
            assert!(err.starts_with(want), "{cfg}\n got: {err}\nwant: {want}");
        }
    }

    #[test]
    fn admission_checks_channel_identity_scope_endpoint_and_model() {
        let p = Policies::from_json(CONFIG).unwrap();
        let restricted = &p.named()[0].admission;
        let chat = classify("/v1/chat/completions").unwrap();
        let tls = Verified::tls("TLSv1.3");
        let mtls = Verified { client_certificate: true, ..tls };
        let alice = Identity {
            source: Source::Jwt,
            subject: Some("alice".into()),
            scopes: vec!["inference".into()],
            ..Default::default()
        };
        let reason = |r: Result<(), Denial>| r.err().map(|d| (d.status, d.reason, d.www_authenticate));
        assert_eq!(
            reason(restricted.check_head(&Verified::default(), &alice, &chat)),
            Some((426, "tls_required", None))
        );
        assert_eq!(
            reason(restricted.check_head(&tls, &alice, &chat)).map(|d| d.1),
            Some("client_certificate_required")
        );
        assert_eq!(
            reason(restricted.check_head(&mtls, &alice, &chat)),
            Some((
                403,
                "insufficient_scope",
                Some("Bearer error=\"insufficient_scope\", scope=\"inference:restricted\"".into())
            ))
        );
        let scoped = Identity { scopes: vec!["inference:restricted".into()], ..alice.clone() };
        assert_eq!(reason(restricted.check_head(&mtls, &scoped, &chat)), None);
        assert_eq!(
            reason(restricted.check_head(&mtls, &Identity::default(), &chat)).map(|d| (d.0, d.1)),
            Some((401, "identity_required"))
        );
        let expired = Identity { invalid_token: Some("the token has expired"), ..Default::default() };
        assert_eq!(
            reason(p.default_policy().admission.check_head(&tls, &expired, &chat)).map(|d| (d.0, d.1)),
            Some((401, "invalid_token"))
        );
        let old = Verified::tls("TLSv1.1");
        assert_eq!(
            reason(p.default_policy().admission.check_head(&old, &alice, &chat)).map(|d| d.1),
            Some("tls_version")
        );
        let pull = classify("//API/./pull").unwrap();
        assert_eq!(
            reason(p.default_policy().admission.check_head(&tls, &alice, &pull)).map(|d| (d.0, d.1)),
            Some((403, "admin_endpoint"))
        );
        let allowing = Policies::from_json(r#"{"admission": {"endpoints": ["ollama.pull"]}}"#).unwrap();
        assert_eq!(reason(allowing.default_policy().admission.check_head(&tls, &alice, &pull)), None);
        let strict = Policies::from_json(r#"{"admission": {"require_upstream_tls": true}}"#).unwrap();
        let a = &strict.default_policy().admission;
        assert_eq!(
            reason(a.check_head(&tls, &alice, &chat)).map(|d| (d.0, d.1)),
            Some((502, "upstream_not_encrypted"))
        );
        let encrypted = Verified { upstream_tls: Some(true), ..tls };
        assert_eq!(reason(a.check_head(&encrypted, &alice, &chat)), None);

        let research = &p.named()[3].admission;
        let r = Identity { groups: vec!["research".into()], ..alice.clone() };
        assert!(research.check_model(&r, Some("llama-3")).is_ok());
        assert_eq!(research.check_model(&r, Some("llama-3-uncensored")).unwrap_err().reason, "model_not_allowed");
        assert_eq!(
            research.check_model(&r, Some("gpt-4o")).unwrap_err().message,
            "the model `gpt-4o` is not allowed for this caller"
        );
        assert!(research.check_model(&r, None).is_err());
        // The rule is for the group: others are not constrained by it.
        assert!(research.check_model(&alice, Some("gpt-4o")).is_ok());
    }
}

/// The README's complete example loads, and its named policies decide as the text says.
#[test]
fn the_readme_example_is_a_valid_configuration() {
    let readme = include_str!("../../README.md");
    let section = &readme[readme.find("## Policies and admission").expect("the section")..];
    let start = section.find("```json\n").expect("the example") + "```json\n".len();
    let json = &section[start..start + section[start..].find("```").expect("its end")];
    let p = Policies::from_json(json).unwrap_or_else(|e| panic!("README example: {e}"));
    let names: Vec<&str> = p.named().iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["restricted", "batch", "research"]);
    let intern = Identity {
        source: Source::Jwt,
        subject: Some("intern-7".into()),
        groups: vec!["research".into()],
        scopes: vec!["inference".into()],
        ..Default::default()
    };
    let r = Request { authority: Some("llm.internal.example.com"), path: "/api/chat", route: None, identity: &intern };
    let Selected::Policy(chosen) = p.select(&r, Model::Named("llama-3-70b")) else { panic!("decided") };
    assert_eq!(chosen.name, "research");
    assert_eq!(chosen.admission.check_model(&intern, Some("llama-3-70b")).unwrap_err().reason, "model_not_allowed");
    assert!(chosen.admission.check_model(&intern, Some("llama-3-8b-instruct")).is_ok());
}
