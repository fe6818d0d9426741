//! The engine benchmark's replay and first-call contenders in paired rounds: every round runs
//! each contender for the same number of calls, in a rotating order, so that all of them see
//! the same machine load; the figures are medians over the rounds, and the ratios are medians
//! of per-round ratios. Meant for noisy (shared, 2-core) machines, where criterion's one
//! benchmark after the other lets load drift between contenders.
//!
//! `cargo bench -p idem-runtime --bench engine_paired` (`-- --rounds 40 --calls 20000`).
//!
//! `-- --per-round` also prints every round's time per call, to see how the load moved.
//!
//! `-- --only <contender> --calls N` runs only that contender's replays (N of them, after the
//! recording call), for an instruction count per replay under
//! `valgrind --tool=callgrind`: the difference between two call counts, divided by the
//! difference in calls.

use std::hint::black_box;
use std::time::Instant;

#[path = "support/contenders.rs"]
mod contenders;
use contenders::*;

const CONTENDERS: [&str; 6] = [
    "naive_handler",
    "hashmap_floor",
    "moka_get_with",
    "idem_engine",
    "idem_engine_cached",
    "idem_macro",
];

// Indices into `CONTENDERS`.
const NAIVE: usize = 0;
const FLOOR: usize = 1;
const MOKA: usize = 2;
const ENGINE: usize = 3;
const CACHED: usize = 4;
const MACRO: usize = 5;

fn arg(name: &str, default: usize) -> usize {
    text_arg(name)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The value following `name` on the command line, if any.
fn text_arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    let i = args.iter().position(|a| a == name)?;
    args.get(i + 1).cloned()
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// ns per call of `calls` calls of contender `which` on a recorded key (replay).
fn replay_round(
    rt: &tokio::runtime::Runtime,
    s: &mut Contenders,
    which: usize,
    calls: usize,
) -> f64 {
    let input = charge(1999);
    let derived = DerivedCharge::from(input.clone());
    let start = Instant::now();
    match which {
        NAIVE => rt.block_on(async {
            for _ in 0..calls {
                black_box(s.naive(black_box(&input)).await);
            }
        }),
        FLOOR => {
            for _ in 0..calls {
                black_box(s.floor(black_box(&input)));
            }
        }
        MOKA => rt.block_on(async {
            for _ in 0..calls {
                black_box(s.moka(black_box(&input)).await);
            }
        }),
        ENGINE => rt.block_on(async {
            for _ in 0..calls {
                black_box(s.idem(black_box(&input)).await);
            }
        }),
        CACHED => rt.block_on(async {
            for _ in 0..calls {
                black_box(s.idem_cached(black_box(&input)).await);
            }
        }),
        _ => rt.block_on(async {
            for _ in 0..calls {
                black_box(s.idem_macro(black_box(&derived)).await);
            }
        }),
    }
    start.elapsed().as_nanos() as f64 / calls as f64
}

/// ns per call of `calls` first calls (fresh keys, a fresh store per round; inputs built
/// outside the timing).
fn first_call_round(rt: &tokio::runtime::Runtime, which: usize, calls: usize, base: u64) -> f64 {
    let mut s = Contenders::new();
    let inputs: Vec<Charge> = (0..calls as u64).map(|i| charge(base + i)).collect();
    let derived: Vec<DerivedCharge> = inputs.iter().cloned().map(DerivedCharge::from).collect();
    let start = Instant::now();
    match which {
        NAIVE => rt.block_on(async {
            for c in &inputs {
                black_box(s.naive(c).await);
            }
        }),
        FLOOR => {
            for c in &inputs {
                black_box(s.floor(c));
            }
        }
        MOKA => rt.block_on(async {
            for c in &inputs {
                black_box(s.moka(c).await);
            }
        }),
        ENGINE => rt.block_on(async {
            for c in &inputs {
                black_box(s.idem(c).await);
            }
        }),
        CACHED => rt.block_on(async {
            for c in &inputs {
                black_box(s.idem_cached(c).await);
            }
        }),
        _ => rt.block_on(async {
            for c in &derived {
                black_box(s.idem_macro(c).await);
            }
        }),
    }
    let elapsed = start.elapsed().as_nanos() as f64 / calls as f64;
    drop((inputs, derived));
    elapsed
}

fn report(title: &str, times: &[Vec<f64>]) {
    if std::env::args().any(|a| a == "--per-round") {
        println!("\n{title}: ns per call, round by round");
        for (name, rounds) in CONTENDERS.iter().zip(times) {
            let rounds: Vec<String> = rounds.iter().map(|t| format!("{t:.0}")).collect();
            println!("{name:<20} {}", rounds.join(" "));
        }
    }
    println!("\n{title}: median ns per call, and the median of per-round ratios");
    println!(
        "{:<20} {:>10} {:>10} {:>12}",
        "contender", "ns/call", "÷ naive", "÷ engine"
    );
    for (i, name) in CONTENDERS.iter().enumerate() {
        let ratio = |base: usize| {
            median(
                times[i]
                    .iter()
                    .zip(&times[base])
                    .map(|(t, b)| t / b)
                    .collect(),
            )
        };
        // The macro is compared with the engine by hand on the same replay path (cached).
        let by_hand = if i == MACRO {
            format!("{:.2}×", ratio(CACHED))
        } else {
            String::new()
        };
        println!(
            "{:<20} {:>10.0} {:>9.2}× {:>12}",
            name,
            median(times[i].clone()),
            ratio(NAIVE),
            by_hand
        );
    }
}

fn main() {
    let rounds = arg("--rounds", 30);
    let calls = arg("--calls", 20_000);
    let rt = runtime();
    let n = CONTENDERS.len();

    if let Some(only) = text_arg("--only") {
        let Some(which) = CONTENDERS.iter().position(|c| *c == only) else {
            eprintln!("--only: unknown contender `{only}`; one of {CONTENDERS:?}");
            std::process::exit(2);
        };
        let mut s = Contenders::new();
        replay_round(&rt, &mut s, which, 1);
        let ns = replay_round(&rt, &mut s, which, calls);
        println!("{only}: {calls} replays, {ns:.0} ns per call");
        return;
    }

    let mut replay = vec![Vec::new(); n];
    let mut s = Contenders::new();
    for which in 0..n {
        replay_round(&rt, &mut s, which, 1_000); // record + warm up
    }
    for round in 0..rounds {
        for k in 0..n {
            let which = (round + k) % n;
            replay[which].push(replay_round(&rt, &mut s, which, calls));
        }
    }
    report("replay", &replay);

    let mut first = vec![Vec::new(); n];
    let first_calls = calls.min(10_000);
    for round in 0..rounds {
        for k in 0..n {
            let which = (round + k) % n;
            let base = 1_000_000 * (round as u64 + 1);
            first[which].push(first_call_round(&rt, which, first_calls, base));
        }
    }
    report("first call", &first);
}
