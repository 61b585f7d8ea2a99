//! Browser-facing policy: who may call the API from a web page (CORS), and the headers every
//! response carries (security headers, and none that reveal the stack).
//!
//! CORS is enforced by browsers, and a browser only trusts what the response says. So the filter
//! says it, and says nothing it did not decide: the upstream's own `access-control-*` headers are
//! always removed (a permissive upstream cannot widen the policy), an `Origin` is never reflected
//! unless it is on the list, and the list is compared as origins are compared (RFC 6454), never
//! as strings: scheme, host and port, scheme and host ignoring ASCII case, default ports implied.
//! `https://example.com.evil.net` and `https://evilexample.com` are not `https://example.com`
//! nor under `https://*.example.com`, whose `*` stands for one or more whole DNS labels.
//!
//! Everything here is sans-IO: the exchange hands over what the request said ([`CorsRequest`])
//! and the upstream's header names and values, and gets decisions and header edits back. One
//! function, [`Browser::response_headers`], decides the headers of every response, the
//! upstream's and the filter's own local replies alike.

use std::borrow::Cow;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::config::read::Node;
use crate::config::ConfigError;

/// A header name in an edit: a literal, or a name from the configuration or the upstream.
pub type HeaderName = Cow<'static, str>;

/// One header edit: set (`Some`, replacing any value) or remove (`None`).
pub type HeaderEdit = (HeaderName, Option<String>);

// ---------------------------------------------------------------------------------------------
// Origins (RFC 6454)

/// The scheme of an origin this filter can allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `http`.
    Http,
    /// `https`.
    Https,
}

impl Scheme {
    fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

/// A web origin: the tuple (scheme, host, port), or the opaque `null`.
///
/// Two origins are equal when their tuples are: the host is stored ASCII-lowercased (an IPv6
/// address in its canonical text), the port always (an absent port is the scheme's default).
///
/// # Examples
///
/// ```
/// use inferguard::policy::Origin;
///
/// let a = Origin::parse("https://App.Example.com").unwrap();
/// assert_eq!(a, Origin::parse("https://app.example.com:443").unwrap());
/// assert_eq!(a.to_string(), "https://app.example.com");
/// assert_ne!(a, Origin::parse("https://app.example.com:8443").unwrap());
/// assert_ne!(a, Origin::parse("http://app.example.com").unwrap());
/// assert!(Origin::parse("https://app.example.com/").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// `null`: sandboxed documents, `file:` pages, some redirects. Any page can produce it.
    Null,
    /// A tuple origin.
    Tuple {
        /// `http` or `https`.
        scheme: Scheme,
        /// The host, lowercased: a DNS name, a dotted IPv4 address, or an IPv6 address (without
        /// brackets).
        host: String,
        /// The port (the scheme's default when the text gave none).
        port: u16,
    },
}

/// Why a text is not an origin.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginError {
    /// Empty, or characters an origin never holds (spaces, controls).
    Malformed,
    /// A scheme other than `http` or `https`, or no `://`.
    Scheme,
    /// `user@` or `user:pass@` before the host: an origin never has one.
    Userinfo,
    /// A path (even `/`), query or fragment after the host.
    Path,
    /// Not a DNS name of letters, digits and hyphens in labels of 1 to 63, nor an IP address
    /// (a trailing dot included: `example.com.` is another origin).
    Host,
    /// Not a port from 1 to 65535.
    Port,
    /// Non-ASCII: browsers send internationalised names in their punycode (`xn--`) form.
    NonAscii,
}

impl fmt::Display for OriginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OriginError::Malformed => "not an origin: expected scheme://host[:port]",
            OriginError::Scheme => "the scheme must be http:// or https://",
            OriginError::Userinfo => "an origin has no user information (`user@`)",
            OriginError::Path => "an origin has no path, query or fragment (not even a trailing `/`)",
            OriginError::Host => {
                "the host is not a DNS name (labels of letters, digits and `-`, no trailing dot) or an IP address"
            }
            OriginError::Port => "the port must be a number from 1 to 65535",
            OriginError::NonAscii => {
                "write an internationalised host in its punycode (`xn--`) form, as browsers send it"
            }
        })
    }
}

impl std::error::Error for OriginError {}

/// What kind of host an origin has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HostKind {
    Dns,
    Ipv4,
    Ipv6,
}

