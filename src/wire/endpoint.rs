//! Which endpoint a request path names, judged on a normalised form so that no spelling of the
//! path (`//api/pull`, `/api/x/../pull`, `/api%2Fpull`, `/API/PULL`) is judged as one endpoint and
//! served by the upstream as another.
//!
//! The upstream servers normalise differently: Go's gin routes on the decoded path (`%2F` is a
//! `/`), uvicorn/Starlette too, Go's `ServeMux` cleans `.`/`..` and redirects, some Java servers
//! drop `;params`. Rather than guess which one is behind the proxy, [`classify`] refuses what is
//! ambiguous (double encoding, `;`, backslash, control bytes), judges the rest on one normal form,
//! and the caller forwards exactly that form ([`Target::forward_path`]).
//!
//! Matching is ASCII case-insensitive, so `/API/PULL` is `ollama.pull` even though every server
//! here routes case-sensitively: a refusal costs a request that would have been a 404 anyway.
//!
//! Route tables read (cited per entry in [`ROUTES`]):
//! - Ollama `server/routes.go` (`GenerateRoutes`, ollama/ollama@fb30760), which also serves
//!   `net/http/pprof` on `http.DefaultServeMux` (`/debug/pprof/`);
//! - vLLM `docs/usage/security.md` (the endpoint inventory) and the routers under
//!   `vllm/entrypoints/serve/` (`dev/sleep`, `dev/cache`, `dev/rpc`, `dev/rlhf`, `lora`,
//!   `elastic_ep`, `profile`, `instrumentator`);
//! - llama.cpp `tools/server/server.cpp` (the `ctx_http.get/post` table, router mode included);
//! - TGI `router/src/server.rs` (huggingface/text-generation-inference@db931fc);
//! - Triton `src/http_server.cc` (`HTTPAPIServer::Handle` and its regexes,
//!   triton-inference-server/server@e1db8a6).

// The policy rewrite is what calls `allowed_by` and reads `ADMIN_ENDPOINTS`; until it lands they
// are only used by the tests.

use std::fmt;

use super::Api;
use Endpoint::{Admin, Inference};
use Seg::{Lit as L, One, Rest};

/// What a request path names, judged on its normalised form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// An inference API (chat completions, embeddings, model listing...); [`Api`] gives the wire
    /// format. Allowed by default.
    Inference(Api),
    /// An administrative endpoint of a known server, by the stable name in [`ADMIN_ENDPOINTS`]
    /// (`"ollama.pull"`). Refused unless allowed by that name.
    Admin(&'static str),
    /// Anything else. Refused unless allowed by a path pattern.
    Other,
}

/// A classified request target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// What the path names.
    pub endpoint: Endpoint,
    /// The normalised path (no query), as judged: dot segments resolved, slashes merged, no
    /// trailing slash, fixed segments of a known endpoint lowercased, everything else
    /// re-encoded so the upstream decodes it to exactly the segments judged.
    pub canonical: String,
    /// True when the raw path differs from `canonical`: the caller forwards `forward_path`
    /// instead, so the upstream sees exactly what was judged.
    pub rewritten: bool,
    /// The path to forward: `canonical` plus the original query string (`?...`), unchanged.
    pub forward_path: String,
    /// Every segment is a fixed word of a known endpoint and there is no query: nothing in the
    /// target came from the caller's choice of values, so there is nothing in it to scan.
    pub literal: bool,
}

/// Why a path is refused (a 400: no server would read it the way every other does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// Not origin-form: does not start with `/` (`*`, `http://...`, empty).
    NotOriginForm,
    /// A `#`: a fragment never belongs in a request target.
    Fragment,
    /// A raw byte that must be percent-encoded (space, non-ASCII, control).
    Unencoded,
    /// `%` not followed by two hex digits.
    BadEscape,
    /// A NUL or another control byte once decoded.
    Control,
    /// A backslash, raw or decoded: Windows-style servers read it as `/`.
    Backslash,
    /// The decoded bytes are not UTF-8 (overlong `..` encodings among them).
    NotUtf8,
    /// The decoded path still holds a percent-escape: a second decoder would see another path.
    DoubleEncoded,
    /// A `;`, raw or decoded: some servers drop `;params` from a segment, others keep them.
    Parameter,
    /// A `..` that climbs above the root.
    AboveRoot,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathError::NotOriginForm => "the request target is not a path starting with `/`",
            PathError::Fragment => "the request target has a `#` fragment",
            PathError::Unencoded => "the path has a character that must be percent-encoded",
            PathError::BadEscape => "the path has an invalid percent-escape",
            PathError::Control => "the path has a NUL or control character",
            PathError::Backslash => "the path has a backslash",
            PathError::NotUtf8 => "the path is not UTF-8 once decoded",
            PathError::DoubleEncoded => "the path is percent-encoded twice",
            PathError::Parameter => "the path has a `;` parameter",
            PathError::AboveRoot => "the path climbs above the root with `..`",
        })
    }
}

impl std::error::Error for PathError {}

