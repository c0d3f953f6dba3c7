//! The store watcher's long-poll (`GET /v1/runtime/revision?wait=55`), on a connection of
//! its own per request: HTTP/1.1 over a std `TcpStream`, with rustls for https.
//!
//! Why not reqwest, which `fetch` uses: a long-poll waits up to a minute, and for all that
//! time reqwest keeps the request's headers (for redirects) and hyper keeps the encoded
//! request in the connection's write buffer, so two more copies of the token sat in
//! agent-run's memory for as long as the watcher ran. Here the request is composed in one
//! buffer sized up front, written, and wiped before the first byte of the answer is read;
//! rustls encrypts on write and keeps no plaintext once the handshake is done. The answer
//! carries revision numbers only. `Connection: close`, so the body ends where the stream
//! does. A `--proxy` is not spoken here: with one, the watcher uses reqwest (see `store`).

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use zeroize::Zeroizing;

/// The longest answer accepted: a revision or an error body is a few dozen bytes.
const MAX_ANSWER: usize = 64 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Where the store is and how to talk to it; built once per watcher.
pub struct Poller {
    host: String,
    port: u16,
    /// `Host:` header value (host, and port when not the scheme's default).
    authority: String,
    tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
}

/// One answer: status and body (numbers and error codes only, but wiped all the same).
pub struct Answer {
    pub status: u16,
    pub body: Zeroizing<Vec<u8>>,
}

impl Poller {
    /// `url`: the store's base URL (`http(s)://host:port`); `ca_pem`: extra trusted CAs.
    pub fn new(url: &reqwest::Url, ca_pem: Option<&[u8]>) -> Result<Poller, String> {
        let host = url.host_str().ok_or("no host")?.to_owned();
        let port = url.port_or_known_default().ok_or("no port")?;
        let authority = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.clone(),
        };
        let tls = match url.scheme() {
            "https" => {
                let name = host.trim_start_matches('[').trim_end_matches(']');
                let name = ServerName::try_from(name.to_owned())
                    .map_err(|e| format!("{host}: not a TLS server name: {e}"))?;
                Some((tls_config(ca_pem)?, name))
            }
            _ => None,
        };
        Ok(Poller {
            host,
            port,
            authority,
            tls,
        })
    }

    /// `GET path_and_query` with `Authorization: Bearer <token>`, in one buffer sized
    /// before the first write (a Vec that grows leaves copies behind) and wiped on drop.
    /// Called while the token is lent out; `send` runs after the loan has ended.
    pub fn request(&self, path_and_query: &str, token: &str) -> Zeroizing<Vec<u8>> {
        let parts: [&[u8]; 7] = [
            b"GET ",
            path_and_query.as_bytes(),
            b" HTTP/1.1\r\nHost: ",
            self.authority.as_bytes(),
            b"\r\nAccept: application/json\r\nConnection: close\r\nAuthorization: Bearer ",
            token.as_bytes(),
            b"\r\n\r\n",
        ];
        let mut request = Zeroizing::new(Vec::with_capacity(parts.iter().map(|p| p.len()).sum()));
        parts.iter().for_each(|p| request.extend_from_slice(p));
        request
    }

    /// Sends `request` (wiped right after writing) on a new connection and reads the whole
    /// answer, waiting at most `timeout` for it.
    pub fn send(
        &self,
        mut request: Zeroizing<Vec<u8>>,
        timeout: Duration,
    ) -> Result<Answer, String> {
        let stream = self.connect()?;
        stream
            .set_read_timeout(Some(timeout))
            .and_then(|()| stream.set_write_timeout(Some(CONNECT_TIMEOUT)))
            .map_err(|e| e.to_string())?;
        let mut answer = Zeroizing::new(Vec::with_capacity(4096));
        match &self.tls {
            None => exchange(stream, &mut request, &mut answer)?,
            Some((config, name)) => {
                let conn = rustls::ClientConnection::new(config.clone(), name.clone())
                    .map_err(|e| format!("TLS: {e}"))?;
                exchange(
                    rustls::StreamOwned::new(conn, stream),
                    &mut request,
                    &mut answer,
                )?;
            }
        }
        parse(answer)
    }

    fn connect(&self) -> Result<TcpStream, String> {
        let addresses = (
            self.host.trim_start_matches('[').trim_end_matches(']'),
            self.port,
        )
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {}: {e}", self.host))?;
        let mut last = format!("{} resolves to no address", self.host);
        for address in addresses {
            match TcpStream::connect_timeout(&address, CONNECT_TIMEOUT) {
                Ok(stream) => return Ok(stream),
                Err(e) => last = format!("connection failed: {e}"),
            }
        }
        Err(last)
    }
}

