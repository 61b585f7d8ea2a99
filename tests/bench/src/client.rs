//! A minimal HTTP/1.1-over-TLS load client: keep-alive connections, one thread each, exact
//! per-request timings (latency, time to first token).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::{pem::PemObject, CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

pub fn tls_config(ca: &str) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("read CA") {
        roots.add(cert.expect("CA certificate")).expect("add CA");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(cfg)
}

type Tls = StreamOwned<ClientConnection, TcpStream>;

pub struct Conn {
    reader: BufReader<Tls>,
}

/// One response's timings.
pub struct Timing {
    pub status: u16,
    pub latency: Duration,
    /// Time until the first non-empty `"content":"..."` arrived (streams only).
    pub first_token: Option<Duration>,
    /// Time until the first body bytes arrived (streams only).
    pub first_byte: Option<Duration>,
    pub body_len: usize,
}

impl Conn {
    pub fn open(cfg: &Arc<ClientConfig>, port: u16) -> std::io::Result<Conn> {
        let tcp = TcpStream::connect(("127.0.0.1", port))?;
        tcp.set_nodelay(true)?;
        tcp.set_read_timeout(Some(Duration::from_secs(60)))?;
        let name = ServerName::try_from("localhost").expect("server name");
        let tls = ClientConnection::new(Arc::clone(cfg), name).map_err(std::io::Error::other)?;
        Ok(Conn { reader: BufReader::with_capacity(64 * 1024, StreamOwned::new(tls, tcp)) })
    }

    /// Sends one POST and reads the whole response.
    pub fn post(&mut self, path: &str, headers: &[(&str, &str)], body: &[u8]) -> std::io::Result<Timing> {
        let mut req = format!(
            "POST {path} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        let start = Instant::now();
        let w = self.reader.get_mut();
        w.write_all(req.as_bytes())?;
        w.write_all(body)?;
        w.flush()?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status: u16 = line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let mut length = None;
        let mut chunked = false;
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            let h = line.trim_end();
            if h.is_empty() {
                break;
            }
            let (k, v) = h.split_once(':').unwrap_or((h, ""));
            match k.to_ascii_lowercase().as_str() {
                "content-length" => length = v.trim().parse::<usize>().ok(),
                "transfer-encoding" => chunked = v.to_ascii_lowercase().contains("chunked"),
                _ => {}
            }
        }
        let mut first_token = None;
        let mut first_byte = None;
        let mut body_len = 0;
        let mut seen = Vec::new();
        if chunked {
            loop {
                line.clear();
                self.reader.read_line(&mut line)?;
                let n = usize::from_str_radix(line.trim(), 16).map_err(std::io::Error::other)?;
                let mut chunk = vec![0; n + 2];
                self.reader.read_exact(&mut chunk)?;
                if n == 0 {
                    break;
                }
                body_len += n;
                first_byte.get_or_insert_with(|| start.elapsed());
                if first_token.is_none() {
                    seen.extend_from_slice(&chunk[..n]);
                    if has_token(&seen) {
                        first_token = Some(start.elapsed());
                    }
                }
            }
        } else if let Some(n) = length {
            let mut b = vec![0; n];
            self.reader.read_exact(&mut b)?;
            body_len = n;
        }
        Ok(Timing { status, latency: start.elapsed(), first_token, first_byte, body_len })
    }
}

/// Whether the bytes so far hold a non-empty `"content":"..."` delta.
fn has_token(b: &[u8]) -> bool {
    let pat = b"\"content\": \"";
    let pat2 = b"\"content\":\"";
    for p in [&pat[..], &pat2[..]] {
        let mut i = 0;
        while let Some(at) = b[i..].windows(p.len()).position(|w| w == p) {
            let after = i + at + p.len();
            if after < b.len() && b[after] != b'"' {
                return true;
            }
            i = after;
            if i >= b.len() {
                break;
            }
        }
    }
    false
}

/// Runs `conns` connections for `dur`, each posting `body` in a loop.
pub fn load(
    cfg: &Arc<ClientConfig>,
    port: u16,
    conns: usize,
    dur: Duration,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<Timing> {
    let deadline = Instant::now() + dur;
    let headers: Vec<(String, String)> = headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let threads: Vec<_> = (0..conns)
        .map(|_| {
            let cfg = Arc::clone(cfg);
            let headers = headers.clone();
            let body = body.to_vec();
            std::thread::spawn(move || {
                let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                let mut out = Vec::new();
                let Ok(mut c) = Conn::open(&cfg, port) else { return out };
                while Instant::now() < deadline {
                    match c.post("/v1/chat/completions", &h, &body) {
                        Ok(t) => out.push(t),
                        Err(_) => match Conn::open(&cfg, port) {
                            Ok(n) => c = n,
                            Err(_) => break,
                        },
                    }
                }
                out
            })
        })
        .collect();
    threads.into_iter().flat_map(|t| t.join().unwrap_or_default()).collect()
}
