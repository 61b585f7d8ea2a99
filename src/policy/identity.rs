//! Who is asking, from what Envoy verified: the claims of a JWT that `jwt_authn` validated, and
//! the client certificate of an mTLS connection. Never from a header: a client can write any
//! header, including `x-user` or `x-forwarded-client-cert`.
//!
//! The glue reads Envoy's properties and hands the bytes over as [`Verified`]; decoding them is
//! done here, where it is tested.

/// What Envoy established about the connection and the route, read from its properties.
#[derive(Debug, Clone, Copy, Default)]
pub struct Verified<'a> {
    /// `connection.tls_version` ("TLSv1.3"); `None` over plaintext.
    pub tls_version: Option<&'a str>,
    /// `connection.mtls`: the client presented a certificate that Envoy verified.
    pub client_certificate: bool,
    /// `connection.uri_san_peer_certificate`: the SPIFFE id of the client certificate.
    pub spiffe: Option<&'a str>,
    /// `xds.route_name`.
    pub route: Option<&'a str>,
    /// `xds.cluster_metadata.filter_metadata.inferguard.upstream_tls`: the operator marked the
    /// chosen cluster as encrypted (`None`: not marked).
    pub upstream_tls: Option<bool>,
    /// What `jwt_authn` wrote in its dynamic metadata.
    pub jwt: JwtFacts<'a>,
    /// `source.address`: the client's address (`ip:port`), the caller's key for limits when it
    /// is anonymous.
    pub client_address: Option<&'a str>,
}

impl<'a> Verified<'a> {
    /// A connection over TLS of `version` ("TLSv1.3") and nothing else verified: an anonymous
    /// caller on the default route.
    pub fn tls(version: &'a str) -> Verified<'a> {
        Verified { tls_version: Some(version), ..Default::default() }
    }
}

/// Properties under `metadata.filter_metadata["envoy.filters.http.jwt_authn"]`, as bytes: strings
/// as UTF-8, numbers as 8-byte little-endian doubles, lists in proxy-wasm's map encoding. The glue
/// reads the whole entry in one host call and takes it apart with [`JwtFacts::from_metadata`].
#[derive(Debug, Clone, Copy, Default)]
pub struct JwtFacts<'a> {
    /// `failure.code` (`failed_status_in_metadata: failure`).
    pub failure_code: Option<&'a [u8]>,
    /// `payload.sub`.
    pub sub: Option<&'a [u8]>,
    /// `payload.iss`.
    pub iss: Option<&'a [u8]>,
    /// `payload.scope` (space-separated, or a list once jwt_authn normalised it).
    pub scope: Option<&'a [u8]>,
    /// `payload.scp` (a list).
    pub scp: Option<&'a [u8]>,
    /// `payload.groups` (a list, or one string).
    pub groups: Option<&'a [u8]>,
}

impl<'a> JwtFacts<'a> {
    /// The facts in the whole `jwt_authn` metadata entry, as one property read returns it:
    /// proxy-wasm's map encoding, nested (`payload` and `failure` are maps of their own; a
    /// string is its bytes, a number 8 bytes, a list a map of keys). Anything else reads as
    /// nothing verified: no subject, no failure.
    ///
    /// # Examples
    ///
    /// ```
    /// use inferguard::policy::{encode_map, JwtFacts};
    ///
    /// let payload = encode_map(&[(b"sub", b"alice"), (b"iss", b"https://issuer.example")]);
    /// let entry = encode_map(&[(b"payload", &payload)]);
    /// let f = JwtFacts::from_metadata(&entry);
    /// assert_eq!(f.sub, Some(&b"alice"[..]));
    /// assert_eq!(f.failure_code, None);
    /// ```
    pub fn from_metadata(entry: &'a [u8]) -> JwtFacts<'a> {
        let mut f = JwtFacts::default();
        for (key, value) in pairs(entry).unwrap_or_default() {
            match key {
                b"payload" => {
                    for (claim, v) in pairs(value).unwrap_or_default() {
                        match claim {
                            b"sub" => f.sub = Some(v),
                            b"iss" => f.iss = Some(v),
                            b"scope" => f.scope = Some(v),
                            b"scp" => f.scp = Some(v),
                            b"groups" => f.groups = Some(v),
                            _ => {}
                        }
                    }
                }
                b"failure" => {
                    f.failure_code =
                        pairs(value).unwrap_or_default().into_iter().find(|(k, _)| *k == b"code").map(|(_, v)| v);
                }
                _ => {}
            }
        }
        f
    }
}

/// Where the identity came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Source {
    /// Nothing verified.
    #[default]
    Anonymous,
    /// A JWT that `jwt_authn` validated.
    Jwt,
    /// A client certificate (and no token).
    Mtls,
}

