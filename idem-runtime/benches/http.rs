//! Requests per second over loopback: the bare handler, replays through the `Idempotency-Key`
//! layer, and first executions through the layer (a fresh key per request), in one run.
//!
//! ```text
//! cargo bench -p idem-runtime --features http --bench http
//! ```
//!
//! The load generator is `wrk` when it is installed (the bench tries `apt-get install -y wrk`
//! once when it runs as root and wrk is missing), otherwise a Rust client: hyper HTTP/1.1
//! keep-alive connections, each sending its next request as soon as the previous answer is
//! read. `IDEM_BENCH_CLIENT=rust|wrk` forces one; `IDEM_BENCH_SECS` (default 2) is the length
//! of one measurement, `IDEM_BENCH_ROUNDS` (default 7) how many rounds of the three
//! measurements run, interleaved; `IDEM_BENCH_CONNECTIONS` (default 32) the connections.
//! Medians are reported; the ratios are medians of per-round ratios, so that a machine whose
//! load changes during the run (other processes) skews them as little as possible. Everything
//! stays on 127.0.0.1.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use idem_runtime::MemoryStore;
use idem_runtime::http::IdempotencyLayer;
use serde::{Deserialize, Serialize};

const BODY: &str = r#"{"customer":"cus_42","amount_cents":1999,"currency":"eur"}"#;
const REPLAY_KEY: &str = "bench-replay-key-8e03978e-40d5-43e8-bc93";

#[derive(Deserialize)]
struct NewPayment {
    customer: String,
    amount_cents: u64,
    currency: String,
}

#[derive(Serialize)]
struct Payment {
    id: String,
    customer: String,
    amount_cents: u64,
    currency: String,
    status: &'static str,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

async fn create_payment(Json(new): Json<NewPayment>) -> (StatusCode, Json<Payment>) {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let payment = Payment {
        id: format!("pay_{id:08}"),
        customer: new.customer,
        amount_cents: new.amount_cents,
        currency: new.currency,
        status: "succeeded",
    };
    (StatusCode::CREATED, Json(payment))
}

fn app() -> Router {
    Router::new().route("/payments", post(create_payment))
}

async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Bare,
    Replay,
    Fresh,
}

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn wrk_available() -> bool {
    Command::new("wrk").arg("--version").output().is_ok()
}

