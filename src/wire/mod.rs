//! Wire formats: which inference API a request speaks, and how its bodies are framed.

mod bytes;
pub mod encoding;
pub mod endpoint;
pub mod json;
pub mod multipart;
pub mod sniff;
pub mod sse;
pub mod url;

/// The inference API a request path belongs to. Chosen from the path alone, so the decision is
/// made before any body byte arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// `POST /v1/chat/completions`.
    OpenAiChat,
    /// `POST /v1/completions` (legacy).
    OpenAiCompletions,
    /// `POST /v1/responses`.
    OpenAiResponses,
    /// `POST /v1/embeddings`.
    OpenAiEmbeddings,
    /// `GET /v1/models` and `/v1/models/{id}`.
    OpenAiModels,
    /// `POST /v1/audio/transcriptions` (multipart).
    OpenAiAudioTranscriptions,
    /// `POST /v1/messages`.
    AnthropicMessages,
    /// `POST /v1/messages/count_tokens`.
    AnthropicCountTokens,
    /// `POST /api/chat`.
    OllamaChat,
    /// `POST /api/generate`.
    OllamaGenerate,
    /// `POST /api/embed`.
    OllamaEmbed,
    /// `POST /api/embeddings` (the older embedding API: `prompt`, not `input`).
    OllamaEmbeddings,
    /// `GET /api/tags`: the local models.
    OllamaTags,
    /// `POST /api/show`: one model's details.
    OllamaShow,
    /// `POST /generate` and `/generate_stream`.
    Tgi,
    /// Anything else: every JSON string, or the raw text, is scanned.
    Other,
}

impl Api {
    /// Classifies a request path (query string ignored): the API of an inference endpoint, and
    /// [`Api::Other`] for everything else, including a path `endpoint::classify` refuses. Only
    /// exact paths count: `/x/v1/chat/completions` is not chat completions (see
    /// `endpoint::classify` for the normal form).
    pub fn from_path(path: &str) -> Api {
        match endpoint::classify(path) {
            Ok(endpoint::Target { endpoint: endpoint::Endpoint::Inference(api), .. }) => api,
            _ => Api::Other,
        }
    }

    /// The stable name used in audit records.
    pub fn as_str(self) -> &'static str {
        match self {
            Api::OpenAiChat => "openai.chat_completions",
            Api::OpenAiCompletions => "openai.completions",
            Api::OpenAiResponses => "openai.responses",
            Api::OpenAiEmbeddings => "openai.embeddings",
            Api::OpenAiModels => "openai.models",
            Api::OpenAiAudioTranscriptions => "openai.audio_transcriptions",
            Api::AnthropicMessages => "anthropic.messages",
            Api::AnthropicCountTokens => "anthropic.count_tokens",
            Api::OllamaChat => "ollama.chat",
            Api::OllamaGenerate => "ollama.generate",
            Api::OllamaEmbed => "ollama.embed",
            Api::OllamaEmbeddings => "ollama.embeddings",
            Api::OllamaTags => "ollama.tags",
            Api::OllamaShow => "ollama.show",
            Api::Tgi => "tgi.generate",
            Api::Other => "other",
        }
    }

    /// The error family its clients understand.
    pub fn error_shape(self) -> ErrorShape {
        match self {
            Api::AnthropicMessages | Api::AnthropicCountTokens => ErrorShape::Anthropic,
            Api::OllamaChat
            | Api::OllamaGenerate
            | Api::OllamaEmbed
            | Api::OllamaEmbeddings
            | Api::OllamaTags
            | Api::OllamaShow => ErrorShape::Ollama,
            _ => ErrorShape::OpenAi,
        }
    }
}

/// The error body shape an API's clients parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorShape {
    /// `{"error":{"message","type","param","code"}}`.
    OpenAi,
    /// `{"type":"error","error":{"type","message"}}`.
    Anthropic,
    /// `{"error":"..."}`.
    Ollama,
}

