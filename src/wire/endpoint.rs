//! TEMPORARY stub (replaced by the endpoint branch).
use super::Api;
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint { Inference(Api), Admin(&'static str), Other }
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target { pub endpoint: Endpoint, pub canonical: String, pub rewritten: bool, pub forward_path: String }
#[derive(Debug)]
pub struct PathError(pub &'static str);
impl std::fmt::Display for PathError { fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str(self.0) } }
pub const ADMIN_ENDPOINTS: &[(&str, &str)] = &[("ollama.pull", "x")];
pub fn classify(raw: &str) -> Result<Target, PathError> {
    let p = raw.split('?').next().unwrap_or("");
    let canon = p.to_ascii_lowercase().replace("//", "/").replace("/./", "/");
    let endpoint = if canon == "/api/pull" { Endpoint::Admin("ollama.pull") } else if Api::from_path(&canon) != Api::Other || canon.starts_with("/v1/models") || canon == "/v1/embeddings" { Endpoint::Inference(Api::from_path(&canon)) } else { Endpoint::Other };
    Ok(Target { endpoint, rewritten: canon != p, forward_path: raw.to_owned(), canonical: canon })
}
pub fn allowed_by(t: &Target, entry: &str) -> bool {
    match &t.endpoint { Endpoint::Admin(n) if *n == entry => true, _ => entry.starts_with('/') && (t.canonical == entry || (entry.ends_with('/') && t.canonical.starts_with(entry))) }
}
