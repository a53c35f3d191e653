#!/usr/bin/env bash
# sluice delivery benchmark: how fast the delivery engine drains a backlog into a
# Customer.io-compatible test server capped at N requests/s, whether sluice's RSS stays flat
# while it does, and the ingest-to-delivered latency at a steady ingest rate.
#
#   1. builds the release binaries (sluice, sluice-loadgen, sluice-cio-test-server);
#   2. starts the test server (--no-record, --max-rps) and sluice on fresh data dirs,
#      sluice pinned to one CPU, the test server, the load generator and this script to another;
#   3. backlog: loads BENCH_BACKLOG events (batches of 100, as fast as they go) before any
#      destination exists, then creates a Customer.io destination with "start":"oldest" and
#      times the drain (polling GET /_test/stats every second), sampling sluice's RSS;
#   4. steady: loads BENCH_STEADY_RATE events/s for BENCH_STEADY_SECONDS (open loop) and reads
#      the ingest-to-delivered latency the test server measured from the event ids;
#   5. optionally (BENCH_GROWTH=1) repeats the backlog phase for other backlog sizes on fresh
#      servers, to compare RSS during the drain as the backlog grows.
# Prints a markdown table; writes bench/results/delivery-<stamp>/results.json (+ .md and logs).
# See bench/README.md ("Delivery benchmark").
#
# Environment knobs:
#   BENCH_BACKLOG=1000000       events loaded before the destination exists
#   BENCH_CIO_RPS=100           test server's request cap (429 + Retry-After: 1 above it)
#   BENCH_DURABILITY=none       SLUICE_LOG_DURABILITY for sluice (none | fsync)
#   BENCH_STEADY_RATE=2000      events/s in the steady phase (0 skips the phase)
#   BENCH_STEADY_SECONDS=60
#   BENCH_STEADY_BATCH=10       events per request in the steady phase
#   BENCH_GROWTH=0              1: also drain backlogs of BENCH_GROWTH_SIZES
#   BENCH_GROWTH_SIZES="250000 1000000"
#   BENCH_LOAD_CONNECTIONS=16   load generator connections for the backlog load
#   BENCH_EVENT_BYTES=600
#   BENCH_DRAIN_TIMEOUT=1800    seconds before a drain is given up
#   BENCH_STALL_TIMEOUT=300     ... or when no op was accepted for this long
#   BENCH_SERVER_CPU=0  BENCH_LOADGEN_CPU=1
#   BENCH_DATA_ROOT=<results dir>   where the sluice data dirs go
#   BENCH_KEEP_DATA=1           keep the data dirs
#   BENCH_SKIP_BUILD=1          use existing binaries
#   BENCH_READY_TIMEOUT=30
#   BENCH_SLUICE_BIN / BENCH_LOADGEN_BIN / BENCH_CIO_BIN   binary overrides
#     (default: ${CARGO_TARGET_DIR:-target}/release/...)
#   SLUICE_DELIVERY_MAX_IN_FLIGHT / SLUICE_DELIVERY_WINDOW_EVENTS / SLUICE_DELIVERY_POLL_INTERVAL
#     and any other SLUICE_* setting are passed through to sluice.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

BACKLOG=${BENCH_BACKLOG:-1000000}
CIO_RPS=${BENCH_CIO_RPS:-100}
DURABILITY=${BENCH_DURABILITY:-none}
STEADY_RATE=${BENCH_STEADY_RATE:-2000}
STEADY_SECONDS=${BENCH_STEADY_SECONDS:-60}
STEADY_BATCH=${BENCH_STEADY_BATCH:-10}
GROWTH=${BENCH_GROWTH:-0}
GROWTH_SIZES=${BENCH_GROWTH_SIZES:-"250000 1000000"}
LOAD_CONNECTIONS=${BENCH_LOAD_CONNECTIONS:-16}
LOAD_BATCH=100
EVENT_BYTES=${BENCH_EVENT_BYTES:-600}
DRAIN_TIMEOUT=${BENCH_DRAIN_TIMEOUT:-1800}
STALL_TIMEOUT=${BENCH_STALL_TIMEOUT:-300}
SERVER_CPU=${BENCH_SERVER_CPU:-0}
LOADGEN_CPU=${BENCH_LOADGEN_CPU:-1}
READY_TIMEOUT=${BENCH_READY_TIMEOUT:-30}
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT="$ROOT/bench/results/delivery-$STAMP"
DATA_ROOT=${BENCH_DATA_ROOT:-$OUT}
BIN_DIR=${CARGO_TARGET_DIR:-$ROOT/target}/release
SLUICE_BIN=${BENCH_SLUICE_BIN:-$BIN_DIR/sluice}
LOADGEN_BIN=${BENCH_LOADGEN_BIN:-$BIN_DIR/sluice-loadgen}
CIO_BIN=${BENCH_CIO_BIN:-$BIN_DIR/sluice-cio-test-server}
SITE_ID=SITE_ID_TEST
API_KEY=API_KEY_TEST