impl Origin {
    /// Parses the serialisation of an origin, as an `Origin` header carries it: `null`, or
    /// `scheme://host[:port]` with nothing after. Scheme and host are compared ignoring ASCII
    /// case and an explicit default port equals none.
    pub fn parse(text: &str) -> Result<Origin, OriginError> {
        Origin::parse_kind(text).map(|(o, _)| o)
    }

    fn parse_kind(text: &str) -> Result<(Origin, Option<HostKind>), OriginError> {
        if text == "null" {
            return Ok((Origin::Null, None));
        }
        if !text.is_ascii() {
            return Err(OriginError::NonAscii);
        }
        if text.is_empty() || text.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(OriginError::Malformed);
        }
        let (scheme, rest) = text.split_once("://").ok_or(OriginError::Scheme)?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            _ => return Err(OriginError::Scheme),
        };
        if rest.contains('@') {
            return Err(OriginError::Userinfo);
        }
        if rest.contains(['/', '?', '#', '\\']) {
            return Err(OriginError::Path);
        }
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (addr, after) = v6.split_once(']').ok_or(OriginError::Host)?;
            let addr: Ipv6Addr = addr.parse().map_err(|_| OriginError::Host)?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or(OriginError::Host)?),
            };
            ((addr.to_string(), HostKind::Ipv6), port)
        } else {
            let (host, port) = match rest.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            };
            (dns_or_ipv4(host)?, port)
        };
        let port = match port {
            None => scheme.default_port(),
            Some(p) if !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
                match p.parse::<u16>() {
                    Ok(n) if n > 0 => n,
                    _ => return Err(OriginError::Port),
                }
            }
            Some(_) => return Err(OriginError::Port),
        };
        Ok((Origin::Tuple { scheme, host: host.0, port }, Some(host.1)))
    }

    /// The origin `scheme://authority` of a request that arrived with this `:authority`
    /// (`None` when the authority is not a host).
    pub fn of_request(https: bool, authority: &str) -> Option<Origin> {
        let scheme = if https { "https" } else { "http" };
        Origin::parse(&format!("{scheme}://{authority}")).ok()
    }
}

/// A DNS name or a dotted IPv4 address, lowercased.
fn dns_or_ipv4(host: &str) -> Result<(String, HostKind), OriginError> {
    if host.is_empty() || host.len() > 253 {
        return Err(OriginError::Host);
    }
    let host = host.to_ascii_lowercase();
    let labels: Vec<&str> = host.split('.').collect();
    // As the URL standard reads hosts: a last label that is a number makes it an IPv4 address,
    // and only the plain dotted-quad spelling is accepted (no `0x7f.1`, no leading zeros).
    if labels.last().is_some_and(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit())) {
        return match host.parse::<Ipv4Addr>() {
            Ok(a) if a.to_string() == host => Ok((host, HostKind::Ipv4)),
            _ => Err(OriginError::Host),
        };
    }
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if labels.iter().all(label_ok) {
        Ok((host, HostKind::Dns))
    } else {
        Err(OriginError::Host)
    }
}

impl fmt::Display for Origin {
    /// The ASCII serialisation (RFC 6454 section 6.2): what a browser sends and expects back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Null => f.write_str("null"),
            Origin::Tuple { scheme, host, port } => {
                f.write_str(scheme.as_str())?;
                f.write_str("://")?;
                if host.contains(':') {
                    write!(f, "[{host}]")?;
                } else {
                    f.write_str(host)?;
                }
                if *port != scheme.default_port() {
                    write!(f, ":{port}")?;
                }
                Ok(())
            }
        }
    }
}

/// An entry of `allowed_origins`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginPattern {
    /// `*`: every tuple origin (not `null`), answered with `Access-Control-Allow-Origin: *`.
    Any,
    /// One origin (`null` only when written so).
    Exact(Origin),
    /// `scheme://*.base[:port]`: hosts one or more whole labels under `base`, with that scheme
    /// and port; never `base` itself.
    Subdomains {
        /// The scheme.
        scheme: Scheme,
        /// The labels after `*.`, lowercased (`example.com`).
        base: String,
        /// The port (the scheme's default when none is written).
        port: u16,
    },
}