impl Source {
    /// The stable name in audit records.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Anonymous => "anonymous",
            Source::Jwt => "jwt",
            Source::Mtls => "mtls",
        }
    }
}

/// The caller, as far as Envoy verified it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// Where it came from.
    pub source: Source,
    /// The JWT's `sub`, else the SPIFFE id.
    pub subject: Option<String>,
    /// The JWT's issuer.
    pub issuer: Option<String>,
    /// The JWT's `groups`.
    pub groups: Vec<String>,
    /// The JWT's scopes (`scope` and `scp` together).
    pub scopes: Vec<String>,
    /// The client certificate's SPIFFE id.
    pub spiffe: Option<String>,
    /// A token was presented and `jwt_authn` refused it: why (never the token itself).
    pub invalid_token: Option<&'static str>,
}

/// jwt_authn's status codes (`google.rpc`-like `JwtVerificationFailureStatus`) that mean "no
/// token" rather than "a bad token": missing (1), and not a JWT at all (4: an API key such as
/// `Bearer sk-...`, meant for the upstream).
const NO_TOKEN: [f64; 2] = [1.0, 4.0];

impl Identity {
    /// Builds the identity from what Envoy verified.
    ///
    /// # Examples
    ///
    /// ```
    /// use inferguard::policy::{Identity, JwtFacts, Source, Verified};
    ///
    /// let v = Verified {
    ///     jwt: JwtFacts { sub: Some(b"alice"), scope: Some(b"inference read"), ..Default::default() },
    ///     ..Default::default()
    /// };
    /// let id = Identity::from_verified(&v);
    /// assert_eq!(id.source, Source::Jwt);
    /// assert_eq!(id.scopes, ["inference", "read"]);
    /// ```
    pub fn from_verified(v: &Verified) -> Identity {
        let spiffe = v.spiffe.filter(|s| !s.is_empty()).map(str::to_owned);
        let mut id = Identity { spiffe: spiffe.clone(), ..Default::default() };
        if v.client_certificate || spiffe.is_some() {
            id.source = Source::Mtls;
            id.subject = spiffe;
        }
        fn text(b: Option<&[u8]>) -> Option<&str> {
            b.and_then(|b| std::str::from_utf8(b).ok()).filter(|s| !s.is_empty())
        }
        if let Some(sub) = text(v.jwt.sub) {
            id.source = Source::Jwt;
            id.subject = Some(sub.to_owned());
            id.issuer = text(v.jwt.iss).map(str::to_owned);
            id.groups = v.jwt.groups.map(strings).unwrap_or_default();
            // Space-separated as issued; a list where jwt_authn splits it (Istio sets
            // `normalize_payload_in_metadata.space_delimited_claims: [scope, permission]`).
            match v.jwt.scope.and_then(pairs_keys) {
                Some(list) => id.scopes.extend(list.into_iter().filter(|s| !s.is_empty())),
                None => {
                    if let Some(scope) = text(v.jwt.scope) {
                        id.scopes.extend(scope.split_ascii_whitespace().map(str::to_owned));
                    }
                }
            }
            id.scopes.extend(v.jwt.scp.map(strings).unwrap_or_default());
        } else if let Some(code) = v.jwt.failure_code {
            let code = <[u8; 8]>::try_from(code).map(f64::from_le_bytes).unwrap_or(f64::NAN);
            if !NO_TOKEN.contains(&code) {
                id.invalid_token = Some(failure_reason(code));
            }
        }
        id
    }

    /// Is nothing verified about the caller?
    pub fn is_anonymous(&self) -> bool {
        self.source == Source::Anonymous
    }
}

/// A short reason for a refused token, from jwt_authn's status code.
fn failure_reason(code: f64) -> &'static str {
    match code as i64 {
        2 => "the token is not yet valid",
        3 => "the token has expired",
        24 | 10 => "the token's issuer is not trusted",
        25 => "the token's audience is not allowed",
        26 => "the token's signature does not verify",
        _ => "the token was refused",
    }
}