/// Every admin endpoint name, with what it is (for docs and for config validation: "unknown
/// endpoint name `x`, expected one of ...").
pub const ADMIN_ENDPOINTS: &[(&str, &str)] = &[
    ("ollama.pull", "Ollama: download a model from a registry (POST /api/pull)"),
    ("ollama.push", "Ollama: upload a model to a registry (POST /api/push)"),
    ("ollama.create", "Ollama: create a model from a Modelfile (POST /api/create)"),
    ("ollama.copy", "Ollama: copy a model (POST /api/copy)"),
    ("ollama.delete", "Ollama: delete a model (DELETE /api/delete)"),
    ("ollama.blobs", "Ollama: upload or probe a model blob (POST/HEAD /api/blobs/{digest})"),
    ("ollama.ps", "Ollama: list the loaded models and their memory (GET /api/ps)"),
    ("ollama.account", "Ollama: the signed-in ollama.com account (/api/me, /api/signout, /api/user/keys/{key})"),
    ("ollama.web", "Ollama: server-side web search and fetch (/api/experimental/web_search, web_fetch)"),
    ("ollama.pprof", "Ollama: Go profiler on the default mux (/debug/pprof/...)"),
    ("vllm.lora", "vLLM: load or unload a LoRA adapter (/v1/load_lora_adapter, /v1/unload_lora_adapter)"),
    ("vllm.sleep", "vLLM: put the engine to sleep, wake it, ask (/sleep, /wake_up, /is_sleeping)"),
    ("vllm.reset", "vLLM: drop caches (/reset_prefix_cache, /reset_mm_cache, /reset_encoder_cache)"),
    ("vllm.rpc", "vLLM: call any method on every worker (/collective_rpc)"),
    ("vllm.pause", "vLLM: pause, resume or abort generation (/pause, /resume, /is_paused, /abort_requests)"),
    ("vllm.weights", "vLLM: RLHF weight transfer and updates (/init_weight_transfer_engine, /update_weights, ...)"),
    ("vllm.elastic_ep", "vLLM: rescale expert parallelism (/scale_elastic_ep, /is_scaling_elastic_ep)"),
    ("vllm.profile", "vLLM: start or stop the torch profiler (/start_profile, /stop_profile)"),
    ("vllm.server_info", "vLLM: the full engine configuration (/server_info)"),
    ("vllm.tokenizer_info", "vLLM: tokenizer configuration and chat template (/tokenizer_info)"),
    ("common.metrics", "Prometheus metrics of vLLM, TGI and llama.cpp (/metrics)"),
    ("tgi.info", "TGI: model id, revision and serving limits (GET /info)"),
    ("llamacpp.slots", "llama.cpp: list slots with their prompts; save, restore or erase one (/slots, /slots/{id})"),
    ("llamacpp.lora", "llama.cpp: list or set LoRA adapter scales (/lora-adapters)"),
    ("llamacpp.props", "llama.cpp: server properties; POST changes them (/props)"),
    ("llamacpp.models", "llama.cpp router mode: list, add, load, unload, delete models (/models, /models/...)"),
    ("llamacpp.cors_proxy", "llama.cpp: the web UI's fetch-anything proxy (/cors-proxy)"),
    ("triton.model_control", "Triton: repository index, model load and unload (/v2/repository/...)"),
    ("triton.shared_memory", "Triton: register shared memory (/v2/systemsharedmemory/..., /v2/cudasharedmemory/...)"),
    ("triton.logging", "Triton: change log settings (/v2/logging)"),
    ("triton.trace", "Triton: change trace settings (/v2/trace/setting, /v2/models/{m}/trace/setting)"),
];

/// Does `target` match one configured allow entry? An entry is either an admin name from
/// [`ADMIN_ENDPOINTS`] (matches that admin endpoint only) or a path pattern starting with `/`,
/// compared with `canonical`: exact, or a prefix when it ends with `/` (`/v2/models/` matches
/// `/v2/models` and everything below it; `/` matches every path).
///
/// A path pattern never matches an admin endpoint: a broad prefix such as `/` or `/v2/` must not
/// open `/api/pull` or `/v2/repository/...` as a side effect. Admin endpoints open by name only.
pub fn allowed_by(target: &Target, entry: &str) -> bool {
    match target.endpoint {
        Endpoint::Admin(name) => name == entry,
        _ if !entry.starts_with('/') => false,
        _ => match entry.strip_suffix('/') {
            Some(prefix) => {
                target.canonical == prefix
                    || (target.canonical.starts_with(prefix) && target.canonical[prefix.len()..].starts_with('/'))
            }
            None => target.canonical == entry,
        },
    }
}

/// Classifies a request target (`:path`, query included). See the module doc for the normal
/// form; the refusals are [`PathError`].
pub fn classify(raw_path: &str) -> Result<Target, PathError> {
    if raw_path.contains('#') {
        return Err(PathError::Fragment);
    }
    let (raw, query) = match raw_path.find('?') {
        Some(i) => raw_path.split_at(i),
        None => (raw_path, ""),
    };
    if !raw.starts_with('/') {
        return Err(PathError::NotOriginForm);
    }
    let decoded = decode(raw)?;
    let segments = resolve(&decoded)?;

    let (endpoint, pattern) = ROUTES
        .iter()
        .find(|(pattern, _)| matches(pattern, &segments))
        .map_or((Endpoint::Other, &[][..]), |(pattern, e)| (*e, *pattern));
    let mut canonical = String::with_capacity(raw.len());
    for (i, segment) in segments.iter().enumerate() {
        canonical.push('/');
        match pattern.get(i) {
            Some(Seg::Lit(lit)) => canonical.push_str(lit),
            _ => encode_segment(segment, &mut canonical),
        }
    }
    if canonical.is_empty() {
        canonical.push('/');
    }
    let rewritten = canonical != raw;
    let literal = query.is_empty()
        && !pattern.is_empty()
        && pattern.len() == segments.len()
        && pattern.iter().all(|p| matches!(p, Seg::Lit(_)));
    let forward_path = format!("{canonical}{query}");
    Ok(Target { endpoint, canonical, rewritten, forward_path, literal })
}

