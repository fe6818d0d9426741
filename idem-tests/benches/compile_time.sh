#!/usr/bin/env bash
# Compile-time cost of `#[idempotent]` (issue 3).
#
# Generates two throwaway crates in a temporary workspace, identical except for the attribute:
# N `async fn`s (default 200), each taking a `#[derive(IdempotencyKey, Serialize, Deserialize)]`
# request by reference plus a scalar and returning `Result<Receipt, idem_runtime::Error>`, all
# awaited from `main` through callers of 10 fns each (nothing is dead code). `with_attr` puts
# `#[idempotent(name = "…")]` on each fn; `without_attr` does not. Both depend on this checkout's
# idem-runtime by path.
#
# The dependencies are built first; then each crate alone is rebuilt (`touch src/main.rs`,
# `cargo build`, debug, `CARGO_INCREMENTAL=0`) RUNS times and the best CPU time (user + sys of
# cargo and the rustc it runs, linking included) is kept. Prints both and the ratio.
#
# CPU time is noisy on a shared machine (other builds inflate it by 10-30 %); `--instructions`
# adds a deterministic figure: the instructions rustc executes for each crate (the linker is not
# counted), by valgrind (cachegrind, no cache simulation; ~15x slower, so one run each).
#
# Usage: idem-tests/benches/compile_time.sh [--release] [--instructions] [--fns N] [--types T]
#                                          [--returns R]
#                                          [--runs R] [--keep]
#   --release  also measure the release profile
#   --instructions  also count instructions with valgrind (deterministic)
#   --fns N    number of annotated fns (default 200)
#   --returns R  number of distinct return structs (`Receipt0`…), fns cycle through them
#              (default 1, `Receipt`): each return type compiles the engine's generic part and
#              the value's serde code once more
#   --types T  number of distinct request structs, fns cycle through them (default 1: the
#              worst case for the ratio, since the derives are in both crates)
#   --runs R   rebuilds per crate and profile, best kept (default 3)
#   --keep     keep the generated workspace (its path is printed)
# CARGO_TARGET_DIR is honoured (shared with other builds, the dependencies are reused); by
# default a target dir inside the temporary workspace is used.
set -euo pipefail

fns=200
types=1
returns=1
runs=3
release=0
instructions=0
keep=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --release) release=1 ;;
        --instructions) instructions=1 ;;
        --fns) fns="$2"; shift ;;
        --types) types="$2"; shift ;;
        --returns) returns="$2"; shift ;;
        --runs) runs="$2"; shift ;;
        --keep) keep=1 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done

repo="$(cd "$(dirname "$0")/../.." && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/idem-compile-time.XXXXXX")"
if [[ $keep -eq 0 ]]; then
    trap 'rm -rf "$work"' EXIT
else
    echo "generated workspace: $work"
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$work/target}"
export CARGO_INCREMENTAL=0
TIME=/usr/bin/time
[[ -x $TIME ]] || { echo "needs GNU time at /usr/bin/time" >&2; exit 1; }

cat >"$work/Cargo.toml" <<EOF
[workspace]
resolver = "3"
members = ["with_attr", "without_attr"]

[workspace.dependencies]
idem-runtime = { path = "$repo/idem-runtime" }
serde = { version = "1", features = ["derive"] }
tokio = { version = "1", features = ["rt", "macros"] }
EOF
# The checkout's lock file: the same dependency versions as the workspace, no resolution.
cp "$repo/Cargo.lock" "$work/Cargo.lock"

# receipt N: the name of return type N (`Receipt` when there is only one).
receipt() {
    if [[ $returns -eq 1 ]]; then echo Receipt; else echo "Receipt$1"; fi
}

