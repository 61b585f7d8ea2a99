//! A fast upstream for benchmarks: canned inference answers over HTTP/1.1 keep-alive, one thread
//! per connection, so that Envoy (not the stand-in) is what the load measures.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crate::answers::Answers;

/// Starts the upstream on `listener`; runs until the process exits.
pub fn serve(listener: TcpListener, answers: Arc<Answers>) {
    thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let answers = Arc::clone(&answers);
            thread::spawn(move || {
                let _ = conn.set_nodelay(true);
                let _ = handle(conn, &answers);
            });
        }
    });
}

fn handle(conn: TcpStream, answers: &Answers) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut conn = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut length = 0usize;
        let mut scenario = String::new();
        let mut pace_us = 0u64;
        loop {
            let mut h = String::new();
            reader.read_line(&mut h)?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (k, v) = h.split_once(':').unwrap_or((h, ""));
            match k.to_ascii_lowercase().as_str() {
                "content-length" => length = v.trim().parse().unwrap_or(0),
                "x-bench" => scenario = v.trim().to_string(),
                "x-bench-pace-us" => pace_us = v.trim().parse().unwrap_or(0),
                _ => {}
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        let fixed = match scenario.as_str() {
            "json-1k" => Some(&answers.json_1k),
            "json-64k" => Some(&answers.json_64k),
            "json-1m" => Some(&answers.json_1m),
            "sse-500" => None,
            _ => Some(&answers.small),
        };
        match fixed {
            Some(b) => {
                let head =
                    format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n", b.len());
                conn.write_all(head.as_bytes())?;
                conn.write_all(b)?;
            }
            None => {
                conn.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n",
                )?;
                for ev in &answers.sse_events {
                    conn.write_all(format!("{:x}\r\n", ev.len()).as_bytes())?;
                    conn.write_all(ev)?;
                    conn.write_all(b"\r\n")?;
                    conn.flush()?;
                    if pace_us > 0 {
                        thread::sleep(Duration::from_micros(pace_us));
                    }
                }
                conn.write_all(b"0\r\n\r\n")?;
            }
        }
        conn.flush()?;
    }
}