/// Percent-decodes the path once and refuses what decodes into ambiguity.
fn decode(raw: &str) -> Result<String, PathError> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = match bytes[i] {
            b'%' => {
                let hex = |j: usize| bytes.get(j).and_then(|&c| (c as char).to_digit(16));
                let (Some(hi), Some(lo)) = (hex(i + 1), hex(i + 2)) else {
                    return Err(PathError::BadEscape);
                };
                i += 3;
                (hi * 16 + lo) as u8
            }
            // RFC 9112 has no raw space, control or non-ASCII byte in a request target.
            c if !(0x21..0x7f).contains(&c) => return Err(PathError::Unencoded),
            c => {
                i += 1;
                c
            }
        };
        match b {
            0..=0x1f | 0x7f => return Err(PathError::Control),
            b'\\' => return Err(PathError::Backslash),
            b';' => return Err(PathError::Parameter),
            _ => out.push(b),
        }
    }
    let text = String::from_utf8(out).map_err(|_| PathError::NotUtf8)?;
    let t = text.as_bytes();
    if t.windows(3).any(|w| w[0] == b'%' && w[1].is_ascii_hexdigit() && w[2].is_ascii_hexdigit()) {
        return Err(PathError::DoubleEncoded);
    }
    Ok(text)
}

/// Splits a decoded path into segments, dropping empty and `.` segments and resolving `..`.
fn resolve(decoded: &str) -> Result<Vec<&str>, PathError> {
    let mut segments = Vec::new();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop().ok_or(PathError::AboveRoot)?;
            }
            s => segments.push(s),
        }
    }
    Ok(segments)
}

