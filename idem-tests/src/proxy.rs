//! A loopback TCP proxy for fault tests: it forwards to a real server until it is cut (every
//! open connection is dropped and the port refuses new ones), and forwards again once restored
//! on the same port; it can also hold back the client's bytes from a pattern on, to split one
//! pipeline into two deliveries, and swallow the server's replies, so that a command runs but
//! its answer is lost. Runs as tasks of the current tokio runtime.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinHandle};

/// Locks, ignoring poisoning (a panicking test must not hide its first panic).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// A cuttable TCP proxy on `127.0.0.1:<port>` in front of `upstream`.
pub struct FaultProxy {
    port: u16,
    upstream: SocketAddr,
    connections: Arc<Mutex<Vec<AbortHandle>>>,
    listener: Mutex<Option<JoinHandle<()>>>,
    /// Client bytes from this pattern on reach the server this much later.
    hold: Option<(&'static [u8], Duration)>,
    /// While set, the server's replies are read and dropped.
    muted: Arc<AtomicBool>,
}

impl FaultProxy {
    /// Starts forwarding a free loopback port to `upstream` (`host:port`).
    pub async fn start(upstream: &str) -> FaultProxy {
        Self::start_with(upstream, None).await
    }

    /// Like [`start`](Self::start), but a client write that contains `pattern` is delivered in
    /// two parts: the bytes before `pattern` at once, the rest `hold` later. Splits a pipeline
    /// (or delays a command), so that other clients' commands run in between.
    pub async fn start_holding(
        upstream: &str,
        pattern: &'static [u8],
        hold: Duration,
    ) -> FaultProxy {
        Self::start_with(upstream, Some((pattern, hold))).await
    }

    async fn start_with(upstream: &str, hold: Option<(&'static [u8], Duration)>) -> FaultProxy {
        let upstream = tokio::net::lookup_host(upstream)
            .await
            .ok()
            .and_then(|mut addrs| addrs.next())
            .unwrap_or_else(|| panic!("cannot resolve {upstream}"));
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy port");
        let port = listener.local_addr().expect("local addr").port();
        let proxy = FaultProxy {
            port,
            upstream,
            connections: Arc::new(Mutex::new(Vec::new())),
            listener: Mutex::new(None),
            hold,
            muted: Arc::new(AtomicBool::new(false)),
        };
        proxy.serve(listener);
        proxy
    }

    /// The local port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Swallows the server's replies from now on (`true`) or forwards them again (`false`):
    /// commands sent meanwhile run, but their clients never hear back.
    pub fn mute_replies(&self, muted: bool) {
        self.muted.store(muted, Ordering::SeqCst);
    }

    fn serve(&self, listener: TcpListener) {
        let (upstream, connections, hold) = (self.upstream, self.connections.clone(), self.hold);
        let muted = self.muted.clone();
        let task = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let muted = muted.clone();
                let forward = tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    forward(inbound, outbound, hold, muted).await
                });
                lock(&connections).push(forward.abort_handle());
            }
        });
        *lock(&self.listener) = Some(task);
    }

    /// Drops every open connection and closes the port (new connections are refused).
    pub async fn cut(&self) {
        let listener = lock(&self.listener).take();
        if let Some(task) = listener {
            task.abort();
            let _ = task.await;
        }
        for connection in lock(&self.connections).drain(..) {
            connection.abort();
        }
        // Let the aborted tasks drop their sockets.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    /// Accepts and forwards again, on the same port.
    pub async fn restore(&self) {
        for _ in 0..100 {
            match TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(listener) => return self.serve(listener),
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
            }
        }
        panic!("cannot rebind the proxy port {}", self.port);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(task) = lock(&self.listener).take() {
            task.abort();
        }
        for connection in lock(&self.connections).drain(..) {
            connection.abort();
        }
    }
}

/// Forwards like `copy_bidirectional`, holding back client bytes from `hold`'s pattern on for
/// its duration, and dropping the server's bytes while `muted`.
async fn forward(
    inbound: TcpStream,
    outbound: TcpStream,
    hold: Option<(&'static [u8], Duration)>,
    muted: Arc<AtomicBool>,
) {
    let (mut client_in, mut client_out) = inbound.into_split();
    let (mut server_in, mut server_out) = outbound.into_split();
    let replies = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match server_in.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if !muted.load(Ordering::SeqCst) && client_out.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    });
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match client_in.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let chunk = &buf[..n];
        let split = hold.and_then(|(pattern, hold)| {
            let at = chunk.windows(pattern.len()).position(|w| w == pattern)?;
            Some((at, hold))
        });
        let sent = match split {
            Some((at, hold)) => {
                let first = server_out.write_all(&chunk[..at]).await;
                tokio::time::sleep(hold).await;
                first.and(server_out.write_all(&chunk[at..]).await)
            }
            None => server_out.write_all(chunk).await,
        };
        if sent.is_err() {
            break;
        }
    }
    replies.abort();
}
