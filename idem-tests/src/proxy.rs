//! A loopback TCP proxy for fault tests: it forwards to a real server until it is cut (every
//! open connection is dropped and the port refuses new ones), and forwards again once restored
//! on the same port. Runs as tasks of the current tokio runtime.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

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
}

impl FaultProxy {
    /// Starts forwarding a free loopback port to `upstream` (`host:port`).
    pub async fn start(upstream: &str) -> FaultProxy {
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
        };
        proxy.serve(listener);
        proxy
    }

    /// The local port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    fn serve(&self, listener: TcpListener) {
        let (upstream, connections) = (self.upstream, self.connections.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let forward = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
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