impl OriginPattern {
    /// Reads one entry as written in the configuration.
    pub fn parse(text: &str) -> Result<OriginPattern, String> {
        if text == "*" {
            return Ok(OriginPattern::Any);
        }
        if let Some((scheme, rest)) = text.split_once("://*.") {
            let (o, kind) = Origin::parse_kind(&format!("{scheme}://{rest}")).map_err(|e| e.to_string())?;
            return match (o, kind) {
                (Origin::Tuple { scheme, host, port }, Some(HostKind::Dns))
                    if host.contains('.') && !host.contains('*') =>
                {
                    Ok(OriginPattern::Subdomains { scheme, base: host, port })
                }
                _ => Err(
                    "a wildcard stands for whole labels under a domain of at least two labels: `https://*.example.com`"
                        .into(),
                ),
            };
        }
        if text.contains('*') {
            return Err("`*` is allowed only alone or as the whole first label: `https://*.example.com`".into());
        }
        Origin::parse(text).map(OriginPattern::Exact).map_err(|e| e.to_string())
    }

    /// Is this pattern more than one origin?
    pub fn is_wildcard(&self) -> bool {
        !matches!(self, OriginPattern::Exact(_))
    }

    /// Does `origin` fall under this pattern?
    ///
    /// # Examples
    ///
    /// ```
    /// use inferguard::policy::{Origin, OriginPattern};
    ///
    /// let p = OriginPattern::parse("https://*.example.com").unwrap();
    /// let o = |s| Origin::parse(s).unwrap();
    /// assert!(p.matches(&o("https://a.example.com")));
    /// assert!(p.matches(&o("https://a.b.example.com")));
    /// assert!(!p.matches(&o("https://example.com")));
    /// assert!(!p.matches(&o("https://a.example.com.evil.net")));
    /// assert!(!p.matches(&o("https://evilexample.com")));
    /// ```
    pub fn matches(&self, origin: &Origin) -> bool {
        match (self, origin) {
            (OriginPattern::Any, o) => *o != Origin::Null,
            (OriginPattern::Exact(a), b) => a == b,
            (OriginPattern::Subdomains { scheme, base, port }, Origin::Tuple { scheme: s, host, port: p }) => {
                if s != scheme || p != port || host.contains(':') || host.parse::<Ipv4Addr>().is_ok() {
                    return false;
                }
                // Label by label from the right: every label of `base`, then at least one more.
                let mut theirs = host.rsplit('.');
                base.rsplit('.').all(|b| theirs.next() == Some(b)) && theirs.next().is_some_and(|l| !l.is_empty())
            }
            (OriginPattern::Subdomains { .. }, Origin::Null) => false,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Configuration: the `cors` and `headers` sections

/// What happens to an actual (non-preflight) request from an origin that is not allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnRefusedOrigin {
    /// 403 before anything reaches the model (the default).
    Reject,
    /// Serve it, without CORS headers: the browser hides the answer from the page.
    OmitHeaders,
}

impl OnRefusedOrigin {
    const NAMES: &'static [(&'static str, OnRefusedOrigin)] =
        &[("reject", OnRefusedOrigin::Reject), ("omit_headers", OnRefusedOrigin::OmitHeaders)];
}

/// A policy's `cors` section, validated.
#[derive(Debug, Clone)]
pub struct CorsConfig {
    /// Who may call from a page of another origin. Empty (the default): nobody.
    pub allowed_origins: Vec<OriginPattern>,
    /// Methods a preflight may ask for (compared exactly, as the Fetch standard does).
    pub allowed_methods: Vec<String>,
    /// Request headers a preflight may ask for (lowercased; compared ignoring case).
    pub allowed_headers: Vec<String>,
    /// Response headers the page's script may read beyond the safelisted ones (lowercased).
    pub expose_headers: Vec<String>,
    /// How long a browser may cache a preflight's answer, in seconds.
    pub max_age: u64,
    /// Let pages send cookies and HTTP authentication (`credentials: 'include'`) and read the
    /// answer. Never with a wildcard origin or `null`.
    pub allow_credentials: bool,
    /// An actual request from an origin not allowed: refused, or served without CORS headers.
    pub on_refused_origin: OnRefusedOrigin,
}

impl Default for CorsConfig {
    fn default() -> Self {
        CorsConfig {
            allowed_origins: Vec::new(),
            allowed_methods: vec!["GET".into(), "POST".into()],
            allowed_headers: vec!["authorization".into(), "content-type".into()],
            expose_headers: Vec::new(),
            max_age: 600,
            allow_credentials: false,
            on_refused_origin: OnRefusedOrigin::Reject,
        }
    }
}

/// The largest `max_age` accepted: a day (browsers cap it lower: Chromium at 2 hours).
const MAX_MAX_AGE: u64 = 86_400;