log() { printf '[delivery %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}

for tool in cargo curl jq taskset awk; do
    command -v "$tool" >/dev/null || die "missing required tool: $tool"
done
for n in "$BACKLOG" "$CIO_RPS" "$STEADY_RATE" "$STEADY_SECONDS" "$STEADY_BATCH" "$LOAD_CONNECTIONS"; do
    [[ "$n" =~ ^[0-9]+$ ]] || die "numeric knob expected, got '$n'"
done
((BACKLOG >= LOAD_BATCH)) || die "BENCH_BACKLOG must be at least $LOAD_BATCH"

# ---------------------------------------------------------------- cleanup ---
SLUICE_PID=""
CIO_PID=""
LOADGEN_PID=""
DATA_DIRS=()
stop_pid() {
    local pid=$1
    [[ -n "$pid" ]] || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "process $pid did not exit after SIGTERM; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}
stop_servers() {
    local pid
    pid=$SLUICE_PID
    SLUICE_PID=""
    stop_pid "$pid"
    pid=$CIO_PID
    CIO_PID=""
    stop_pid "$pid"
}
cleanup() {
    local rc=$?
    if [[ -n "$LOADGEN_PID" ]]; then
        kill "$LOADGEN_PID" 2>/dev/null || true
        wait "$LOADGEN_PID" 2>/dev/null || true
    fi
    stop_servers
    if [[ "${BENCH_KEEP_DATA:-0}" != 1 ]]; then
        for d in "${DATA_DIRS[@]}"; do rm -rf -- "$d"; done
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------------ build ---
if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
    log "building release binaries (cargo build --release -p sluice -p sluice-loadgen -p sluice-testkit)"
    cargo build --release -p sluice -p sluice-loadgen -p sluice-testkit
fi
for bin in "$SLUICE_BIN" "$LOADGEN_BIN" "$CIO_BIN"; do
    [[ -x "$bin" ]] || die "$bin not found (build it, or set BENCH_*_BIN / CARGO_TARGET_DIR)"
done

NCPU=$(nproc 2>/dev/null || echo 1)
PIN_SERVER=(taskset -c "$SERVER_CPU")
PIN_LOADGEN=(taskset -c "$LOADGEN_CPU")
if ((NCPU < 2)); then
    log "WARNING: only $NCPU CPU available; not pinning"
    PIN_SERVER=()
    PIN_LOADGEN=()
else
    # This script (curl, jq, awk every second) stays off sluice's CPU.
    taskset -cp "$LOADGEN_CPU" $$ >/dev/null
fi

mkdir -p "$OUT" "$DATA_ROOT"

# ---------------------------------------------------------------- helpers ---
now_ms() { date +%s%3N; }

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

cio_stats() { curl -sS -m 5 "$CIO_URL/_test/stats"; }

dest_status() {
    curl -sS -m 5 -H "Authorization: Bearer $TOKEN" "$SLUICE_URL/api/v1/destinations/$DEST_ID"
}

# start_servers LABEL: a fresh test server and a fresh sluice; sets CIO_URL, SLUICE_URL, TOKEN.
start_servers() {
    local label=$1 line="" data_dir port code deadline
    local cio_log="$OUT/cio-$label.log" sluice_log="$OUT/sluice-$label.log"

    "${PIN_LOADGEN[@]}" "$CIO_BIN" --listen 127.0.0.1:0 --site-id "$SITE_ID" --api-key "$API_KEY" \
        --max-rps "$CIO_RPS" --no-record >"$cio_log" 2>&1 &
    CIO_PID=$!
    deadline=$((SECONDS + READY_TIMEOUT))
    while [[ -z "$line" ]]; do
        kill -0 "$CIO_PID" 2>/dev/null || die "test server exited: $(tail -n 5 "$cio_log")"
        ((SECONDS < deadline)) || die "test server printed no listening line"
        line=$(grep -m1 '^listening on ' "$cio_log" || true)
        [[ -n "$line" ]] || sleep 0.1
    done
    CIO_URL=${line#listening on }
    log "test server on $CIO_URL (max $CIO_RPS req/s, no recording; pid $CIO_PID)"

    data_dir=$(mktemp -d "$DATA_ROOT/data-$label.XXXXXX")
    DATA_DIRS+=("$data_dir")
    port=$(pick_port)
    TOKEN=$(random_token)
    SLUICE_URL="http://127.0.0.1:$port"
    NO_COLOR=1 SLUICE_ADMIN_TOKEN="$TOKEN" SLUICE_LOG_DURABILITY="$DURABILITY" \
        "${PIN_SERVER[@]}" "$SLUICE_BIN" serve --data-dir "$data_dir" --listen "127.0.0.1:$port" \
        >"$sluice_log" 2>&1 &
    SLUICE_PID=$!
    deadline=$((SECONDS + READY_TIMEOUT))
    while :; do
        kill -0 "$SLUICE_PID" 2>/dev/null || die "sluice exited during start-up: $(tail -n 20 "$sluice_log")"
        code=$(curl -s -o /dev/null -m 2 -w '%{http_code}' "$SLUICE_URL/readyz" || true)
        [[ "$code" == 200 ]] && break
        ((SECONDS < deadline)) || die "GET /readyz did not answer 200 within ${READY_TIMEOUT}s"
        sleep 0.2
    done
    log "sluice on $SLUICE_URL (durability $DURABILITY, data $data_dir; pid $SLUICE_PID)"

    local resp
    resp=$(curl -sS -m 10 -X POST "$SLUICE_URL/api/v1/sources" -H "Authorization: Bearer $TOKEN" \
        -H 'Content-Type: application/json' -d '{"name":"bench"}' -w '\n%{http_code}') ||
        die "POST /api/v1/sources failed"
    [[ "${resp##*$'\n'}" == 201 ]] || die "POST /api/v1/sources: $resp"
    SOURCE_ID=$(jq -r .id <<<"${resp%$'\n'*}")
    WRITE_KEY=$(jq -r .write_key <<<"${resp%$'\n'*}")
}

create_destination() {
    local start=$1 body resp
    body=$(jq -cn --arg cio "$CIO_URL" --arg src "$SOURCE_ID" --arg start "$start" \
        --arg site "$SITE_ID" --arg key "$API_KEY" \
        '{name:"cio", type:"customerio", sources:[$src], start:$start,
          config:{site_id:$site, api_key:$key, track_url:$cio}}')
    resp=$(curl -sS -m 30 -X POST "$SLUICE_URL/api/v1/destinations" \
        -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -d "$body" \
        -w '\n%{http_code}') || die "POST /api/v1/destinations failed"
    [[ "${resp##*$'\n'}" == 201 ]] || die "POST /api/v1/destinations: $resp"
    DEST_ID=$(jq -r .id <<<"${resp%$'\n'*}")
}

# run_loadgen NAME ARGS...: runs the load generator pinned, logs to loadgen-NAME.log, and leaves
# its JSON summary line in LG_JSON (exit status in LG_RC).
run_loadgen() {
    local name=$1
    shift
    local lg_log="$OUT/loadgen-$name.log"
    SLUICE_WRITE_KEY="$WRITE_KEY" "${PIN_LOADGEN[@]}" "$LOADGEN_BIN" --url "$SLUICE_URL" \
        --event-bytes "$EVENT_BYTES" --warmup 0 "$@" >"$lg_log" 2>&1 &
    LOADGEN_PID=$!
    LG_RC=0
    wait "$LOADGEN_PID" || LG_RC=$?
    LOADGEN_PID=""
    LG_JSON=$(grep '^{' "$lg_log" | tail -n1 || true)
    [[ -n "$LG_JSON" ]] || die "load generator produced no summary: $(tail -n 5 "$lg_log")"
    if [[ "$LG_RC" != 0 ]]; then
        log "WARNING: load generator exited $LG_RC ($(jq -c '{errors,non_2xx}' <<<"$LG_JSON")); see $lg_log"
    fi
}

# rss_at FILE FRACTION TOTAL: sluice RSS (kB) at the first sample with accepted >= FRACTION*TOTAL.
# Sample lines: "elapsed_ms accepted_ops sluice_rss_kb cio_rss_kb".
rss_at() {
    awk -v f="$2" -v n="$3" '$2 >= f * n {print $3; found = 1; exit} END {if (!found) print 0}' "$1"
}

# backlog_phase LABEL N: loads N events, then drains them; writes backlog-LABEL.json.
backlog_phase() {
    local label=$1 n=$2
    local requests=$(((n + LOAD_BATCH - 1) / LOAD_BATCH))
    local samples="$OUT/drain-$label.txt" load_rss="$OUT/load-rss-$label.txt"
    : >"$samples"
    : >"$load_rss"

    log "[$label] loading $((requests * LOAD_BATCH)) events ($requests batches of $LOAD_BATCH, $LOAD_CONNECTIONS connections) before any destination exists"
    (while kill -0 "$SLUICE_PID" 2>/dev/null; do rss_kb "$SLUICE_PID" >>"$load_rss"; sleep 0.2; done) &
    local sampler=$!
    local t0
    t0=$(now_ms)
    run_loadgen "load-$label" --mode batch --batch-size "$LOAD_BATCH" \
        --connections "$LOAD_CONNECTIONS" --duration 1h --max-requests "$requests" --progress 10s
    local load_ms=$(($(now_ms) - t0))
    kill "$sampler" 2>/dev/null || true
    wait "$sampler" 2>/dev/null || true
    local loaded load_errors load_rss_max
    loaded=$(jq .events <<<"$LG_JSON")
    load_errors=$(jq '.errors + .non_2xx' <<<"$LG_JSON")
    load_rss_max=$(sort -n "$load_rss" | tail -n1)
    log "[$label] loaded $loaded events in $((load_ms / 1000)).$(((load_ms % 1000) / 100)) s ($(jq .events_per_s <<<"$LG_JSON") events/s, $load_errors failed requests)"
    ((loaded > 0)) || die "nothing was loaded"

    sleep 2
    local rss_before
    rss_before=$(rss_kb "$SLUICE_PID")
    curl -sS -m 5 -X POST "$CIO_URL/_test/stats/reset" >/dev/null

    log "[$label] creating the Customer.io destination (start: oldest); draining $loaded events into $CIO_RPS req/s"
    local start_ms stats accepted last_accepted=0 last_progress now elapsed status
    start_ms=$(now_ms)
    create_destination oldest
    local create_ms=$(($(now_ms) - start_ms))
    last_progress=$SECONDS
    local deadline=$((SECONDS + DRAIN_TIMEOUT)) outcome=drained next_log=$((SECONDS + 10))
    while :; do
        sleep 1
        now=$(now_ms)
        elapsed=$((now - start_ms))
        stats=$(cio_stats) || die "GET /_test/stats failed"
        accepted=$(jq .accepted_ops <<<"$stats")
        echo "$elapsed $accepted $(rss_kb "$SLUICE_PID") $(rss_kb "$CIO_PID")" >>"$samples"
        if ((accepted != last_accepted)); then
            last_accepted=$accepted
            last_progress=$SECONDS
        fi
        ((accepted >= loaded)) && break
        kill -0 "$SLUICE_PID" 2>/dev/null || {
            outcome=sluice_died
            break
        }
        if ((SECONDS >= deadline)); then
            outcome=timeout
            break
        fi
        if ((SECONDS - last_progress >= STALL_TIMEOUT)); then
            outcome=stalled
            break
        fi
        if ((SECONDS >= next_log)); then
            next_log=$((SECONDS + 10))
            status=$(dest_status | jq -c '.status | {state, delivered, cursor, held, failed_requests, last_error}' 2>/dev/null || echo '?')
            log "[$label] ${elapsed}ms: accepted $accepted/$loaded ($(jq -c '.status_counts' <<<"$stats")), sluice RSS $(($(rss_kb "$SLUICE_PID") / 1024)) MiB, status $status"
        fi
    done
    local drain_ms=$elapsed
    stats=$(cio_stats)
    status=$(dest_status 2>/dev/null || echo '{}')
    [[ "$outcome" == drained ]] || log "[$label] WARNING: drain $outcome after ${drain_ms} ms: accepted $accepted of $loaded; status $(jq -c .status <<<"$status" 2>/dev/null)"
    log "[$label] drain $outcome: $accepted ops in ${drain_ms} ms"

    local rss_max cio_rss_max
    rss_max=$(awk 'BEGIN {m = 0} $3 > m {m = $3} END {print m}' "$samples")
    cio_rss_max=$(awk 'BEGIN {m = 0} $4 > m {m = $4} END {print m}' "$samples")
    jq -n \
        --arg lbl "$label" --arg outcome "$outcome" \
        --argjson backlog "$n" --argjson loaded "$loaded" --argjson load_ms "$load_ms" \
        --argjson load_errors "$load_errors" --argjson load "$LG_JSON" \
        --argjson load_rss_max "${load_rss_max:-0}" \
        --argjson rss_before "$rss_before" --argjson create_ms "$create_ms" \
        --argjson drain_ms "$drain_ms" --argjson stats "$stats" \
        --argjson rss10 "$(rss_at "$samples" 0.1 "$loaded")" \
        --argjson rss50 "$(rss_at "$samples" 0.5 "$loaded")" \
        --argjson rss90 "$(rss_at "$samples" 0.9 "$loaded")" \
        --argjson rss_max "$rss_max" --argjson cio_rss_max "$cio_rss_max" \
        --argjson status "$(jq -c '.status // {}' <<<"$status" 2>/dev/null || echo '{}')" \
        '{"label": $lbl, outcome: $outcome, backlog: $backlog, loaded_events: $loaded,
          load_seconds: ($load_ms / 1000), load_failed_requests: $load_errors,
          load_events_per_s: $load.events_per_s,
          sluice_rss_max_during_load_kb: $load_rss_max,
          sluice_rss_before_destination_kb: $rss_before,
          create_destination_ms: $create_ms,
          drain_seconds: ($drain_ms / 1000),
          delivered_events_per_s: (if $drain_ms > 0 then ($stats.accepted_ops / ($drain_ms / 1000) | floor) else 0 end),
          accepted_ops: $stats.accepted_ops, requests: $stats.requests,
          status_counts: $stats.status_counts, duplicate_ids: $stats.duplicate_ids,
          events_per_request: (if ($stats.status_counts["200"] // 0) > 0
              then ($stats.accepted_ops / $stats.status_counts["200"] * 10 | round / 10) else null end),
          latency_ms: $stats.latency_ms,
          sluice_rss_kb: {at_10pct: $rss10, at_50pct: $rss50, at_90pct: $rss90, max: $rss_max},
          cio_rss_max_kb: $cio_rss_max,
          destination_status: $status}' >"$OUT/backlog-$label.json"
}

# steady_phase: paced load on the running servers; writes steady.json.
steady_phase() {
    local stats status accepted sent start_ms
    curl -sS -m 5 -X POST "$CIO_URL/_test/stats/reset" >/dev/null
    log "[steady] $STEADY_RATE events/s for ${STEADY_SECONDS}s (batches of $STEADY_BATCH, open loop)"
    local rss_file="$OUT/steady-rss.txt"
    : >"$rss_file"
    (while kill -0 "$SLUICE_PID" 2>/dev/null; do rss_kb "$SLUICE_PID" >>"$rss_file"; sleep 1; done) &
    local sampler=$!
    start_ms=$(now_ms)
    run_loadgen steady --mode batch --batch-size "$STEADY_BATCH" --connections 8 \
        --rate "$STEADY_RATE" --duration "$STEADY_SECONDS" --progress 10s
    local load_ms=$(($(now_ms) - start_ms))
    local at_end
    at_end=$(cio_stats | jq .accepted_ops)
    sent=$(jq .events <<<"$LG_JSON")
    # Let the tail arrive (at most 60 s).
    local deadline=$((SECONDS + 60))
    while :; do
        accepted=$(cio_stats | jq .accepted_ops)
        ((accepted >= sent || SECONDS >= deadline)) && break
        sleep 0.5
    done
    local tail_ms=$(($(now_ms) - start_ms - load_ms))
    kill "$sampler" 2>/dev/null || true
    wait "$sampler" 2>/dev/null || true
    stats=$(cio_stats)
    status=$(dest_status 2>/dev/null || echo '{}')
    log "[steady] sent $sent events, accepted $accepted; latency $(jq -c .latency_ms <<<"$stats")"
    jq -n --argjson rate "$STEADY_RATE" --argjson secs "$STEADY_SECONDS" \
        --argjson batch "$STEADY_BATCH" --argjson load "$LG_JSON" --argjson stats "$stats" \
        --argjson load_ms "$load_ms" --argjson at_end "$at_end" --argjson tail_ms "$tail_ms" \
        --argjson rss_max "$(sort -n "$rss_file" | tail -n1 | grep . || echo 0)" \
        --argjson status "$(jq -c '.status // {}' <<<"$status" 2>/dev/null || echo '{}')" \
        '{target_events_per_s: $rate, seconds: $secs, batch_size: $batch,
          sent_events: $load.events, sent_events_per_s: $load.events_per_s,
          ingest_p99_ms: $load.p99_ms, load_failed_requests: ($load.errors + $load.non_2xx),
          accepted_ops: $stats.accepted_ops,
          delivered_events_per_s: ($at_end / ($load_ms / 1000) | floor),
          all_delivered: ($stats.accepted_ops >= $load.events),
          tail_ms_after_load: $tail_ms,
          requests: $stats.requests, status_counts: $stats.status_counts,
          duplicate_ids: $stats.duplicate_ids, latency_ms: $stats.latency_ms,
          sluice_rss_max_kb: $rss_max, destination_status: $status}' >"$OUT/steady.json"
}

# ------------------------------------------------------------------- runs ---
MAIN_LABEL="n$BACKLOG"
start_servers "$MAIN_LABEL"
backlog_phase "$MAIN_LABEL" "$BACKLOG"
if ((STEADY_RATE > 0 && STEADY_SECONDS > 0)); then
    steady_phase
fi
stop_servers

GROWTH_FILES=()
if [[ "$GROWTH" == 1 ]]; then
    for size in $GROWTH_SIZES; do
        if [[ "$size" == "$BACKLOG" ]]; then
            GROWTH_FILES+=("$OUT/backlog-$MAIN_LABEL.json")
            continue
        fi
        start_servers "growth-n$size"
        backlog_phase "growth-n$size" "$size"
        stop_servers
        GROWTH_FILES+=("$OUT/backlog-growth-n$size.json")
    done
fi

# ---------------------------------------------------------------- results ---
delivery_env() { printf '%s' "${!1:-$2 (default)}"; }
jq -n \
    --arg stamp "$STAMP" \
    --arg commit "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo none)$(git -C "$ROOT" diff --quiet HEAD -- 2>/dev/null || echo ' (dirty)')" \
    --arg cpu "$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo 2>/dev/null || echo unknown)" \
    --argjson ncpu "$NCPU" --arg kernel "$(uname -r)" \
    --arg fs "$(stat -f -c %T "$DATA_ROOT" 2>/dev/null || echo unknown)" \
    --arg durability "$DURABILITY" --argjson cio_rps "$CIO_RPS" \
    --arg max_in_flight "$(delivery_env SLUICE_DELIVERY_MAX_IN_FLIGHT 4)" \
    --arg window_events "$(delivery_env SLUICE_DELIVERY_WINDOW_EVENTS 10000)" \
    --arg poll_interval "$(delivery_env SLUICE_DELIVERY_POLL_INTERVAL 100ms)" \
    --argjson event_bytes "$EVENT_BYTES" \
    --slurpfile backlog "$OUT/backlog-$MAIN_LABEL.json" \
    --slurpfile steady <(if [[ -f "$OUT/steady.json" ]]; then cat "$OUT/steady.json"; fi) \
    --slurpfile growth <(for f in "${GROWTH_FILES[@]}"; do cat "$f"; done) \
    '{stamp: $stamp, commit: $commit,
      machine: {cpu: $cpu, cpus: $ncpu, kernel: $kernel, data_fs: $fs},
      config: {durability: $durability, cio_max_rps: $cio_rps, event_bytes: $event_bytes,
               delivery_max_in_flight: $max_in_flight, delivery_window_events: $window_events,
               delivery_poll_interval: $poll_interval},
      backlog: $backlog[0], steady: ($steady[0] // null), growth: $growth}' >"$OUT/results.json"

R="$OUT/results.json"
mib() { awk -v k="$1" 'BEGIN {printf "%.0f", k / 1024}'; }
q() { jq -r "$1" "$R"; }
{
    echo "# sluice delivery benchmark $STAMP"
    echo
    echo "- commit $(q .commit); $(q .machine.cpu), $(q .machine.cpus) CPUs (sluice on CPU $SERVER_CPU; test server, load generator, script on CPU $LOADGEN_CPU); kernel $(q .machine.kernel); data on $(q .machine.data_fs)"
    echo "- durability $DURABILITY; test server capped at $CIO_RPS req/s; delivery max_in_flight=$(q .config.delivery_max_in_flight), window_events=$(q .config.delivery_window_events), poll_interval=$(q .config.delivery_poll_interval); ~$EVENT_BYTES B/event"
    echo
    echo "### Backlog drain ($(q .backlog.loaded_events) events loaded before the destination existed)"
    echo
    echo "| metric | value |"
    echo "|---|---:|"
    echo "| outcome | $(q .backlog.outcome) |"
    echo "| load: events/s into sluice | $(q .backlog.load_events_per_s) |"
    echo "| drain time (destination created → all ops accepted) | $(q .backlog.drain_seconds) s |"
    echo "| delivered events/s | $(q .backlog.delivered_events_per_s) |"
    echo "| requests to the test server (by status) | $(q .backlog.requests) ($(q '.backlog.status_counts | to_entries | map("\(.key): \(.value)") | join(", ")')) |"
    echo "| events per 200 request | $(q .backlog.events_per_request) |"
    echo "| duplicate event ids | $(q .backlog.duplicate_ids) |"
    echo "| sluice RSS max during load | $(mib "$(q .backlog.sluice_rss_max_during_load_kb)") MiB |"
    echo "| sluice RSS before the destination | $(mib "$(q .backlog.sluice_rss_before_destination_kb)") MiB |"
    echo "| sluice RSS at 10 / 50 / 90 % delivered | $(mib "$(q .backlog.sluice_rss_kb.at_10pct)") / $(mib "$(q .backlog.sluice_rss_kb.at_50pct)") / $(mib "$(q .backlog.sluice_rss_kb.at_90pct)") MiB |"
    echo "| sluice RSS max during the drain | $(mib "$(q .backlog.sluice_rss_kb.max)") MiB |"
    echo "| test server RSS max during the drain | $(mib "$(q .backlog.cio_rss_max_kb)") MiB |"
    if [[ "$(q '.steady != null')" == true ]]; then
        echo
        echo "### Steady state ($(q .steady.target_events_per_s) events/s for $(q .steady.seconds) s, batches of $(q .steady.batch_size))"
        echo
        echo "| metric | value |"
        echo "|---|---:|"
        echo "| sent events/s (load generator) | $(q .steady.sent_events_per_s) |"
        echo "| delivered events/s | $(q .steady.delivered_events_per_s) |"
        echo "| all delivered | $(q .steady.all_delivered) ($(q .steady.accepted_ops) of $(q .steady.sent_events); last $(q .steady.tail_ms_after_load) ms after the load ended) |"
        echo "| ingest → delivered latency p50 / p90 / p99 / max | $(q .steady.latency_ms.p50) / $(q .steady.latency_ms.p90) / $(q .steady.latency_ms.p99) / $(q .steady.latency_ms.max) ms |"
        echo "| requests to the test server (by status) | $(q .steady.requests) ($(q '.steady.status_counts | to_entries | map("\(.key): \(.value)") | join(", ")')) |"
        echo "| sluice RSS max | $(mib "$(q .steady.sluice_rss_max_kb)") MiB |"
    fi
    if [[ "$(q '.growth | length')" != 0 ]]; then
        echo
        echo "### RSS as the backlog grows"
        echo
        echo "| backlog | outcome | delivered events/s | RSS before destination MiB | RSS at 10 / 50 / 90 % MiB | drain RSS max MiB |"
        echo "|---:|---|---:|---:|---:|---:|"
        jq -r '.growth[] | "| \(.loaded_events) | \(.outcome) | \(.delivered_events_per_s) | \(.sluice_rss_before_destination_kb / 1024 | round) | \(.sluice_rss_kb.at_10pct / 1024 | round) / \(.sluice_rss_kb.at_50pct / 1024 | round) / \(.sluice_rss_kb.at_90pct / 1024 | round) | \(.sluice_rss_kb.max / 1024 | round) |"' "$R"
    fi
    echo
    echo "Latency = the test server's wall clock when it accepted an event minus the event's"
    echo "timestamp (the time part of its ULID id; the load generator stamps events with the send"
    echo "time, ms precision). RSS is VmRSS from /proc, sampled every second."
} >"$OUT/results.md"

echo
cat "$OUT/results.md"
echo
log "results: $OUT (results.json, results.md, logs)"
bad=$(jq '[.backlog, (.growth[])] | map(select(.outcome != "drained")) | length' "$R")
((bad == 0)) || exit 2
