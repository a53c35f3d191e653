#!/usr/bin/env bash
# sluice benchmark: builds the server and the load generator, then for each
# log durability (fsync, none) starts a fresh server pinned to one CPU and
# drives it from another CPU with four closed-loop scenarios:
#   batch x 64 connections, batch x 1, single x 64, single x 1.
# Results (JSON lines + a markdown table) land in bench/results/<stamp>/.
# See bench/README.md.
#
# Environment knobs:
#   BENCH_WARMUP=10        warm-up per scenario (seconds, or 500ms / 1m ...)
#   BENCH_DURATION=60      measured time per scenario
#   BENCH_DURABILITIES="fsync none"
#   BENCH_SCENARIOS="batch:64 batch:1 single:64 single:1"   (mode:connections)
#   BENCH_BATCH_SIZE=100  BENCH_EVENT_BYTES=600
#   BENCH_SERVER_CPU=0    BENCH_LOADGEN_CPU=1
#   BENCH_PORT=<free random port>
#   BENCH_DATA_ROOT=bench/results/<stamp>   where server data dirs are made
#                          (keep it on the disk you want to measure: fsync on
#                          tmpfs is free)
#   BENCH_KEEP_DATA=1      keep the server data dirs afterwards
#   BENCH_SKIP_BUILD=1     use the existing target/release binaries
#   BENCH_READY_TIMEOUT=30 seconds to wait for GET /readyz
#   BENCH_SERVER_BIN / BENCH_LOADGEN_BIN   override the binaries (testing)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

WARMUP=${BENCH_WARMUP:-10}
DURATION=${BENCH_DURATION:-60}
DURABILITIES=${BENCH_DURABILITIES:-"fsync none"}
SCENARIOS=${BENCH_SCENARIOS:-"batch:64 batch:1 single:64 single:1"}
BATCH_SIZE=${BENCH_BATCH_SIZE:-100}
EVENT_BYTES=${BENCH_EVENT_BYTES:-600}
SERVER_CPU=${BENCH_SERVER_CPU:-0}
LOADGEN_CPU=${BENCH_LOADGEN_CPU:-1}
READY_TIMEOUT=${BENCH_READY_TIMEOUT:-30}
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT="$ROOT/bench/results/$STAMP"
DATA_ROOT=${BENCH_DATA_ROOT:-$OUT}
SERVER_BIN=${BENCH_SERVER_BIN:-$ROOT/target/release/sluice}
LOADGEN_BIN=${BENCH_LOADGEN_BIN:-$ROOT/target/release/sluice-loadgen}