impl CorsConfig {
    pub(crate) fn read(node: &Node) -> Result<CorsConfig, ConfigError> {
        let obj = node.object(&[
            "allowed_origins",
            "allowed_methods",
            "allowed_headers",
            "expose_headers",
            "max_age",
            "allow_credentials",
            "on_refused_origin",
        ])?;
        let d = CorsConfig::default();
        let allow_credentials = obj.read("allow_credentials", Node::bool)?.unwrap_or(d.allow_credentials);
        let allowed_origins = obj
            .read("allowed_origins", |n| {
                n.array(|n| {
                    let p = OriginPattern::parse(n.str()?).map_err(|e| n.error(e))?;
                    if allow_credentials && (p.is_wildcard() || p == OriginPattern::Exact(Origin::Null)) {
                        return Err(n.error(
                            "a wildcard origin or `null` cannot be combined with `allow_credentials: true` \
                             (any page could spend the user's credentials); list each origin",
                        ));
                    }
                    Ok(p)
                })
            })?
            .unwrap_or_default();
        let tokens = |key: &str, lower: bool, default: Vec<String>| -> Result<Vec<String>, ConfigError> {
            Ok(obj
                .read(key, |n| {
                    n.array(|n| {
                        let t = n.str()?;
                        if !is_token(t) {
                            return Err(
                                n.error("expected an HTTP token (a method or header name; `*` is not supported)")
                            );
                        }
                        Ok(if lower { t.to_ascii_lowercase() } else { t.to_owned() })
                    })
                })?
                .unwrap_or(default))
        };
        Ok(CorsConfig {
            allowed_origins,
            allowed_methods: tokens("allowed_methods", false, d.allowed_methods)?,
            allowed_headers: tokens("allowed_headers", true, d.allowed_headers)?,
            expose_headers: tokens("expose_headers", true, d.expose_headers)?,
            max_age: obj.read("max_age", |n| n.uint(MAX_MAX_AGE))?.unwrap_or(d.max_age),
            allow_credentials,
            on_refused_origin: obj
                .read("on_refused_origin", |n| n.choice(OnRefusedOrigin::NAMES))?
                .unwrap_or(d.on_refused_origin),
        })
    }
}

/// The security headers every response carries unless a policy turns one off, in order.
/// `strict-transport-security` goes out on TLS connections only.
pub const DEFAULT_SECURITY_HEADERS: &[(&str, &str)] = &[
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("content-security-policy", "default-src 'none'; frame-ancestors 'none'"),
    ("referrer-policy", "no-referrer"),
    ("cache-control", "no-store"),
    ("strict-transport-security", "max-age=31536000"),
];

/// Headers that reveal the stack, always removed from upstream responses.
pub const STACK_HEADERS: &[&str] = &["server", "x-powered-by", "x-envoy-upstream-service-time"];

/// Headers a response needs to be read at all: `strip` may not name them, nor `security` set them.
const FRAMING_HEADERS: &[&str] = &[
    "content-type",
    "content-length",
    "content-encoding",
    "transfer-encoding",
    "connection",
    "vary",
    "www-authenticate",
];

/// A policy's `headers` section, validated.
#[derive(Debug, Clone)]
pub struct HeadersConfig {
    /// The security headers to set, lowercased names, in order (the defaults, with the
    /// policy's overrides and additions; a `null` removed one).
    pub security: Vec<(String, String)>,
    /// Header names, or prefixes ending in `*`, removed from upstream responses besides
    /// [`STACK_HEADERS`] (lowercased).
    pub strip: Vec<String>,
}

impl Default for HeadersConfig {
    fn default() -> Self {
        HeadersConfig {
            security: DEFAULT_SECURITY_HEADERS.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            strip: Vec::new(),
        }
    }
}