impl ErrorShape {
    /// Builds the JSON error body. `kind` is a stable machine-readable code such as
    /// `content_blocked`; `message` is for people and never contains a redacted value.
    pub fn body(self, status: u16, kind: &str, message: &str) -> String {
        let msg = json::encode_string(message);
        let code = json::encode_string(kind);
        match self {
            ErrorShape::OpenAi => {
                let ty = if status >= 500 { "server_error" } else { "invalid_request_error" };
                format!(r#"{{"error":{{"message":{msg},"type":"{ty}","param":null,"code":{code}}}}}"#)
            }
            ErrorShape::Anthropic => {
                let ty = match status {
                    401 => "authentication_error",
                    403 => "permission_error",
                    413 => "request_too_large",
                    429 => "rate_limit_error",
                    s if s >= 500 => "api_error",
                    _ => "invalid_request_error",
                };
                format!(r#"{{"type":"error","error":{{"type":"{ty}","message":{msg}}}}}"#)
            }
            ErrorShape::Ollama => format!(r#"{{"error":{msg}}}"#),
        }
    }
}

/// The error a client of `api` understands, framed for a body of `shape` that is already under
/// way (an SSE event, a JSON line, or a line of text).
pub fn error_event(shape: sniff::Shape, api: Api, code: &str, message: &str) -> String {
    use sniff::Shape;
    let m = json::encode_string(message);
    let c = json::encode_string(code);
    match (shape, api) {
        (Shape::Sse, Api::AnthropicMessages) => {
            format!("event: error\ndata: {}\n\n", ErrorShape::Anthropic.body(403, code, message))
        }
        (Shape::Sse, Api::OpenAiResponses) => format!(
            "event: error\ndata: {{\"type\":\"error\",\"code\":{c},\"message\":{m},\"param\":null,\"error\":{{\"type\":\"invalid_request_error\",\"code\":{c},\"message\":{m}}}}}\n\n"
        ),
        (Shape::Sse, Api::Tgi) => format!("data: {{\"error\":{m},\"error_type\":{c}}}\n\n"),
        (Shape::Sse, _) => format!("data: {}\n\n", ErrorShape::OpenAi.body(403, code, message)),
        // Binary content is cut short: nothing can be added to it that a reader would read.
        (Shape::Binary, _) => String::new(),
        (Shape::Text | Shape::Wide, _) => format!("\n[inferguard: {message}]\n"),
        (Shape::Json | Shape::Ndjson, _) => format!("{{\"error\":{m}}}\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_paths() {
        for (p, a) in [
            ("/v1/chat/completions", Api::OpenAiChat),
            ("/V1//chat/completions/?x=1", Api::OpenAiChat),
            // Exact paths only (was OpenAiChat by suffix): a prefix-mounted API is not what the
            // upstream serves, so it is judged Other (refused unless an allow pattern opens it).
            ("/openai/v1/chat/completions?x=1", Api::Other),
            ("/v1/completions", Api::OpenAiCompletions),
            ("/v1/responses", Api::OpenAiResponses),
            ("/v1/messages", Api::AnthropicMessages),
            ("/api/chat", Api::OllamaChat),
            ("/api/generate", Api::OllamaGenerate),
            ("/generate_stream", Api::Tgi),
            // Was Other: embeddings now have an API of their own.
            ("/v1/embeddings", Api::OpenAiEmbeddings),
            ("/api/pull", Api::Other),
            ("/api/pull%00", Api::Other),
        ] {
            assert_eq!(Api::from_path(p), a, "{p}");
        }
    }

    #[test]
    fn api_names_are_stable_and_distinct() {
        let all = [
            (Api::OpenAiChat, "openai.chat_completions"),
            (Api::OpenAiCompletions, "openai.completions"),
            (Api::OpenAiResponses, "openai.responses"),
            (Api::OpenAiEmbeddings, "openai.embeddings"),
            (Api::OpenAiModels, "openai.models"),
            (Api::OpenAiAudioTranscriptions, "openai.audio_transcriptions"),
            (Api::AnthropicMessages, "anthropic.messages"),
            (Api::AnthropicCountTokens, "anthropic.count_tokens"),
            (Api::OllamaChat, "ollama.chat"),
            (Api::OllamaGenerate, "ollama.generate"),
            (Api::OllamaEmbed, "ollama.embed"),
            (Api::OllamaEmbeddings, "ollama.embeddings"),
            (Api::OllamaTags, "ollama.tags"),
            (Api::OllamaShow, "ollama.show"),
            (Api::Tgi, "tgi.generate"),
            (Api::Other, "other"),
        ];
        for (i, (api, name)) in all.iter().enumerate() {
            assert_eq!(api.as_str(), *name);
            assert!(all[..i].iter().all(|(_, n)| n != name), "{name} twice");
            // The error family follows the API's vendor.
            let shape = match name.split('.').next() {
                Some("anthropic") => ErrorShape::Anthropic,
                Some("ollama") => ErrorShape::Ollama,
                _ => ErrorShape::OpenAi,
            };
            assert_eq!(api.error_shape(), shape, "{name}");
        }
    }

    #[test]
    fn error_bodies_are_valid_json_in_each_shape() {
        let o: serde_json::Value =
            serde_json::from_str(&ErrorShape::OpenAi.body(403, "content_blocked", "no \"x\"")).unwrap();
        assert_eq!(o["error"]["code"], "content_blocked");
        assert_eq!(o["error"]["message"], "no \"x\"");
        assert_eq!(o["error"]["type"], "invalid_request_error");
        let a: serde_json::Value =
            serde_json::from_str(&ErrorShape::Anthropic.body(403, "content_blocked", "m")).unwrap();
        assert_eq!(a["type"], "error");
        assert_eq!(a["error"]["type"], "permission_error");
        let l: serde_json::Value = serde_json::from_str(&ErrorShape::Ollama.body(502, "k", "m")).unwrap();
        assert_eq!(l["error"], "m");
    }
}