/// A list claim as Envoy hands it to the filter (proxy-wasm's map encoding, each element a key
/// with an empty value): what `inferguard explain` and tests build [`JwtFacts`] from.
pub fn encode_list<S: AsRef<str>>(items: &[S]) -> Vec<u8> {
    let mut b = (items.len() as u32).to_le_bytes().to_vec();
    for i in items {
        b.extend((i.as_ref().len() as u32).to_le_bytes());
        b.extend(0u32.to_le_bytes());
    }
    for i in items {
        b.extend(i.as_ref().as_bytes());
        b.extend([0, 0]);
    }
    b
}

/// A list claim: proxy-wasm's map encoding (each element a key with an empty value), or one
/// plain string.
fn strings(bytes: &[u8]) -> Vec<String> {
    if let Some(list) = pairs_keys(bytes) {
        return list;
    }
    match std::str::from_utf8(bytes) {
        // A NUL never belongs in a claim: what failed to decode as a list is not a string either.
        Ok(s) if !s.is_empty() && !s.contains('\0') => vec![s.to_owned()],
        _ => Vec::new(),
    }
}

/// The keys of proxy-wasm's map encoding (a list claim's elements).
fn pairs_keys(b: &[u8]) -> Option<Vec<String>> {
    pairs(b)?.into_iter().map(|(k, _)| String::from_utf8(k.to_vec()).ok()).collect()
}

/// proxy-wasm's map encoding: `n: u32`, then `n` pairs of lengths (`u32`, `u32`), then each key
/// and value followed by a NUL. `None` unless the bytes are exactly that.
fn pairs(b: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    let u32_at = |i: usize| b.get(i..i + 4).map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as usize);
    let n = u32_at(0)?;
    let mut at = 4usize.checked_add(n.checked_mul(8)?)?;
    if at > b.len() {
        return None;
    }
    let mut out = Vec::with_capacity(n);
    for k in 0..n {
        let (kl, vl) = (u32_at(4 + 8 * k)?, u32_at(8 + 8 * k)?);
        let key = b.get(at..at.checked_add(kl)?)?;
        let value = b.get(at + kl + 1..(at + kl + 1).checked_add(vl)?)?;
        if b.get(at + kl) != Some(&0) || b.get(at + kl + 1 + vl) != Some(&0) {
            return None;
        }
        out.push((key, value));
        at += kl + vl + 2;
    }
    (at == b.len()).then_some(out)
}