impl HeadersConfig {
    pub(crate) fn read(node: &Node) -> Result<HeadersConfig, ConfigError> {
        let obj = node.object(&["security", "strip"])?;
        let mut out = HeadersConfig::default();
        if let Some(map) = obj.get("security") {
            for (name, n) in map.map()?.entries() {
                let lower = name.to_ascii_lowercase();
                if !is_token(name) {
                    return Err(n.error("not a header name (an HTTP token)"));
                }
                if lower.starts_with("access-control-") || FRAMING_HEADERS.contains(&lower.as_str()) {
                    return Err(n.error(format_args!(
                        "`{lower}` is not a security header: {}",
                        if lower.starts_with("access-control-") {
                            "the `cors` section sets CORS headers"
                        } else {
                            "the filter owns it"
                        }
                    )));
                }
                let value = if n.is_null() {
                    None
                } else {
                    let v = n.str()?;
                    if v.is_empty() || v.bytes().any(|b| (b < b' ' && b != b'\t') || b == 0x7f) {
                        return Err(n.error(
                            "expected a non-empty header value without control characters, or null to send none",
                        ));
                    }
                    Some(v.to_owned())
                };
                match (out.security.iter().position(|(k, _)| *k == lower), value) {
                    (Some(i), Some(v)) => out.security[i].1 = v,
                    (Some(i), None) => {
                        out.security.remove(i);
                    }
                    (None, Some(v)) => out.security.push((lower, v)),
                    (None, None) => {}
                }
            }
        }
        out.strip = obj
            .read("strip", |n| {
                n.array(|n| {
                    let s = n.str()?.to_ascii_lowercase();
                    let name = s.strip_suffix('*').unwrap_or(&s);
                    if name.is_empty() || !is_token(name) {
                        return Err(n.error("expected a header name, or a prefix of one followed by `*` (`x-vllm-*`)"));
                    }
                    if let Some(h) = FRAMING_HEADERS.iter().find(|h| strip_matches(&s, h)) {
                        return Err(n.error(format_args!("it would remove `{h}`, which the response needs")));
                    }
                    Ok(s)
                })
            })?
            .unwrap_or_default();
        Ok(out)
    }
}

/// An RFC 9110 token (method and header names), without `*`.
fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'+-.^_`|~".contains(&b))
}

/// A `strip` entry against a lowercased header name: the name, or a prefix ending in `*`.
fn strip_matches(entry: &str, name: &str) -> bool {
    match entry.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => entry == name,
    }
}

// ---------------------------------------------------------------------------------------------
// Decisions

/// What a request said about CORS (what the browser says: not identity, nothing verified).
#[derive(Debug, Clone, Copy, Default)]
pub struct CorsRequest<'a> {
    /// `:method`.
    pub method: &'a str,
    /// `Origin`.
    pub origin: Option<&'a str>,
    /// `Access-Control-Request-Method`.
    pub request_method: Option<&'a str>,
    /// `Access-Control-Request-Headers`.
    pub request_headers: Option<&'a str>,
    /// `:authority`, to recognise a same-origin request.
    pub authority: Option<&'a str>,
    /// The request came over TLS (its own origin is `https://`).
    pub https: bool,
}

impl CorsRequest<'_> {
    /// `OPTIONS` with an `Origin` and `Access-Control-Request-Method`: a CORS preflight (Fetch
    /// standard, "CORS-preflight request").
    pub fn is_preflight(&self) -> bool {
        self.method == "OPTIONS" && self.origin.is_some() && self.request_method.is_some()
    }
}

/// The CORS outcome of a request, which decides the CORS headers of its response.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Cors {
    /// No `Origin`, or the request's own origin: not a cross-origin call, no CORS headers.
    #[default]
    NotCors,
    /// A cross-origin caller the policy allows: `Access-Control-Allow-Origin` is this (the
    /// origin's serialisation, or `*`).
    Allowed(String),
    /// An origin the policy does not allow: no CORS headers, so the page reads nothing.
    Refused,
}

/// Why a preflight was refused: the audit record's `reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreflightRefusal {
    /// The origin is not allowed (`cors_origin`).
    Origin,
    /// The method asked for is not allowed (`cors_method`).
    Method,
    /// A header asked for is not allowed (`cors_headers`).
    Headers,
}

impl PreflightRefusal {
    /// The stable reason.
    pub fn reason(self) -> &'static str {
        match self {
            PreflightRefusal::Origin => "cors_origin",
            PreflightRefusal::Method => "cors_method",
            PreflightRefusal::Headers => "cors_headers",
        }
    }
}

/// One policy's browser-facing settings, compiled.
#[derive(Debug, Clone, Default)]
pub struct Browser {
    /// CORS.
    pub cors: CorsConfig,
    /// Security headers and headers stripped.
    pub headers: HeadersConfig,
}

impl Browser {
    /// The CORS outcome of an actual (non-preflight) request.
    pub fn actual(&self, r: &CorsRequest) -> Cors {
        let Some(text) = r.origin else { return Cors::NotCors };
        let Ok(origin) = Origin::parse(text) else { return Cors::Refused };
        if r.authority.and_then(|a| Origin::of_request(r.https, a)).is_some_and(|own| own == origin) {
            return Cors::NotCors;
        }
        match self.cors.allowed_origins.iter().find(|p| p.matches(&origin)) {
            Some(OriginPattern::Any) => Cors::Allowed("*".to_owned()),
            Some(_) => Cors::Allowed(origin.to_string()),
            None => Cors::Refused,
        }
    }

