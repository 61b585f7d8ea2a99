//! Wire formats: which inference API a request speaks, and how its bodies are framed.

mod bytes;
pub mod encoding;
pub mod json;
pub mod multipart;
pub mod sse;

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
    /// `POST /v1/messages`.
    AnthropicMessages,
    /// `POST /api/chat`.
    OllamaChat,
    /// `POST /api/generate`.
    OllamaGenerate,
    /// `POST /generate` and `/generate_stream`.
    Tgi,
    /// Anything else: every JSON string, or the raw text, is scanned.
    Other,
}

impl Api {
    /// Classifies a request path (query string ignored).
    pub fn from_path(path: &str) -> Api {
        let path = path.split(['?', '#']).next().unwrap_or("");
        let path = path.trim_end_matches('/');
        if path.ends_with("/chat/completions") {
            Api::OpenAiChat
        } else if path.ends_with("/v1/completions") || path == "/completions" {
            Api::OpenAiCompletions
        } else if path.ends_with("/v1/responses") || path == "/responses" {
            Api::OpenAiResponses
        } else if path.ends_with("/v1/messages") {
            Api::AnthropicMessages
        } else if path == "/api/chat" {
            Api::OllamaChat
        } else if path == "/api/generate" {
            Api::OllamaGenerate
        } else if path == "/generate" || path == "/generate_stream" {
            Api::Tgi
        } else {
            Api::Other
        }
    }

    /// The stable name used in audit records.
    pub fn as_str(self) -> &'static str {
        match self {
            Api::OpenAiChat => "openai.chat_completions",
            Api::OpenAiCompletions => "openai.completions",
            Api::OpenAiResponses => "openai.responses",
            Api::AnthropicMessages => "anthropic.messages",
            Api::OllamaChat => "ollama.chat",
            Api::OllamaGenerate => "ollama.generate",
            Api::Tgi => "tgi.generate",
            Api::Other => "other",
        }
    }

    /// The error family its clients understand.
    pub fn error_shape(self) -> ErrorShape {
        match self {
            Api::AnthropicMessages => ErrorShape::Anthropic,
            Api::OllamaChat | Api::OllamaGenerate => ErrorShape::Ollama,
            _ => ErrorShape::OpenAi,
        }
    }
}

/// How a body is framed, from its `content-type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// `application/json` and `*+json`.
    Json,
    /// `text/event-stream`.
    Sse,
    /// `application/x-ndjson`, `application/jsonl`.
    Ndjson,
    /// Other text: `text/*`, XML, form data, a missing content-type.
    Text,
    /// Media and other binary content, which carries no text to scan.
    Binary,
}

impl BodyKind {
    /// Classifies a `content-type` header value (absent means text: nothing passes unscanned
    /// because a server forgot a header).
    pub fn from_content_type(ct: Option<&str>) -> BodyKind {
        let Some(ct) = ct else { return BodyKind::Text };
        let mime = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        match mime.as_str() {
            "application/json" => BodyKind::Json,
            "text/event-stream" => BodyKind::Sse,
            "application/x-ndjson" | "application/ndjson" | "application/jsonl" | "application/x-jsonlines" => {
                BodyKind::Ndjson
            }
            m if m.ends_with("+json") => BodyKind::Json,
            m if m.starts_with("text/")
                || m.ends_with("+xml")
                || m == "application/xml"
                || m == "application/x-www-form-urlencoded"
                || m == "application/javascript"
                || m.is_empty() =>
            {
                BodyKind::Text
            }
            m if m.starts_with("image/")
                || m.starts_with("audio/")
                || m.starts_with("video/")
                || m == "application/octet-stream"
                || m == "application/pdf"
                || m == "application/zip"
                || m == "application/grpc"
                || m == "application/x-protobuf" =>
            {
                BodyKind::Binary
            }
            // Unknown types are scanned as text: an unreadable one fails closed later.
            _ => BodyKind::Text,
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
                    403 => "permission_error",
                    413 => "request_too_large",
                    s if s >= 500 => "api_error",
                    _ => "invalid_request_error",
                };
                format!(r#"{{"type":"error","error":{{"type":"{ty}","message":{msg}}}}}"#)
            }
            ErrorShape::Ollama => format!(r#"{{"error":{msg}}}"#),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_paths() {
        for (p, a) in [
            ("/v1/chat/completions", Api::OpenAiChat),
            ("/openai/v1/chat/completions?x=1", Api::OpenAiChat),
            ("/v1/completions", Api::OpenAiCompletions),
            ("/v1/responses", Api::OpenAiResponses),
            ("/v1/messages", Api::AnthropicMessages),
            ("/api/chat", Api::OllamaChat),
            ("/api/generate", Api::OllamaGenerate),
            ("/generate_stream", Api::Tgi),
            ("/v1/embeddings", Api::Other),
        ] {
            assert_eq!(Api::from_path(p), a, "{p}");
        }
    }

    #[test]
    fn classifies_content_types() {
        for (ct, k) in [
            (Some("application/json; charset=utf-8"), BodyKind::Json),
            (Some("application/problem+json"), BodyKind::Json),
            (Some("text/event-stream"), BodyKind::Sse),
            (Some("application/x-ndjson"), BodyKind::Ndjson),
            (Some("text/plain"), BodyKind::Text),
            (None, BodyKind::Text),
            (Some("application/vnd.weird"), BodyKind::Text),
            (Some("image/png"), BodyKind::Binary),
        ] {
            assert_eq!(BodyKind::from_content_type(ct), k, "{ct:?}");
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