/// proxy-wasm's map encoding of `entries`, as Envoy hands a map property to the filter (for
/// `inferguard explain` and tests).
pub fn encode_map(entries: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut b = (entries.len() as u32).to_le_bytes().to_vec();
    for (k, v) in entries {
        b.extend((k.len() as u32).to_le_bytes());
        b.extend((v.len() as u32).to_le_bytes());
    }
    for (k, v) in entries {
        b.extend(*k);
        b.push(0);
        b.extend(*v);
        b.push(0);
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[&str]) -> Vec<u8> {
        encode_list(items)
    }

    #[test]
    fn a_scope_claim_split_into_a_list_reads_as_the_same_scopes() {
        // Istio's RequestAuthentication makes jwt_authn split `scope` (space_delimited_claims).
        let list = crate::policy::encode_map(&[(b"inference", b""), (b"read", b"")]);
        let payload = crate::policy::encode_map(&[(b"sub", b"alice"), (b"scope", &list)]);
        let entry = crate::policy::encode_map(&[(b"payload", &payload)]);
        let id =
            Identity::from_verified(&Verified { jwt: JwtFacts::from_metadata(&entry), ..Verified::tls("TLSv1.3") });
        assert_eq!(id.scopes, ["inference", "read"]);
    }

    #[test]
    fn a_verified_token_gives_subject_groups_and_scopes() {
        let groups = pairs(&["admins", "research"]);
        let scp = pairs(&["inference:restricted"]);
        let v = Verified {
            spiffe: Some("spiffe://cluster.local/ns/apps/sa/chat-ui"),
            client_certificate: true,
            jwt: JwtFacts {
                sub: Some(b"alice"),
                iss: Some(b"https://issuer"),
                scope: Some(b"inference  read"),
                scp: Some(&scp),
                groups: Some(&groups),
                ..Default::default()
            },
            ..Default::default()
        };
        let id = Identity::from_verified(&v);
        assert_eq!(id.source, Source::Jwt);
        assert_eq!(id.subject.as_deref(), Some("alice"));
        assert_eq!(id.groups, ["admins", "research"]);
        assert_eq!(id.scopes, ["inference", "read", "inference:restricted"]);
        assert_eq!(id.spiffe.as_deref(), Some("spiffe://cluster.local/ns/apps/sa/chat-ui"));
    }

    #[test]
    fn a_client_certificate_alone_is_an_mtls_identity() {
        let v = Verified { client_certificate: true, spiffe: Some("spiffe://x/y"), ..Default::default() };
        let id = Identity::from_verified(&v);
        assert_eq!((id.source, id.subject.as_deref()), (Source::Mtls, Some("spiffe://x/y")));
    }

    #[test]
    fn failed_tokens_are_invalid_but_missing_ones_and_api_keys_are_not() {
        for (code, invalid) in [
            (1.0, None),
            (4.0, None),
            (3.0, Some("the token has expired")),
            (24.0, Some("the token's issuer is not trusted")),
            (26.0, Some("the token's signature does not verify")),
        ] {
            let b = f64::to_le_bytes(code);
            let v = Verified { jwt: JwtFacts { failure_code: Some(&b), ..Default::default() }, ..Default::default() };
            let id = Identity::from_verified(&v);
            assert_eq!(id.invalid_token, invalid, "code {code}");
            assert!(id.is_anonymous());
        }
    }

    fn hex(h: &str) -> Vec<u8> {
        (0..h.len()).step_by(2).map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap()).collect()
    }

    /// The whole jwt_authn entry exactly as Envoy 1.40 returned it to the filter (captured with a
    /// debug build): a verified token, a missing one, one that failed its signature check.
    #[test]
    fn the_whole_jwt_authn_entry_is_read_in_one_piece() {
        let verified = hex(concat!(
            "0100000007000000d30000007061796c6f6164000700000005000000140000000300000008000000060000001e000000",
            "03000000050000000300000008000000030000000a000000030000001e00000073636f706500636861742e72656164",
            "20636861742e777269746500696174000000402d67c4da410067726f757073000200000003000000000000000300",
            "000000000000656e6700006f707300000073756200616c69636500657870000000407867c4da410061756400696e66",
            "65726775617264006973730068747470733a2f2f6973737565722e696e66657267756172642e746573740000"
        ));
        let f = JwtFacts::from_metadata(&verified);
        let v = Verified { jwt: f, ..Verified::tls("TLSv1.3") };
        let id = Identity::from_verified(&v);
        assert_eq!(id.source, Source::Jwt);
        assert_eq!(id.subject.as_deref(), Some("alice"));
        assert_eq!(id.issuer.as_deref(), Some("https://issuer.inferguard.test"));
        assert_eq!(id.groups, ["eng", "ops"]);
        assert_eq!(id.scopes, ["chat.read", "chat.write"]);
        let missing = hex(concat!(
            "0100000007000000390000006661696c7572650002000000070000000e00000004000000080000006d657373616765",
            "004a7774206973206d697373696e6700636f646500000000000000f03f0000"
        ));
        let id =
            Identity::from_verified(&Verified { jwt: JwtFacts::from_metadata(&missing), ..Verified::tls("TLSv1.3") });
        assert!(id.is_anonymous() && id.invalid_token.is_none());
        let bad = hex(concat!(
            "0100000007000000410000006661696c7572650002000000070000001600000004000000080000006d657373616765",
            "004a777420766572696669636174696f6e206661696c7300636f6465000000000000003a400000"
        ));
        let id = Identity::from_verified(&Verified { jwt: JwtFacts::from_metadata(&bad), ..Verified::tls("TLSv1.3") });
        assert_eq!(id.invalid_token, Some("the token's signature does not verify"));
        // Cut anywhere, or with a byte added, the entry reads as nothing verified.
        for cut in 0..verified.len() {
            assert_eq!(JwtFacts::from_metadata(&verified[..cut]).sub, None, "{cut}");
        }
        assert_eq!(JwtFacts::from_metadata(&[verified.as_slice(), b"x"].concat()).sub, None);
        assert_eq!(JwtFacts::from_metadata(b"").sub, None);
    }

    #[test]
    fn list_claims_are_read_from_the_map_encoding_or_as_one_string() {
        assert_eq!(strings(&pairs(&["a", "bc"])), ["a", "bc"]);
        assert_eq!(strings(&pairs(&[])), Vec::<String>::new());
        assert_eq!(strings(b"admins"), ["admins"]);
        // A truncated encoding is not a list.
        let mut p = pairs(&["a", "bc"]);
        p.pop();
        assert_eq!(strings(&p), Vec::<String>::new());
    }
}