/// Writes the request, wipes it, reads the answer to the end of the stream.
fn exchange(
    mut stream: impl Read + Write,
    request: &mut Zeroizing<Vec<u8>>,
    answer: &mut Zeroizing<Vec<u8>>,
) -> Result<(), String> {
    let written = stream.write_all(request).and_then(|()| stream.flush());
    zeroize::Zeroize::zeroize(&mut **request);
    written.map_err(|e| io_reason(&e))?;
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) if answer.len() + n > MAX_ANSWER => return Err("answer too large".into()),
            Ok(n) => {
                if answer.len() + n > answer.capacity() {
                    // Grown by hand into a fresh buffer, the old one wiped as it goes.
                    let mut bigger = Zeroizing::new(Vec::with_capacity(answer.capacity() * 2 + n));
                    bigger.extend_from_slice(answer);
                    *answer = bigger;
                }
                answer.extend_from_slice(&buf[..n]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            // A TLS peer that closes without close_notify: the answer is complete if the
            // head and the body length say so, which `parse` checks.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !answer.is_empty() => {
                return Ok(())
            }
            Err(e) => return Err(io_reason(&e)),
        }
    }
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => "timed out".into(),
        _ => e.to_string(),
    }
}

/// Status line, headers, then a body by Content-Length, chunks, or up to the end.
fn parse(answer: Zeroizing<Vec<u8>>) -> Result<Answer, String> {
    let bad = || "unreadable HTTP answer".to_owned();
    let end = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(bad)?;
    let head = std::str::from_utf8(&answer[..end]).map_err(|_| bad())?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    let mut length = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse::<usize>().map_err(|_| bad())?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        }
    }
    let rest = &answer[end + 4..];
    let body = if chunked {
        dechunk(rest).ok_or_else(bad)?
    } else {
        let len = length.unwrap_or(rest.len());
        Zeroizing::new(rest.get(..len).ok_or_else(bad)?.to_vec())
    };
    Ok(Answer { status, body })
}

fn dechunk(mut rest: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    let mut body = Zeroizing::new(Vec::with_capacity(rest.len()));
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&rest[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Some(body);
        }
        body.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}

/// The roots reqwest's rustls setup trusts (webpki-roots) plus the `--ca-cert` bundle.
fn tls_config(ca_pem: Option<&[u8]>) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(pem) = ca_pem {
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| format!("bad CA certificate (--ca-cert): {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("bad CA certificate (--ca-cert): {e}"))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(text: &str) -> Result<Answer, String> {
        parse(Zeroizing::new(text.as_bytes().to_vec()))
    }

    #[test]
    fn answers_by_length_chunks_and_end_of_stream() {
        let a = answer("HTTP/1.1 200 OK\r\ncontent-length: 14\r\n\r\n{\"revision\":7}")
            .ok()
            .unwrap();
        assert_eq!((a.status, &a.body[..]), (200, &b"{\"revision\":7}"[..]));
        let a = answer("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"re\r\n3\r\nv\":\r\n0\r\n\r\n")
            .ok()
            .unwrap();
        assert_eq!(&a.body[..], b"{\"rev\":");
        let a = answer("HTTP/1.1 304 Not Modified\r\n\r\n").ok().unwrap();
        assert_eq!((a.status, a.body.len()), (304, 0));
        assert!(answer("garbage").is_err());
        assert!(answer("HTTP/1.1 200 OK\r\ncontent-length: 99\r\n\r\nshort").is_err());
    }
}
