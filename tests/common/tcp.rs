//! A bare TCP server for fault injection, where a real store cannot misbehave on demand:
//! a "proxy" that records who connected, a server that accepts and never answers, and one
//! that echoes the whole request back in its error body. Bound on `127.0.0.1:0`, stopped
//! on drop.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the server does with each connection.
#[derive(Clone, Copy)]
pub enum Behaviour {
    /// Reads the request head, records it, closes.
    Record,
    /// Accepts and keeps the connection open without a byte of answer.
    Silent,
    /// Answers `status` with `body(request)`: the whole request (head and body) handed to
    /// `body`, which builds the JSON error a store would send.
    Echo {
        status: u16,
        body: fn(&str) -> String,
    },
}

pub struct TcpServer {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl TcpServer {
    pub fn start(behaviour: Behaviour) -> TcpServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().unwrap().to_string();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen, stopped) = (requests.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming() {
                if stopped.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(mut stream) = stream else { continue };
                match behaviour {
                    Behaviour::Silent => {
                        seen.lock().unwrap().push(String::new());
                        held.push(stream);
                    }
                    Behaviour::Record => {
                        let request = read_request(&mut stream);
                        seen.lock().unwrap().push(request);
                    }
                    Behaviour::Echo { status, body } => {
                        let request = read_request(&mut stream);
                        let text = body(&request);
                        seen.lock().unwrap().push(request);
                        let _ = write!(
                            stream,
                            "HTTP/1.1 {status} Error\r\nContent-Type: application/json\r\n\
                             Content-Length: {}\r\nConnection: close\r\n\r\n{text}",
                            text.len()
                        );
                    }
                }
            }
        });
        TcpServer {
            addr,
            requests,
            stop,
        }
    }

    /// Every request (head and body as text; "" for a silent accept) so far.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for TcpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(&self.addr);
    }
}

/// The request head and as much body as Content-Length announces (5 s at most).
fn read_request(stream: &mut TcpStream) -> String {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = find(&data, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if data.len() >= end + 4 + length {
                break;
            }
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&data).into_owned()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The request as a JSON string literal (quotes included), for an echoing error body.
pub fn json_string(text: &str) -> String {
    serde_json::Value::String(text.to_owned()).to_string()
}