    /// The answer to a preflight: allowed (its [`Cors::Allowed`]) when the origin, the method and
    /// every requested header are allowed.
    pub fn preflight(&self, r: &CorsRequest) -> Result<Cors, PreflightRefusal> {
        let origin = r.origin.and_then(|o| Origin::parse(o).ok()).ok_or(PreflightRefusal::Origin)?;
        let allow = match self.cors.allowed_origins.iter().find(|p| p.matches(&origin)) {
            Some(OriginPattern::Any) => "*".to_owned(),
            Some(_) => origin.to_string(),
            None => return Err(PreflightRefusal::Origin),
        };
        let method = r.request_method.unwrap_or("");
        if !self.cors.allowed_methods.iter().any(|m| m == method) {
            return Err(PreflightRefusal::Method);
        }
        for h in r.request_headers.unwrap_or("").split(',').map(str::trim).filter(|h| !h.is_empty()) {
            if !self.cors.allowed_headers.iter().any(|a| a.eq_ignore_ascii_case(h)) {
                return Err(PreflightRefusal::Headers);
            }
        }
        Ok(Cors::Allowed(allow))
    }

    /// Every header edit a response gets, in the order to apply them: the one place that decides
    /// what a response carries beyond its body's own headers.
    ///
    /// `upstream` is the upstream response's headers (`None` for the filter's own local reply,
    /// which has nothing to remove). In order: the upstream's `access-control-*` headers, the
    /// stack headers and the policy's `strip` matches are removed; the security headers are set
    /// (`strict-transport-security` only when `tls`); the CORS headers of `cors` are set
    /// (`preflight`: the preflight's set); `Vary` gains `Origin` (a preflight's also the two
    /// request headers it depends on).
    pub fn response_headers(
        &self,
        cors: &Cors,
        preflight: bool,
        tls: bool,
        upstream: Option<&[(&str, &str)]>,
    ) -> Vec<HeaderEdit> {
        let mut edits: Vec<HeaderEdit> = Vec::new();
        let mut vary: Vec<&str> = Vec::new();
        for (name, value) in upstream.unwrap_or_default() {
            // Envoy hands names over in lower case already: a copy only when one is not.
            let lower: Cow<str> = if name.bytes().any(|b| b.is_ascii_uppercase()) {
                Cow::Owned(name.to_ascii_lowercase())
            } else {
                Cow::Borrowed(name)
            };
            if lower == "vary" {
                vary.extend(value.split(',').map(str::trim).filter(|v| !v.is_empty()));
                continue;
            }
            let remove = lower.starts_with("access-control-")
                || STACK_HEADERS.contains(&lower.as_ref())
                || self.headers.strip.iter().any(|s| strip_matches(s, &lower));
            if remove && !edits.iter().any(|(n, _)| *n == lower) {
                edits.push((Cow::Owned(lower.into_owned()), None));
            }
        }
        for (name, value) in &self.headers.security {
            if tls || name != "strict-transport-security" {
                edits.push((Cow::Owned(name.clone()), Some(value.clone())));
            }
        }
        if let Cors::Allowed(origin) = cors {
            let c = &self.cors;
            edits.push((Cow::Borrowed("access-control-allow-origin"), Some(origin.clone())));
            if c.allow_credentials {
                edits.push((Cow::Borrowed("access-control-allow-credentials"), Some("true".to_owned())));
            }
            if preflight {
                edits.push((Cow::Borrowed("access-control-allow-methods"), Some(c.allowed_methods.join(", "))));
                if !c.allowed_headers.is_empty() {
                    edits.push((Cow::Borrowed("access-control-allow-headers"), Some(c.allowed_headers.join(", "))));
                }
                edits.push((Cow::Borrowed("access-control-max-age"), Some(c.max_age.to_string())));
            } else if !c.expose_headers.is_empty() {
                edits.push((Cow::Borrowed("access-control-expose-headers"), Some(c.expose_headers.join(", "))));
            }
        }
        let wanted: &[&str] = if preflight {
            &["Origin", "Access-Control-Request-Method", "Access-Control-Request-Headers"]
        } else {
            &["Origin"]
        };
        if !vary.contains(&"*") {
            for w in wanted {
                if !vary.iter().any(|v| v.eq_ignore_ascii_case(w)) {
                    vary.push(w);
                }
            }
        }
        edits.push((Cow::Borrowed("vary"), Some(vary.join(", "))));
        edits
    }
}

#[cfg(test)]
mod tests;