fn ensure_wrk() -> bool {
    if wrk_available() {
        return true;
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"));
    if root {
        eprintln!("wrk not found; trying `apt-get install -y wrk` …");
        let installed = Command::new("apt-get")
            .args(["install", "-y", "-q", "wrk"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .output()
            .is_ok_and(|o| o.status.success());
        if !installed {
            let _ = Command::new("apt-get").args(["update", "-q"]).output();
            let _ = Command::new("apt-get")
                .args(["install", "-y", "-q", "wrk"])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .output();
        }
    }
    wrk_available()
}

fn lua_script(mode: Mode, round: usize) -> String {
    let mut script = format!(
        "wrk.method = \"POST\"\nwrk.body = '{BODY}'\nwrk.headers[\"Content-Type\"] = \"application/json\"\n\
         wrk.headers[\"Authorization\"] = \"Bearer bench\"\n"
    );
    match mode {
        Mode::Bare => {}
        Mode::Replay => script.push_str(&format!("wrk.headers[\"Idempotency-Key\"] = \"{REPLAY_KEY}\"\n")),
        Mode::Fresh => script.push_str(&format!(
            "local n = 0\nfunction request()\n  n = n + 1\n  wrk.headers[\"Idempotency-Key\"] = \"fresh-{round}-\" .. n\n  \
             return wrk.format()\nend\n"
        )),
    }
    script
}

/// Runs wrk against `addr`; returns (requests/s, non-2xx responses).
fn run_wrk(
    addr: SocketAddr,
    mode: Mode,
    round: usize,
    secs: u64,
    connections: usize,
) -> (f64, u64) {
    let path = std::env::temp_dir().join(format!("idem-bench-{}-{mode:?}.lua", std::process::id()));
    std::fs::write(&path, lua_script(mode, round)).unwrap();
    let output = Command::new("wrk")
        .args([
            "-t1",
            &format!("-c{connections}"),
            &format!("-d{secs}s"),
            "-s",
        ])
        .arg(&path)
        .arg(format!("http://{addr}/payments"))
        .output()
        .expect("run wrk");
    let _ = std::fs::remove_file(&path);
    let text = String::from_utf8_lossy(&output.stdout);
    let rps = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("cannot read wrk's output:\n{text}"));
    let errors = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Non-2xx or 3xx responses:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    (rps, errors)
}

/// The Rust load generator: `connections` keep-alive connections on their own runtime thread.
fn run_rust(
    addr: SocketAddr,
    mode: Mode,
    round: usize,
    secs: u64,
    connections: usize,
) -> (f64, u64) {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let stop = Arc::new(AtomicBool::new(false));
            let done = Arc::new(AtomicU64::new(0));
            let errors = Arc::new(AtomicU64::new(0));
            let mut tasks = Vec::new();
            for conn in 0..connections {
                let (stop, done, errors) = (stop.clone(), done.clone(), errors.clone());
                tasks.push(tokio::spawn(async move {
                    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
                    stream.set_nodelay(true).unwrap();
                    let (mut sender, connection) =
                        hyper::client::conn::http1::handshake(TokioIo::new(stream))
                            .await
                            .unwrap();
                    tokio::spawn(connection);
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        n += 1;
                        let mut request = http::Request::post(format!("http://{addr}/payments"))
                            .header("host", addr.to_string())
                            .header("content-type", "application/json")
                            .header("authorization", "Bearer bench");
                        match mode {
                            Mode::Bare => {}
                            Mode::Replay => request = request.header("idempotency-key", REPLAY_KEY),
                            Mode::Fresh => {
                                request = request
                                    .header("idempotency-key", format!("fresh-{round}-{conn}-{n}"))
                            }
                        }
                        let request = request
                            .body(Full::new(Bytes::from_static(BODY.as_bytes())))
                            .unwrap();
                        let response = sender.send_request(request).await.unwrap();
                        let ok = response.status().is_success();
                        let _ = response.into_body().collect().await.unwrap();
                        if !ok {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }));
            }
            // Warm-up: let every connection get going, then measure.
            tokio::time::sleep(Duration::from_millis(200)).await;
            let start_count = done.load(Ordering::Relaxed);
            let start = Instant::now();
            tokio::time::sleep(Duration::from_secs(secs)).await;
            let count = done.load(Ordering::Relaxed) - start_count;
            let elapsed = start.elapsed().as_secs_f64();
            stop.store(true, Ordering::Relaxed);
            for task in tasks {
                let _ = task.await;
            }
            (count as f64 / elapsed, errors.load(Ordering::Relaxed))
        })
    })
    .join()
    .unwrap()
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let secs: u64 = env("IDEM_BENCH_SECS", 2);
    let rounds: usize = env("IDEM_BENCH_ROUNDS", 7);
    let connections: usize = env("IDEM_BENCH_CONNECTIONS", 32);
    let use_wrk = match std::env::var("IDEM_BENCH_CLIENT").as_deref() {
        Ok("rust") => false,
        Ok("wrk") => {
            assert!(
                ensure_wrk(),
                "IDEM_BENCH_CLIENT=wrk but wrk is not available"
            );
            true
        }
        _ => ensure_wrk(),
    };
    let client = if use_wrk {
        "wrk (1 thread)"
    } else {
        "Rust hyper client (1 thread)"
    };

    // The server: its own runtime, 2 worker threads (the machine has 2 cores; the load generator
    // shares them, equally for every measurement).
    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (bare, layered) = server.block_on(async {
        let store = Arc::new(MemoryStore::builder().max_entries(10_000_000).build());
        let layer = IdempotencyLayer::builder("bench")
            .scope(|parts| {
                parts
                    .headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            })
            .store(store)
            .build()
            .expect("the layer's settings are valid");
        (serve(app()).await, serve(app().layer(layer)).await)
    });
    // Record the response that the replay measurement replays.
    let (_, errors) = run_rust(layered, Mode::Replay, 0, 0, 1);
    assert_eq!(errors, 0, "priming the replay failed");

    println!(
        "http bench: POST /payments over 127.0.0.1, {connections} connections, {secs} s x {rounds} rounds, client: {client}"
    );
    let run = |addr, mode, round| {
        let (rps, errors) = if use_wrk {
            run_wrk(addr, mode, round, secs, connections)
        } else {
            run_rust(addr, mode, round, secs, connections)
        };
        assert_eq!(errors, 0, "{mode:?}: {errors} responses were not 2xx");
        println!("  round {round}: {mode:?}: {rps:>9.0} req/s");
        rps
    };
    // Bare and replay interleaved, in alternating order, so that a change of machine load hits
    // both alike; ratios are taken per round (adjacent measurements).
    let (mut bares, mut replays, mut freshes) = (Vec::new(), Vec::new(), Vec::new());
    let (mut replay_ratios, mut fresh_ratios) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        let (bare_rps, replay_rps);
        if round % 2 == 1 {
            bare_rps = run(bare, Mode::Bare, round);
            replay_rps = run(layered, Mode::Replay, round);
        } else {
            replay_rps = run(layered, Mode::Replay, round);
            bare_rps = run(bare, Mode::Bare, round);
        }
        replay_ratios.push(replay_rps / bare_rps);
        bares.push(bare_rps);
        replays.push(replay_rps);
    }
    // First executions last: they fill the store (and the allocator) with tens of thousands of
    // records, which would tax whatever measurement ran right after them.
    for round in 1..=rounds.div_ceil(2) {
        let bare_rps = run(bare, Mode::Bare, round);
        let fresh_rps = run(layered, Mode::Fresh, round);
        fresh_ratios.push(fresh_rps / bare_rps);
        freshes.push(fresh_rps);
    }
    let (bare, replay, fresh) = (
        median(&mut bares),
        median(&mut replays),
        median(&mut freshes),
    );
    let (replay_ratio, fresh_ratio) = (median(&mut replay_ratios), median(&mut fresh_ratios));
    println!("medians (ratios: median of the per-round ratios):");
    println!("  bare handler, no layer         {bare:>9.0} req/s");
    println!("  replay through the layer       {replay:>9.0} req/s  ({replay_ratio:.2}x bare)");
    println!("  first execution (fresh keys)   {fresh:>9.0} req/s  ({fresh_ratio:.2}x bare)");
    let verdict = if replay_ratio >= 0.8 {
        "met"
    } else {
        "NOT met"
    };
    println!("target replay >= 0.8x bare: {verdict}");
    drop(server);
}