# gen_crate NAME ATTR: ATTR=1 puts the attribute on every fn.
gen_crate() {
    local name="$1" attr="$2" dir="$work/$1"
    mkdir -p "$dir/src"
    cat >"$dir/Cargo.toml" <<EOF
[package]
name = "$name"
version = "0.0.0"
edition = "2024"
publish = false

[dependencies]
idem-runtime.workspace = true
serde.workspace = true
tokio.workspace = true
EOF
    {
        echo '#![deny(warnings)]'
        echo 'use idem_runtime::{Error, IdempotencyKey, idempotent};'
        echo 'use serde::{Deserialize, Serialize};'
        echo
        echo '#[derive(Serialize, Deserialize, Debug)]'
        for ((r = 0; r < returns; r++)); do
            [[ $r -gt 0 ]] && echo '#[derive(Serialize, Deserialize, Debug)]'
            echo "pub struct $(receipt "$r") { pub id: String, pub amount_cents: u64 }"
        done
        for ((t = 0; t < types; t++)); do
            cat <<EOF

#[derive(IdempotencyKey, Serialize, Deserialize)]
pub struct Request$t {
    pub customer: String,
    pub amount_cents: u64,
    pub currency: String,
    pub memo: Option<String>,
    #[idem(exclude)]
    #[serde(skip)]
    pub trace_id: u64,
}

fn request_$t() -> Request$t {
    Request$t { customer: "cus_$t".into(), amount_cents: 100, currency: "eur".into(), memo: None, trace_id: $t }
}
EOF
        done
        for ((i = 0; i < fns; i++)); do
            local t=$((i % types)) receipt_type
            receipt_type=$(receipt $((i % returns)))
            echo
            if [[ $attr -eq 1 ]]; then
                echo "#[idempotent(name = \"bench.op_$i\")]"
            fi
            cat <<EOF
pub async fn op_$i(req: &Request$t, attempt: u32) -> Result<$receipt_type, Error> {
    if req.currency.is_empty() {
        return Err(Error::Config(format!("op_$i: no currency for {}", req.customer)));
    }
    let amount_cents = req.amount_cents + u64::from(attempt) * $i;
    Ok($receipt_type { id: format!("op_$i-{}-{amount_cents}", req.customer), amount_cents })
}
EOF
        done
        # Callers of 10 fns each, as handlers would be: one `main` awaiting all 200 calls costs
        # ~0.5 s of borrow checking by itself (superlinear in the number of awaits), which
        # would hide the attribute's cost behind a cost real code does not have.
        local groups=$(((fns + 9) / 10))
        for ((g = 0; g < groups; g++)); do
            echo
            echo "async fn calls_$g() -> Result<u64, Error> {"
            echo '    let mut total = 0u64;'
            for ((i = g * 10; i < fns && i < g * 10 + 10; i++)); do
                echo "    total += op_$i(&request_$((i % types))(), 1).await?.amount_cents;"
            done
            echo '    Ok(total)'
            echo '}'
        done
        echo
        echo '#[tokio::main(flavor = "current_thread")]'
        echo 'async fn main() -> Result<(), Error> {'
        echo '    let mut total = 0u64;'
        for ((g = 0; g < groups; g++)); do
            echo "    total += calls_$g().await?;"
        done
        echo '    println!("{total}");'
        echo '    Ok(())'
        echo '}'
    } >"$dir/src/main.rs"
    # Without the attribute the import is unused; keep the two crates otherwise identical.
    if [[ $attr -eq 0 ]]; then
        sed -i 's/^use idem_runtime::{Error, IdempotencyKey, idempotent};/use idem_runtime::{Error, IdempotencyKey};/' "$dir/src/main.rs"
    fi
}

gen_crate with_attr 1
gen_crate without_attr 0

cd "$work"
# best_cpu CRATE [cargo flags…]: best user+sys CPU seconds of RUNS rebuilds of CRATE alone.
best_cpu() {
    local crate="$1"; shift
    local best="" t
    for ((r = 0; r < runs; r++)); do
        touch "$crate/src/main.rs"
        $TIME -f "%U %S" -o "$work/time.txt" cargo build --quiet -p "$crate" "$@"
        t=$(awk '{ printf "%.2f", $1 + $2 }' "$work/time.txt")
        if [[ -z $best ]] || awk -v a="$t" -v b="$best" 'BEGIN { exit !(a < b) }'; then
            best=$t
        fi
    done
    echo "$best"
}

# instructions CRATE [cargo flags…]: instructions executed by rustc (not the linker it runs)
# for CRATE alone, under valgrind.
instructions() {
    local crate="$1"; shift
    local cmd
    touch "$crate/src/main.rs"
    # The exact rustc command cargo runs (paths relative to this workspace).
    cmd=$(cargo build -v -p "$crate" "$@" 2>&1 | sed -n "s/^ *Running \`\(.*rustc --crate-name $crate .*\)\`$/\1/p" |
        sed 's/--error-format=json --json=[^ ]*//')
    [[ -n $cmd ]] || { echo "could not find the rustc command of $crate" >&2; exit 1; }
    bash -c "valgrind --tool=cachegrind --cache-sim=no --trace-children=yes \
        --cachegrind-out-file=/dev/null $cmd" 2>&1 |
        awk '/I *refs:/ { gsub(",", "", $NF); n += $NF } END { printf "%.0f", n }'
}

measure() {
    local label="$1"; shift
    # Dependencies (and a first build of both crates) outside the measurement.
    cargo build --quiet -p with_attr -p without_attr "$@"
    # The generated program runs: every call goes through the engine (memory store) once.
    "$CARGO_TARGET_DIR/$label/with_attr" >/dev/null
    "$CARGO_TARGET_DIR/$label/without_attr" >/dev/null
    local with without
    with=$(best_cpu with_attr "$@")
    without=$(best_cpu without_attr "$@")
    awk -v l="$label" -v w="$with" -v wo="$without" -v n="$fns" -v t="$types" -v r="$returns" 'BEGIN {
        printf "%-7s %d fns, %d request type(s), %d return type(s): with #[idempotent] %.2f s CPU, without %.2f s CPU, ratio %.2fx (+%.0f%%)\n",
            l, n, t, r, w, wo, w / wo, (w / wo - 1) * 100
    }'
    if [[ $instructions -eq 1 ]]; then
        command -v valgrind >/dev/null || { echo "--instructions needs valgrind" >&2; exit 1; }
        with=$(instructions with_attr "$@")
        without=$(instructions without_attr "$@")
        awk -v l="$label" -v w="$with" -v wo="$without" 'BEGIN {
            printf "%-7s instructions: with #[idempotent] %.2fG, without %.2fG, ratio %.2fx (+%.0f%%)\n",
                l, w / 1e9, wo / 1e9, w / wo, (w / wo - 1) * 100
        }'
    fi
}

measure debug
if [[ $release -eq 1 ]]; then
    measure release --release
fi