log() { printf '[bench] %s\n' "$*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}

for tool in cargo curl taskset awk sed; do
    command -v "$tool" >/dev/null || die "missing required tool: $tool"
done

# ---------------------------------------------------------------- cleanup ---
SERVER_PID=""
SAMPLER_PID=""
LOADGEN_PID=""
TAIL_PID=""
DATA_DIRS=()
cleanup() {
    local rc=$?
    local pid
    for pid in "$LOADGEN_PID" "$TAIL_PID"; do
        [[ -n "$pid" ]] && { kill "$pid" 2>/dev/null || true; }
    done
    if [[ -n "$SAMPLER_PID" ]]; then
        kill "$SAMPLER_PID" 2>/dev/null || true
        wait "$SAMPLER_PID" 2>/dev/null || true
    fi
    if [[ -n "$SERVER_PID" ]]; then
        stop_server
    fi
    if [[ "${BENCH_KEEP_DATA:-0}" != 1 ]]; then
        for d in "${DATA_DIRS[@]}"; do rm -rf -- "$d"; done
    fi
    exit "$rc"
}
stop_server() {
    local pid=$SERVER_PID
    [[ -n "$pid" ]] || return 0
    SERVER_PID=""
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "server $pid did not exit after SIGTERM; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------------ build ---
if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
    log "building release binaries (cargo build --release -p sluice -p sluice-loadgen)"
    cargo build --release -p sluice -p sluice-loadgen
fi
[[ -x "$SERVER_BIN" ]] || die "$SERVER_BIN not found"
[[ -x "$LOADGEN_BIN" ]] || die "$LOADGEN_BIN not found"

NCPU=$(nproc 2>/dev/null || echo 1)
PIN_SERVER=(taskset -c "$SERVER_CPU")
PIN_LOADGEN=(taskset -c "$LOADGEN_CPU")
if ((NCPU < 2)); then
    log "WARNING: only $NCPU CPU available; not pinning (server and load generator share it)"
    PIN_SERVER=()
    PIN_LOADGEN=()
else
    # The harness itself (RSS sampler forking awk every 200 ms, tail -f, curl) stays off the
    # server's CPU: this script and everything it starts inherit the load generator's CPU, and
    # only the server is moved to its own.
    taskset -cp "$LOADGEN_CPU" $$ >/dev/null
fi

mkdir -p "$OUT" "$DATA_ROOT"
JSONL="$OUT/results.jsonl"
MD="$OUT/results.md"
: >"$JSONL"

# ---------------------------------------------------------------- helpers ---
# jget KEY < json-line: value of a top-level scalar key (strings unquoted).
jget() {
    sed -n "s/.*\"$1\"[[:space:]]*:[[:space:]]*\(\"[^\"]*\"\|[^,}]*\).*/\1/p" | head -n1 | tr -d '"'
}

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# rss_sampler PID FILE: every 200 ms append "VmRSS_kB VmHWM_kB" until killed
# or the process goes away.
rss_sampler() {
    local pid=$1 file=$2 rss hwm
    while [[ -r "/proc/$pid/status" ]]; do
        rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
        hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
        [[ -n "$rss" ]] && echo "$rss ${hwm:-0}" >>"$file"
        sleep 0.2
    done
}

start_server() {
    local durability=$1 data_dir=$2 logfile=$3
    PORT=${BENCH_PORT:-$(pick_port)}
    [[ -n "$PORT" ]] || die "no port"
    port_in_use "$PORT" && die "port $PORT is already in use"
    TOKEN=$(random_token)
    log "starting sluice (durability=$durability) on 127.0.0.1:$PORT, data in $data_dir"
    NO_COLOR=1 SLUICE_ADMIN_TOKEN="$TOKEN" SLUICE_LOG_DURABILITY="$durability" \
        "${PIN_SERVER[@]}" "$SERVER_BIN" serve --data-dir "$data_dir" --listen "127.0.0.1:$PORT" \
        >"$logfile" 2>&1 &
    SERVER_PID=$!

    local deadline=$((SECONDS + READY_TIMEOUT)) code
    while :; do
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            wait "$SERVER_PID" 2>/dev/null || true
            SERVER_PID=""
            log "server exited during start-up; last log lines:"
            tail -n 30 "$logfile" >&2 || true
            die "server failed to start"
        fi
        code=$(curl -s -o /dev/null -m 2 -w '%{http_code}' "http://127.0.0.1:$PORT/readyz" || true)
        [[ "$code" == 200 ]] && break
        if ((SECONDS >= deadline)); then
            tail -n 30 "$logfile" >&2 || true
            die "GET /readyz did not return 200 within ${READY_TIMEOUT}s (last status: ${code:-none})"
        fi
        sleep 0.2
    done
    log "server ready (pid $SERVER_PID)"
}

create_source() {
    local resp code body
    resp=$(curl -sS -m 10 -X POST "http://127.0.0.1:$PORT/api/v1/sources" \
        -H "Authorization: Bearer $TOKEN" \
        -H 'Content-Type: application/json' \
        -d '{"name":"bench","kind":"server"}' \
        -w '\n%{http_code}') || die "POST /api/v1/sources failed"
    code=${resp##*$'\n'}
    body=${resp%$'\n'*}
    [[ "$code" == 201 ]] || die "POST /api/v1/sources returned $code: $body"
    WRITE_KEY=$(printf '%s' "$body" | jget write_key)
    [[ -n "$WRITE_KEY" ]] || die "no write_key in source response: $body"
}

# ------------------------------------------------------------------- runs ---
{
    echo "# sluice benchmark $STAMP"
    echo
    echo "- commit: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo none)$(git -C "$ROOT" diff --quiet HEAD -- 2>/dev/null || echo ' (dirty)')"
    echo "- cpu: $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo 2>/dev/null || echo unknown), $NCPU CPUs; server on CPU $SERVER_CPU, load generator on CPU $LOADGEN_CPU"
    echo "- kernel: $(uname -r)"
    echo "- data dir filesystem: $(stat -f -c %T "$DATA_ROOT" 2>/dev/null || echo unknown) ($DATA_ROOT)"
    echo "- per scenario: ${WARMUP}s warm-up (excluded) + ${DURATION}s measured; batch size $BATCH_SIZE; ~$EVENT_BYTES B/event"
    echo
} >"$OUT/header.md"

FAILED_RUNS=0
for durability in $DURABILITIES; do
    data_dir=$(mktemp -d "$DATA_ROOT/data-$durability.XXXXXX")
    DATA_DIRS+=("$data_dir")
    start_server "$durability" "$data_dir" "$OUT/server-$durability.log"
    create_source

    for scenario in $SCENARIOS; do
        mode=${scenario%%:*}
        conns=${scenario##*:}
        name="$durability-$mode-c$conns"
        rss_file="$OUT/rss-$name.txt"
        : >"$rss_file"
        log "run $name: ${WARMUP}s warm-up + ${DURATION}s"

        rss_sampler "$SERVER_PID" "$rss_file" &
        SAMPLER_PID=$!
        # In the background + wait, so that a signal to this script is acted
        # on at once (the trap kills the load generator and the server).
        lg_log="$OUT/loadgen-$name.log"
        SLUICE_WRITE_KEY="$WRITE_KEY" "${PIN_LOADGEN[@]}" "$LOADGEN_BIN" \
            --url "http://127.0.0.1:$PORT" \
            --mode "$mode" --connections "$conns" --batch-size "$BATCH_SIZE" \
            --event-bytes "$EVENT_BYTES" --warmup "$WARMUP" --duration "$DURATION" \
            >"$lg_log" 2>&1 &
        LOADGEN_PID=$!
        tail -n +1 -f --pid="$LOADGEN_PID" "$lg_log" &
        TAIL_PID=$!
        lg_rc=0
        wait "$LOADGEN_PID" || lg_rc=$?
        LOADGEN_PID=""
        wait "$TAIL_PID" || true
        TAIL_PID=""
        kill "$SAMPLER_PID" 2>/dev/null || true
        wait "$SAMPLER_PID" 2>/dev/null || true
        SAMPLER_PID=""

        rss_max_kb=$(awk 'BEGIN {m = 0} $1 > m {m = $1} END {print m}' "$rss_file")
        hwm_kb=$(awk 'BEGIN {m = 0} $2 > m {m = $2} END {print m}' "$rss_file")
        json=$(grep '^{' "$lg_log" | tail -n1 || true)
        server_alive=true
        kill -0 "$SERVER_PID" 2>/dev/null || server_alive=false
        if [[ -z "$json" ]]; then
            json="{\"mode\":\"$mode\",\"connections\":$conns,\"failed\":true}"
        fi
        if [[ "$lg_rc" != 0 ]]; then
            FAILED_RUNS=$((FAILED_RUNS + 1))
            log "WARNING: load generator exited $lg_rc for $name (errors, non-2xx or no samples)"
        fi
        extra="\"durability\":\"$durability\",\"server_rss_max_kb\":$rss_max_kb,\"server_vmhwm_kb\":$hwm_kb,\"loadgen_exit\":$lg_rc,\"server_alive\":$server_alive,"
        printf '%s\n' "${json/#\{/\{$extra}" >>"$JSONL"

        if [[ "$server_alive" != true ]]; then
            SERVER_PID=""
            log "server died during $name; last log lines:"
            tail -n 30 "$OUT/server-$durability.log" >&2 || true
            FAILED_RUNS=$((FAILED_RUNS + 1))
            break
        fi
    done

    stop_server
    echo "$durability $(du -sk "$data_dir" | awk '{print $1}')" >>"$OUT/data-size.txt"
done

# ------------------------------------------------------------------ table ---
{
    cat "$OUT/header.md"
    echo "| durability | mode | conns | batch | req/s | events/s | p50 ms | p99 ms | p99.9 ms | max ms | errors | non-2xx | server RSS max MiB | server VmHWM MiB |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    while IFS= read -r line; do
        g() { printf '%s' "$line" | jget "$1"; }
        flag=""
        [[ "$(g loadgen_exit)" != 0 ]] && flag=" ⚠"
        [[ "$(g server_alive)" != true ]] && flag="$flag (server died)"
        printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' \
            "$(g durability)" "$(g mode)$flag" "$(g connections)" "$(g batch_size)" \
            "$(g requests_per_s)" "$(g events_per_s)" "$(g p50_ms)" "$(g p99_ms)" \
            "$(g p999_ms)" "$(g max_ms)" "$(g errors)" "$(g non_2xx)" \
            "$(awk -v k="$(g server_rss_max_kb)" 'BEGIN {printf "%.1f", k / 1024}')" \
            "$(awk -v k="$(g server_vmhwm_kb)" 'BEGIN {printf "%.1f", k / 1024}')"
    done <"$JSONL"
    echo
    echo "RSS is sampled every 200 ms from /proc/PID/status (VmRSS) during each scenario; VmHWM is"
    echo "the kernel's peak-RSS mark for the server since it started (one server per durability,"
    echo "scenarios run in table order; the kernel updates it lazily, so it can trail the sampled max)."
    if [[ -s "$OUT/data-size.txt" ]]; then
        echo "Data dir size after the runs: $(awk '{printf "%s%s %.1f MiB", (NR > 1 ? ", " : ""), $1, $2 / 1024}' "$OUT/data-size.txt")."
    fi
    if ((FAILED_RUNS > 0)); then
        echo
        echo "**⚠ $FAILED_RUNS run(s) had errors, non-2xx responses, no samples or a dead server: see loadgen-*.log / server-*.log.**"
    fi
} >"$MD"

echo
cat "$MD"
echo
log "results: $OUT (results.jsonl, results.md, logs)"
((FAILED_RUNS == 0)) || exit 2
