//! A TCP proxy in front of a real server that a test can "freeze": while frozen, every new
//! connection whose first request is for a chosen path is accepted and read from, but
//! nothing is forwarded in either direction, as a store that accepts and never answers.
//! Other connections (a launcher's long-poll for revisions) keep flowing, so a rotation is
//! still announced while the fetch it causes hangs.
//!
//! `held()` counts frozen connections the client still has open: a test asserts ordering
//! with it ("the child got the signal while the fetch was still hanging") instead of time.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Requests for this path are the ones frozen: agent-run's fetch of the values.
pub const FETCH_PATH: &str = "/v1/runtime/secrets";

struct State {
    upstream: String,
    path: String,
    frozen: AtomicBool,
    held: AtomicUsize,
    stop: AtomicBool,
}

/// Stops accepting on drop; held connections are then released (closed).
pub struct FreezingProxy {
    /// `http://127.0.0.1:PORT`, to give agent-run as `--store`.
    pub addr: String,
    state: Arc<State>,
}

impl FreezingProxy {
    /// A proxy to `upstream` (`http://HOST:PORT` or `HOST:PORT`) that freezes requests for
    /// `path` once `freeze` is called.
    pub fn start(upstream: &str, path: &str) -> FreezingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let addr = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(State {
            upstream: upstream.trim_start_matches("http://").to_owned(),
            path: path.to_owned(),
            frozen: AtomicBool::new(false),
            held: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        });
        let accept_state = Arc::clone(&state);
        listener.set_nonblocking(true).unwrap();
        std::thread::spawn(move || loop {
            if accept_state.stop.load(Ordering::Relaxed) {
                return;
            }
            match listener.accept() {
                Ok((client, _)) => {
                    let state = Arc::clone(&accept_state);
                    std::thread::spawn(move || serve(client, state));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        });
        FreezingProxy { addr, state }
    }

    /// From now on, new requests for the path hang.
    pub fn freeze(&self) {
        self.state.frozen.store(true, Ordering::SeqCst);
    }

    /// Held requests go through now, and new ones are not held.
    pub fn thaw(&self) {
        self.state.frozen.store(false, Ordering::SeqCst);
    }

    /// Frozen connections that the client has not closed yet.
    pub fn held(&self) -> usize {
        self.state.held.load(Ordering::SeqCst)
    }
}

impl Drop for FreezingProxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        self.state.frozen.store(false, Ordering::SeqCst);
    }
}

fn serve(mut client: TcpStream, state: Arc<State>) {
    client.set_nonblocking(false).unwrap();
    let mut first = vec![0u8; 16 * 1024];
    let n = match client.read(&mut first) {
        Ok(0) | Err(_) => return,
        Ok(n) => n,
    };
    first.truncate(n);
    let request_line = String::from_utf8_lossy(&first[..n.min(512)]).into_owned();
    let matches = request_line
        .lines()
        .next()
        .is_some_and(|line| line.contains(&state.path));
    if matches && state.frozen.load(Ordering::SeqCst) && !hold(&mut client, &state) {
        return; // the client gave up (or the process holding it exited)
    }
    let Ok(mut upstream) = TcpStream::connect(&state.upstream) else {
        return;
    };
    if upstream.write_all(&first).is_err() {
        return;
    }
    let (Ok(mut client_read), Ok(mut upstream_write)) = (client.try_clone(), upstream.try_clone())
    else {
        return;
    };
    let forward = std::thread::spawn(move || {
        let _ = std::io::copy(&mut client_read, &mut upstream_write);
        let _ = upstream_write.shutdown(Shutdown::Write);
    });
    let _ = std::io::copy(&mut upstream, &mut client);
    let _ = client.shutdown(Shutdown::Write);
    let _ = forward.join();
}

/// Holds a connection until the proxy is thawed (true) or the client closes it (false).
/// Anything else the client sends meanwhile is a protocol error for this test.
fn hold(client: &mut TcpStream, state: &State) -> bool {
    state.held.fetch_add(1, Ordering::SeqCst);
    client
        .set_read_timeout(Some(Duration::from_millis(10)))
        .unwrap();
    let mut probe = [0u8; 1];
    let thawed = loop {
        if !state.frozen.load(Ordering::SeqCst) {
            break true;
        }
        match client.peek(&mut probe) {
            Ok(0) => break false,
            Ok(_) => std::thread::sleep(Duration::from_millis(10)),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => break false,
        }
    };
    state.held.fetch_sub(1, Ordering::SeqCst);
    client.set_read_timeout(None).unwrap();
    thawed
}