/// Re-encodes a decoded segment: RFC 3986 `pchar` minus `;` stays as is, every other byte is
/// `%XX`. So `/` inside an id, `%`, `?`, space and non-ASCII reach the upstream encoded.
fn encode_segment(segment: &str, out: &mut String) {
    for &b in segment.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,=:@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// One segment of a route pattern.
#[derive(Debug, Clone, Copy)]
enum Seg {
    /// This segment, ASCII case-insensitively; canonically spelled as written (lowercase).
    Lit(&'static str),
    /// Any one segment (an id), kept as sent.
    One,
    /// Zero or more segments to the end, kept as sent.
    Rest,
}

fn matches(pattern: &[Seg], segments: &[&str]) -> bool {
    match (pattern.first(), segments.first()) {
        (None, None) => true,
        (Some(Seg::Rest), _) => true,
        (Some(Seg::Lit(lit)), Some(s)) if lit.eq_ignore_ascii_case(s) => matches(&pattern[1..], &segments[1..]),
        (Some(Seg::One), Some(_)) => matches(&pattern[1..], &segments[1..]),
        _ => false,
    }
}

/// Every known path, first match wins (no two overlap). Anything else is [`Endpoint::Other`].
static ROUTES: &[(&[Seg], Endpoint)] = &[
    // OpenAI-compatible: vLLM, Ollama, llama.cpp, TGI (chat, completions, models). llama.cpp
    // also serves chat, completions and responses without `/v1`; `Api::from_path` always
    // accepted those spellings.
    (&[L("v1"), L("chat"), L("completions")], Inference(Api::OpenAiChat)),
    (&[L("chat"), L("completions")], Inference(Api::OpenAiChat)),
    (&[L("v1"), L("completions")], Inference(Api::OpenAiCompletions)),
    (&[L("completions")], Inference(Api::OpenAiCompletions)),
    (&[L("v1"), L("responses")], Inference(Api::OpenAiResponses)),
    (&[L("responses")], Inference(Api::OpenAiResponses)),
    (&[L("v1"), L("embeddings")], Inference(Api::OpenAiEmbeddings)),
    (&[L("v1"), L("models")], Inference(Api::OpenAiModels)),
    // Ollama: `GET /v1/models/:model`. Two segments for Hugging Face style `org/name` ids.
    (&[L("v1"), L("models"), One], Inference(Api::OpenAiModels)),
    (&[L("v1"), L("models"), One, One], Inference(Api::OpenAiModels)),
    (&[L("v1"), L("audio"), L("transcriptions")], Inference(Api::OpenAiAudioTranscriptions)),
    // Anthropic-compatible: vLLM, Ollama, llama.cpp.
    (&[L("v1"), L("messages")], Inference(Api::AnthropicMessages)),
    (&[L("v1"), L("messages"), L("count_tokens")], Inference(Api::AnthropicCountTokens)),
    // Ollama native (llama.cpp serves /api/chat, /api/tags, /api/show too).
    (&[L("api"), L("chat")], Inference(Api::OllamaChat)),
    (&[L("api"), L("generate")], Inference(Api::OllamaGenerate)),
    (&[L("api"), L("embed")], Inference(Api::OllamaEmbed)),
    (&[L("api"), L("embeddings")], Inference(Api::OllamaEmbeddings)),
    (&[L("api"), L("tags")], Inference(Api::OllamaTags)),
    (&[L("api"), L("show")], Inference(Api::OllamaShow)),
    // TGI `router/src/server.rs`.
    (&[L("generate")], Inference(Api::Tgi)),
    (&[L("generate_stream")], Inference(Api::Tgi)),
    //
    // Ollama `server/routes.go` GenerateRoutes. /api/version and /api/status are harmless and
    // not inference: Other.
    (&[L("api"), L("pull")], Admin("ollama.pull")),
    (&[L("api"), L("push")], Admin("ollama.push")),
    (&[L("api"), L("create")], Admin("ollama.create")),
    (&[L("api"), L("copy")], Admin("ollama.copy")),
    (&[L("api"), L("delete")], Admin("ollama.delete")),
    (&[L("api"), L("blobs"), Rest], Admin("ollama.blobs")),
    // Read-only, but it tells which models are resident and for how long: operational.
    (&[L("api"), L("ps")], Admin("ollama.ps")),
    (&[L("api"), L("me")], Admin("ollama.account")),
    (&[L("api"), L("signout")], Admin("ollama.account")),
    (&[L("api"), L("user"), Rest], Admin("ollama.account")),
    (&[L("api"), L("experimental"), L("web_search")], Admin("ollama.web")),
    (&[L("api"), L("experimental"), L("web_fetch")], Admin("ollama.web")),
    // routes.go serves on http.DefaultServeMux "so we get net/http/pprof for free".
    (&[L("debug"), L("pprof"), Rest], Admin("ollama.pprof")),
    //
    // vLLM: docs/usage/security.md lists them; routers under vllm/entrypoints/serve/.
    (&[L("v1"), L("load_lora_adapter")], Admin("vllm.lora")),
    (&[L("v1"), L("unload_lora_adapter")], Admin("vllm.lora")),
    (&[L("sleep")], Admin("vllm.sleep")),
    (&[L("wake_up")], Admin("vllm.sleep")),
    (&[L("is_sleeping")], Admin("vllm.sleep")),
    (&[L("reset_prefix_cache")], Admin("vllm.reset")),
    (&[L("reset_mm_cache")], Admin("vllm.reset")),
    (&[L("reset_encoder_cache")], Admin("vllm.reset")),
    (&[L("collective_rpc")], Admin("vllm.rpc")),
    (&[L("pause")], Admin("vllm.pause")),
    (&[L("resume")], Admin("vllm.pause")),
    (&[L("is_paused")], Admin("vllm.pause")),
    (&[L("abort_requests")], Admin("vllm.pause")),
    // serve/dev/rlhf/api_router.py.
    (&[L("init_weight_transfer_engine")], Admin("vllm.weights")),
    (&[L("start_weight_update")], Admin("vllm.weights")),
    (&[L("start_draft_weight_update")], Admin("vllm.weights")),
    (&[L("update_weights")], Admin("vllm.weights")),
    (&[L("finish_weight_update")], Admin("vllm.weights")),
    (&[L("update_weight_version")], Admin("vllm.weights")),
    (&[L("weight_info")], Admin("vllm.weights")),
    (&[L("weight_checker")], Admin("vllm.weights")),
    (&[L("get_world_size")], Admin("vllm.weights")),
    (&[L("scale_elastic_ep")], Admin("vllm.elastic_ep")),
    (&[L("is_scaling_elastic_ep")], Admin("vllm.elastic_ep")),
    (&[L("start_profile")], Admin("vllm.profile")),
    (&[L("stop_profile")], Admin("vllm.profile")),
    (&[L("server_info")], Admin("vllm.server_info")),
    (&[L("tokenizer_info")], Admin("vllm.tokenizer_info")),
    // vLLM, TGI and llama.cpp all serve it (Triton on a port of its own): one name.
    (&[L("metrics")], Admin("common.metrics")),
    //
    // TGI has no model control: the model is fixed at launch. /info and /metrics are read-only;
    // /info is named because it discloses the deployment. /health, /ping, /v2/health/*: Other.
    (&[L("info")], Admin("tgi.info")),
    //
    // llama.cpp tools/server/server.cpp.
    (&[L("slots"), Rest], Admin("llamacpp.slots")),
    (&[L("lora-adapters")], Admin("llamacpp.lora")),
    (&[L("props")], Admin("llamacpp.props")),
    (&[L("models"), Rest], Admin("llamacpp.models")),
    (&[L("cors-proxy")], Admin("llamacpp.cors_proxy")),
    //
    // Triton src/http_server.cc: modelcontrol_regex_, *sharedmemory_regex_, trace_regex_,
    // "/v2/logging", model_regex_'s `trace/setting`. Inference there (/v2/models/{m}/infer,
    // generate) is not a wire format inferguard reads: Other.
    (&[L("v2"), L("repository"), Rest], Admin("triton.model_control")),
    (&[L("v2"), L("systemsharedmemory"), Rest], Admin("triton.shared_memory")),
    (&[L("v2"), L("cudasharedmemory"), Rest], Admin("triton.shared_memory")),
    (&[L("v2"), L("logging")], Admin("triton.logging")),
    (&[L("v2"), L("trace"), Rest], Admin("triton.trace")),
    (&[L("v2"), L("models"), One, L("trace"), Rest], Admin("triton.trace")),
    (&[L("v2"), L("models"), One, L("versions"), One, L("trace"), Rest], Admin("triton.trace")),
];

#[cfg(test)]
mod tests {
    use super::*;

    /// Every inference path, spelled canonically, and its API.
    const INFERENCE: &[(&str, Api)] = &[
        ("/v1/chat/completions", Api::OpenAiChat),
        ("/chat/completions", Api::OpenAiChat),
        ("/v1/completions", Api::OpenAiCompletions),
        ("/completions", Api::OpenAiCompletions),
        ("/v1/responses", Api::OpenAiResponses),
        ("/responses", Api::OpenAiResponses),
        ("/v1/embeddings", Api::OpenAiEmbeddings),
        ("/v1/models", Api::OpenAiModels),
        ("/v1/models/llama3.1:8b", Api::OpenAiModels),
        ("/v1/models/meta-llama/Llama-3.1-8B-Instruct", Api::OpenAiModels),
        ("/v1/audio/transcriptions", Api::OpenAiAudioTranscriptions),
        ("/v1/messages", Api::AnthropicMessages),
        ("/v1/messages/count_tokens", Api::AnthropicCountTokens),
        ("/api/chat", Api::OllamaChat),
        ("/api/generate", Api::OllamaGenerate),
        ("/api/embed", Api::OllamaEmbed),
        ("/api/embeddings", Api::OllamaEmbeddings),
        ("/api/tags", Api::OllamaTags),
        ("/api/show", Api::OllamaShow),
        ("/generate", Api::Tgi),
        ("/generate_stream", Api::Tgi),
    ];

    /// At least one path of every admin endpoint, spelled canonically.
    const ADMIN: &[(&str, &str)] = &[
        ("/api/pull", "ollama.pull"),
        ("/api/push", "ollama.push"),
        ("/api/create", "ollama.create"),
        ("/api/copy", "ollama.copy"),
        ("/api/delete", "ollama.delete"),
        ("/api/blobs/sha256:29fdb92e57cf0827ded04ae6461b5931d01fa595843f55d36f5b275a52087dd2", "ollama.blobs"),
        ("/api/ps", "ollama.ps"),
        ("/api/me", "ollama.account"),
        ("/api/signout", "ollama.account"),
        ("/api/user/keys/c3NoLWVkMjU1MTk", "ollama.account"),
        ("/api/experimental/web_search", "ollama.web"),
        ("/api/experimental/web_fetch", "ollama.web"),
        ("/debug/pprof", "ollama.pprof"),
        ("/debug/pprof/heap", "ollama.pprof"),
        ("/v1/load_lora_adapter", "vllm.lora"),
        ("/v1/unload_lora_adapter", "vllm.lora"),
        ("/sleep", "vllm.sleep"),
        ("/wake_up", "vllm.sleep"),
        ("/is_sleeping", "vllm.sleep"),
        ("/reset_prefix_cache", "vllm.reset"),
        ("/reset_mm_cache", "vllm.reset"),
        ("/reset_encoder_cache", "vllm.reset"),
        ("/collective_rpc", "vllm.rpc"),
        ("/pause", "vllm.pause"),
        ("/resume", "vllm.pause"),
        ("/is_paused", "vllm.pause"),
        ("/abort_requests", "vllm.pause"),
        ("/init_weight_transfer_engine", "vllm.weights"),
        ("/start_weight_update", "vllm.weights"),
        ("/start_draft_weight_update", "vllm.weights"),
        ("/update_weights", "vllm.weights"),
        ("/finish_weight_update", "vllm.weights"),
        ("/update_weight_version", "vllm.weights"),
        ("/weight_info", "vllm.weights"),
        ("/weight_checker", "vllm.weights"),
        ("/get_world_size", "vllm.weights"),
        ("/scale_elastic_ep", "vllm.elastic_ep"),
        ("/is_scaling_elastic_ep", "vllm.elastic_ep"),
        ("/start_profile", "vllm.profile"),
        ("/stop_profile", "vllm.profile"),
        ("/server_info", "vllm.server_info"),
        ("/tokenizer_info", "vllm.tokenizer_info"),
        ("/metrics", "common.metrics"),
        ("/info", "tgi.info"),
        ("/slots", "llamacpp.slots"),
        ("/slots/0", "llamacpp.slots"),
        ("/lora-adapters", "llamacpp.lora"),
        ("/props", "llamacpp.props"),
        ("/models", "llamacpp.models"),
        ("/models/load", "llamacpp.models"),
        ("/models/unload", "llamacpp.models"),
        ("/cors-proxy", "llamacpp.cors_proxy"),
        ("/v2/repository/index", "triton.model_control"),
        ("/v2/repository/models/resnet50/load", "triton.model_control"),
        ("/v2/repository/models/resnet50/unload", "triton.model_control"),
        ("/v2/repository/main/models/resnet50/load", "triton.model_control"),
        ("/v2/systemsharedmemory/region/r0/register", "triton.shared_memory"),
        ("/v2/cudasharedmemory/status", "triton.shared_memory"),
        ("/v2/logging", "triton.logging"),
        ("/v2/trace/setting", "triton.trace"),
        ("/v2/models/resnet50/trace/setting", "triton.trace"),
        ("/v2/models/resnet50/versions/1/trace/setting", "triton.trace"),
    ];

    fn ok(raw: &str) -> Target {
        classify(raw).unwrap_or_else(|e| panic!("{raw}: {e}"))
    }

    #[test]
    fn only_fixed_paths_without_a_query_are_literal() {
        for (path, literal) in [
            ("/v1/chat/completions", true),
            ("/V1/Chat/Completions", true),
            ("/api/pull", true),
            ("/v1/chat/completions?user=jane@x.io", false),
            ("/v1/models/jane@x.io", false),
            ("/v1/users/jane@x.io", false),
            ("/", false),
        ] {
            assert_eq!(ok(path).literal, literal, "{path}");
        }
    }

    #[test]
    fn every_inference_path_is_inference_and_not_rewritten() {
        for &(path, api) in INFERENCE {
            let t = ok(path);
            assert_eq!(t.endpoint, Endpoint::Inference(api), "{path}");
            assert_eq!((t.canonical.as_str(), t.rewritten, t.forward_path.as_str()), (path, false, path));
            let q = format!("{path}?stream=true&a=%20b");
            let t = ok(&q);
            assert_eq!((t.rewritten, t.forward_path.as_str()), (false, q.as_str()), "{q}");
        }
    }

    #[test]
    fn every_admin_path_is_admin_by_its_name() {
        for &(path, name) in ADMIN {
            let t = ok(path);
            assert_eq!(t.endpoint, Endpoint::Admin(name), "{path}");
            assert_eq!((t.canonical.as_str(), t.rewritten), (path, false), "{path}");
        }
    }

    #[test]
    fn the_name_list_and_the_route_table_agree() {
        let names: Vec<&str> = ADMIN_ENDPOINTS.iter().map(|(n, _)| *n).collect();
        for (i, n) in names.iter().enumerate() {
            assert!(!names[..i].contains(n), "{n} twice");
            assert!(ADMIN.iter().any(|(_, a)| a == n), "{n}: no test path");
            assert!(n.contains('.') && !n.starts_with('/'), "{n}");
        }
        for (pattern, e) in ROUTES {
            if let Endpoint::Admin(n) = e {
                assert!(names.contains(n), "{n} routed but not listed");
            }
            // Literals are the canonical spelling: lowercase.
            for s in pattern.iter() {
                if let Seg::Lit(l) = s {
                    assert_eq!(*l, l.to_ascii_lowercase());
                }
            }
        }
    }

    #[test]
    fn other_paths() {
        for (raw, canonical) in [
            ("/", "/"),
            ("//", "/"),
            ("/api/version", "/api/version"),
            ("/api/status", "/api/status"),
            ("/health", "/health"),
            ("/Health/", "/Health"),
            ("/v2/models/resnet50/infer", "/v2/models/resnet50/infer"),
            ("/invocations", "/invocations"),
            ("/tokenize", "/tokenize"),
            // Exact paths only: the old suffix match took these as chat completions.
            ("/openai/v1/chat/completions", "/openai/v1/chat/completions"),
            ("/x/chat/completions", "/x/chat/completions"),
            ("/v1/chat/completions/input_tokens", "/v1/chat/completions/input_tokens"),
            ("/v1/models/a/b/c", "/v1/models/a/b/c"),
            ("/v1/responses/resp_1/cancel", "/v1/responses/resp_1/cancel"),
            ("/api/pullx", "/api/pullx"),
            ("/api/pull%20", "/api/pull%20"),
            ("/v1/chat/completions/../../api/pull", "/v1/api/pull"),
            ("/v1/chat/completions/..%2F..%2Fapi/pull", "/v1/api/pull"),
            ("/%3F/x", "/%3F/x"),
            ("/caf%C3%A9", "/caf%C3%A9"),
            ("/a%25zz", "/a%25zz"),
        ] {
            let t = ok(raw);
            assert_eq!((t.endpoint, t.canonical.as_str()), (Endpoint::Other, canonical), "{raw}");
            assert_eq!(t.rewritten, raw != canonical, "{raw}");
        }
    }

    #[test]
    fn tricks_on_admin_paths() {
        for raw in [
            "//api/pull",
            "/api/./pull",
            "/api/x/../pull",
            "/%2Fapi%2Fpull",
            "/api%2Fpull",
            "/api%2fpull",
            "/API/PULL",
            "/api/pull/",
            "/api/pull//",
            "/%61pi/%70ull",
            "/api/x/%2E%2E/pull",
            "/v1/chat/completions/../../../api/pull",
            "/v1/chat/completions/..%2F..%2F..%2Fapi/pull",
            "/x/%2e%2e/api/pull",
            "/x/.%2e/api/pull",
        ] {
            let t = ok(raw);
            assert_eq!(
                (t.endpoint, t.canonical.as_str(), t.rewritten),
                (Admin("ollama.pull"), "/api/pull", true),
                "{raw}"
            );
            assert_eq!(t.forward_path, "/api/pull");
        }
        let t = ok("/Api/Pull?x=1");
        assert_eq!((t.endpoint, t.rewritten, t.forward_path.as_str()), (Admin("ollama.pull"), true, "/api/pull?x=1"));
        // Variable segments keep their case; fixed ones take the canonical spelling.
        let t = ok("/V2/Repository/Models/ResNet50/LOAD");
        assert_eq!(
            (t.endpoint, t.canonical.as_str()),
            (Admin("triton.model_control"), "/v2/repository/Models/ResNet50/LOAD")
        );
        let t = ok("/API/Blobs/SHA256:AB");
        assert_eq!(t.canonical, "/api/blobs/SHA256:AB");
    }

    #[test]
    fn refusals() {
        use PathError::*;
        for (raw, err) in [
            ("", NotOriginForm),
            ("*", NotOriginForm),
            ("api/pull", NotOriginForm),
            ("http://upstream/api/pull", NotOriginForm),
            ("?/api/pull", NotOriginForm),
            ("/api/pull#x", Fragment),
            ("/v1/chat/completions?x=#", Fragment),
            ("/api/pull%00", Control),
            ("/api/pull%0a", Control),
            ("/api/pull%7F", Control),
            ("/api/pull\t", Unencoded),
            ("/api/ pull", Unencoded),
            ("/api/pull\u{e9}", Unencoded),
            ("/api/pull%", BadEscape),
            ("/api/pull%2", BadEscape),
            ("/api/pull%g0", BadEscape),
            ("/api/%%70ull", BadEscape),
            ("/api/%2570ull", DoubleEncoded),
            ("/api%252Fpull", DoubleEncoded),
            ("/%252e%252e/api/pull", DoubleEncoded),
            ("/api\\pull", Backslash),
            ("/api%5Cpull", Backslash),
            ("/api/%C0%AE%C0%AE/pull", NotUtf8),
            ("/api/pull%FF", NotUtf8),
            ("/..", AboveRoot),
            ("/%2e%2e/api/pull", AboveRoot),
            ("/api/../../pull", AboveRoot),
            ("/v1/chat/completions/../../../../api/pull", AboveRoot),
            // Java servers drop `;x` (`/api/pull;x` is /api/pull there), Go and Python keep it
            // (a 404). Neither reading is taken: refused, as is the encoded spelling.
            ("/api/pull;x", Parameter),
            ("/api;x/pull", Parameter),
            ("/api/pull%3Bx", Parameter),
            ("/v1/chat/completions;a=b", Parameter),
        ] {
            assert_eq!(classify(raw), Err(err), "{raw:?}");
        }
        // The query is not the path: anything goes there but `#`.
        assert_eq!(ok("/v1/models?q=%00;\\%2570").forward_path, "/v1/models?q=%00;\\%2570");
        assert_eq!(PathError::BadEscape.to_string(), "the path has an invalid percent-escape");
    }

    #[test]
    fn inference_spellings_are_rewritten_to_the_canonical_one() {
        for (raw, api, forward) in [
            ("/v1//chat/completions", Api::OpenAiChat, "/v1/chat/completions"),
            ("/V1/Chat/Completions?stream=1", Api::OpenAiChat, "/v1/chat/completions?stream=1"),
            ("/v1/chat/completions/", Api::OpenAiChat, "/v1/chat/completions"),
            ("/v1/./messages?beta=true", Api::AnthropicMessages, "/v1/messages?beta=true"),
            ("/api/x/../chat", Api::OllamaChat, "/api/chat"),
            ("/v1%2Fembeddings", Api::OpenAiEmbeddings, "/v1/embeddings"),
            ("/v1/models/Llama%3A8B", Api::OpenAiModels, "/v1/models/Llama:8B"),
            ("/V1/MODELS/meta-llama%2FLlama-3", Api::OpenAiModels, "/v1/models/meta-llama/Llama-3"),
            ("/v1/models/a%20b%3Fc%25", Api::OpenAiModels, "/v1/models/a%20b%3Fc%25"),
            ("/v1/models/caf%c3%a9", Api::OpenAiModels, "/v1/models/caf%C3%A9"),
        ] {
            let t = ok(raw);
            assert_eq!(t.endpoint, Endpoint::Inference(api), "{raw}");
            assert_eq!(t.forward_path, forward, "{raw}");
            assert_eq!(t.rewritten, raw.split('?').next() != Some(&t.canonical), "{raw}");
        }
        assert!(!ok("/v1/models/a%20b%3Fc%25").rewritten);
        assert!(ok("/v1/models/caf%c3%a9").rewritten);
    }

    #[test]
    fn canonical_forms_are_fixed_points() {
        // What is forwarded classifies the same again, unchanged: the upstream (or a second
        // inferguard) sees what was judged.
        let paths = INFERENCE.iter().map(|(p, _)| *p).chain(ADMIN.iter().map(|(p, _)| *p));
        for raw in paths.chain(["/V1//Models/a%2Fb%20c", "/x/%3F/../y/caf%C3%A9/", "/API/BLOBS/A%40B"]) {
            let t = ok(raw);
            let again = ok(&t.forward_path);
            assert_eq!((again.endpoint, &again.canonical, again.rewritten), (t.endpoint, &t.canonical, false), "{raw}");
        }
    }

    #[test]
    fn allow_entries() {
        let pull = ok("/API/pull");
        assert!(allowed_by(&pull, "ollama.pull"));
        assert!(!allowed_by(&pull, "ollama.push"));
        assert!(!allowed_by(&pull, "Ollama.Pull"));
        // A path pattern never opens an admin endpoint, even spelled exactly.
        for pattern in ["/", "/api/", "/api/pull"] {
            assert!(!allowed_by(&pull, pattern), "{pattern}");
        }
        let infer = ok("/v2/models/resnet50/infer");
        for (entry, yes) in [
            ("/", true),
            ("/v2/", true),
            ("/v2/models/", true),
            ("/v2/models/resnet50/infer", true),
            ("/v2/models/resnet50/infer/", true),
            ("/v2/models/resnet", false),
            ("/v2/models/resnet/", false),
            ("/v2/model/", false),
            ("/V2/", false),
            ("v2/models/", false),
            ("triton.model_control", false),
            ("", false),
        ] {
            assert_eq!(allowed_by(&infer, entry), yes, "{entry}");
        }
        // The pattern is held against the judged form, not the raw one.
        let sneaky = ok("/v2/models/../repository/index");
        assert_eq!(sneaky.endpoint, Admin("triton.model_control"));
        assert!(!allowed_by(&sneaky, "/v2/models/"));
        let other = ok("/health//?x");
        assert!(allowed_by(&other, "/health") && allowed_by(&other, "/health/"));
        assert!(!allowed_by(&other, "/healthz"));
        assert!(allowed_by(&ok("/v1/chat/completions"), "/v1/"));
    }

    /// A named rewrite of a raw path.
    type Trick = (&'static str, fn(&str) -> String);

    /// The spellings a client can use to reach an admin path through a classifier that compares
    /// strings. Each returns a raw path the upstream would route to the same place.
    const TRICKS: &[Trick] = &[
        ("percent-encode letters", |p| {
            p.bytes()
                .map(|b| if b.is_ascii_alphabetic() { format!("%{b:02x}") } else { (b as char).to_string() })
                .collect()
        }),
        ("uppercase", |p| p.to_ascii_uppercase()),
        ("dot segment", |p| p.replacen('/', "/./", 1)),
        ("up from a sibling", |p| format!("/x{p}").replacen("/x/", "/x/../", 1)),
        ("up from chat completions", |p| format!("/v1/chat/completions/../../..{p}")),
        ("encoded dot-dot", |p| format!("/v1/x/%2e%2E/.%2e{p}")),
        ("encode slashes", |p| format!("/{}", p[1..].replace('/', "%2F"))),
        ("double slashes", |p| p.replace('/', "//")),
        ("trailing slash", |p| format!("{p}/")),
        ("query", |p| format!("{p}?x=1&y=/v1/chat/completions")),
    ];

    /// Refused, whatever else is done to the path.
    const FATAL: &[Trick] = &[
        ("NUL", |p| path_end(p, "%00")),
        ("double-encoded", |p| match p.as_bytes()[1] {
            b'%' => format!("/%25{}", &p[2..]),
            c => format!("/%25{c:02X}{}", &p[2..]),
        }),
        ("matrix parameter", |p| path_end(p, ";v1/chat/completions")),
        ("backslash", |p| format!("/\\{}", &p[1..])),
        ("encoded backslash", |p| format!("/%5c{}", &p[1..])),
        ("fragment", |p| format!("{p}#/v1/chat/completions")),
    ];

    /// `p` with `s` at the end of its path, before any query.
    fn path_end(p: &str, s: &str) -> String {
        let i = p.find('?').unwrap_or(p.len());
        format!("{}{s}{}", &p[..i], &p[i..])
    }

    #[test]
    fn no_combination_of_tricks_turns_an_admin_path_into_anything_else() {
        let mut checked = 0;
        for &(path, name) in ADMIN {
            for mask in 0u32..(1 << TRICKS.len()) {
                let mut raw = path.to_string();
                for (i, (_, f)) in TRICKS.iter().enumerate() {
                    if mask & (1 << i) != 0 {
                        raw = f(&raw);
                    }
                }
                let applied: Vec<&str> =
                    TRICKS.iter().enumerate().filter(|(i, _)| mask & (1 << i) != 0).map(|(_, (n, _))| *n).collect();
                match classify(&raw) {
                    Ok(t) => assert_eq!(t.endpoint, Admin(name), "{raw} ({applied:?})"),
                    Err(e) => panic!("{raw} ({applied:?}): {e}"),
                }
                for (fatal, f) in FATAL {
                    let bad = f(&raw);
                    assert!(classify(&bad).is_err(), "{bad} ({applied:?} + {fatal})");
                }
                checked += 1;
            }
        }
        assert_eq!(checked, ADMIN.len() << TRICKS.len());
    }
}
