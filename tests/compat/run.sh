#!/usr/bin/env bash
# Real-client compatibility suite: drives the official, pinned Segment clients
# (segment-analytics-python 2.4.0 and @segment/analytics-node 3.1.0) against a
# freshly started sluice and checks, through the admin events API, that every
# call was stored exactly once and normalised as the contract says.
#
#   bash tests/compat/run.sh            # needs target/debug/sluice and target/debug/sluice-cio-test-server
#                                       # (cargo build -p sluice -p sluice-testkit)
# It also creates a Customer.io destination pointed at the in-repo Customer.io-compatible test
# server and checks that every call reached it, mapped, in order per user.
#   SLUICE_BIN=/path/to/sluice bash tests/compat/run.sh
#
# Optional env: COMPAT_READY_TIMEOUT (s, default 60), COMPAT_EVENTS_TIMEOUT (s,
# default 30), COMPAT_DRIVER_TIMEOUT (s, default 180), COMPAT_KEEP=1 (keep the
# temp dir with the server log and manifests).
# Ends with `compat: N passed, M failed`; exits non-zero on any failure.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
SCRATCH="$HERE/.scratch"
SLUICE_BIN="${SLUICE_BIN:-$ROOT/target/debug/sluice}"
CIO_BIN="${CIO_BIN:-$ROOT/target/debug/sluice-cio-test-server}"
READY_TIMEOUT="${COMPAT_READY_TIMEOUT:-60}"
EVENTS_TIMEOUT="${COMPAT_EVENTS_TIMEOUT:-30}"
DRIVER_TIMEOUT="${COMPAT_DRIVER_TIMEOUT:-180}"
export NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}"
export no_proxy="$NO_PROXY"

fail_setup() {
  echo "FAIL setup: $*"
  echo "compat: 0 passed, 1 failed"
  exit 1
}

PYTHON="$(command -v python3 || true)"
[ -n "$PYTHON" ] || fail_setup "python3 not found"
command -v node >/dev/null || fail_setup "node not found"
command -v npm >/dev/null || fail_setup "npm not found"

# ---------------------------------------------------------------- clients (cached in .scratch)
mkdir -p "$SCRATCH"

stamp_of() { cat "$@" | sha256sum | cut -d' ' -f1; }

py_stamp="$(stamp_of "$HERE/requirements.txt") $("$PYTHON" -c 'import sys; print(sys.version.split()[0])')"
if [ -x "$SCRATCH/venv/bin/python" ] && [ "$(cat "$SCRATCH/venv/.compat-stamp" 2>/dev/null)" = "$py_stamp" ]; then
  echo "clients: python venv up to date"
else
  echo "clients: creating python venv and installing requirements.txt"
  rm -rf "$SCRATCH/venv"
  "$PYTHON" -m venv "$SCRATCH/venv" || fail_setup "python3 -m venv failed"
  "$SCRATCH/venv/bin/pip" install --quiet --disable-pip-version-check -r "$HERE/requirements.txt" \
    || fail_setup "pip install -r tests/compat/requirements.txt failed"
  echo "$py_stamp" >"$SCRATCH/venv/.compat-stamp"
fi

node_stamp="$(stamp_of "$HERE/package.json" "$HERE/package-lock.json") $(node --version)"
if [ -d "$SCRATCH/node/node_modules/@segment/analytics-node" ] \
  && [ "$(cat "$SCRATCH/node/.compat-stamp" 2>/dev/null)" = "$node_stamp" ]; then
  echo "clients: node modules up to date"
else
  echo "clients: npm ci (pinned package-lock.json)"
  rm -rf "$SCRATCH/node"
  mkdir -p "$SCRATCH/node"
  cp "$HERE/package.json" "$HERE/package-lock.json" "$SCRATCH/node/"
  (cd "$SCRATCH/node" && npm ci --no-audit --no-fund --loglevel=error) || fail_setup "npm ci failed"
  echo "$node_stamp" >"$SCRATCH/node/.compat-stamp"
fi

# ---------------------------------------------------------------- server
[ -x "$SLUICE_BIN" ] || fail_setup "no sluice binary at $SLUICE_BIN (run 'cargo build -p sluice' or set SLUICE_BIN)"
[ -x "$CIO_BIN" ] || fail_setup "no test server at $CIO_BIN (run 'cargo build -p sluice-testkit' or set CIO_BIN)"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/sluice-compat.XXXXXX")"
SERVER_PID=""
CIO_PID=""
STATUS=1
cleanup() {
  if [ -n "$CIO_PID" ]; then kill -TERM "$CIO_PID" 2>/dev/null; wait "$CIO_PID" 2>/dev/null; fi
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null
  fi
  if [ "$STATUS" -ne 0 ] && [ -s "$WORK/server.log" ]; then
    echo "--- last 40 lines of the sluice log ($WORK/server.log) ---"
    tail -n 40 "$WORK/server.log"
  fi
  if [ "${COMPAT_KEEP:-0}" = 1 ]; then
    echo "compat: kept $WORK"
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PORT="$("$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
TOKEN="$("$PYTHON" -c 'import secrets; print(secrets.token_hex(24))')"
BASE="http://127.0.0.1:$PORT"
RUN_ID="$(date +%s)-$$"
SINCE="$(date +%s.%N)"
mkdir -p "$WORK/data"

echo "server: $SLUICE_BIN serve on $BASE (data $WORK/data)"
# Debug logging, so the "no secret in any log line" check below covers every level.
SLUICE_LOG=debug SLUICE_ADMIN_TOKEN="$TOKEN" "$SLUICE_BIN" serve --data-dir "$WORK/data" --listen "127.0.0.1:$PORT" \
  >"$WORK/server.log" 2>&1 &
SERVER_PID=$!

"$CIO_BIN" --listen 127.0.0.1:0 >"$WORK/cio.log" 2>&1 &
CIO_PID=$!
CIO_URL=""
for _ in $(seq 100); do
  CIO_URL="$(sed -n 's/^listening on //p' "$WORK/cio.log" | head -n1)"
  [ -n "$CIO_URL" ] && break
  sleep 0.1
done
[ -n "$CIO_URL" ] || fail_setup "the Customer.io test server did not start: $(cat "$WORK/cio.log")"
echo "customer.io test server: $CIO_URL"

VERIFY=("$PYTHON" "$HERE/verify.py")
"${VERIFY[@]}" wait-ready --base "$BASE" --pid "$SERVER_PID" --timeout "$READY_TIMEOUT" || exit 1
"${VERIFY[@]}" create-sources --base "$BASE" --token "$TOKEN" --out "$WORK/sources.json" \
  "compat-python-$RUN_ID" "compat-node-$RUN_ID" || exit 1
"${VERIFY[@]}" create-destination --base "$BASE" --token "$TOKEN" --cio "$CIO_URL" || exit 1
key_of() { "$PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]]["write_key"])' "$WORK/sources.json" "$1"; }
# verify.py looks sources up by client name
"$PYTHON" - "$WORK/sources.json" "$RUN_ID" <<'EOF'
import json, sys
path, rid = sys.argv[1], sys.argv[2]
s = json.load(open(path))
json.dump({"python": s["compat-python-" + rid], "node": s["compat-node-" + rid]}, open(path, "w"))
EOF

# ---------------------------------------------------------------- drive the clients
echo "driving segment-analytics-python"
timeout "$DRIVER_TIMEOUT" "$SCRATCH/venv/bin/python" "$HERE/drive_python.py" \
  --host "$BASE" --write-key "$(key_of python)" --run-id "$RUN_ID" --out "$WORK/python.json"
py_rc=$?
[ "$py_rc" -eq 0 ] || echo "drive_python.py exited $py_rc"

echo "driving @segment/analytics-node"
timeout "$DRIVER_TIMEOUT" node "$HERE/drive_node.mjs" --node-project "$SCRATCH/node" \
  --host "$BASE" --write-key "$(key_of node)" --run-id "$RUN_ID" --out "$WORK/node.json"
node_rc=$?
[ "$node_rc" -eq 0 ] || echo "drive_node.mjs exited $node_rc"

# ---------------------------------------------------------------- verify
"${VERIFY[@]}" check --base "$BASE" --token "$TOKEN" --sources "$WORK/sources.json" \
  --since "$SINCE" --timeout "$EVENTS_TIMEOUT" \
  --manifest "python=$WORK/python.json" --manifest "node=$WORK/node.json"
STATUS=$?
"${VERIFY[@]}" check-delivery --cio "$CIO_URL" --timeout "$EVENTS_TIMEOUT" \
  --manifest "python=$WORK/python.json" --manifest "node=$WORK/node.json"
DELIVERY_STATUS=$?
[ "$DELIVERY_STATUS" -eq 0 ] || STATUS=$DELIVERY_STATUS

# No secret in any log line: neither the Customer.io API key nor the admin token.
if grep -q -e "API_KEY_TEST" -e "$TOKEN" "$WORK/server.log"; then
  echo "FAIL a secret appears in the sluice log:"
  grep -n -e "API_KEY_TEST" -e "$TOKEN" "$WORK/server.log" | head -n 3
  STATUS=1
elif [ "$(wc -l <"$WORK/server.log")" -lt 20 ]; then
  echo "FAIL the sluice log is nearly empty, so the secret check proves nothing"
  STATUS=1
else
  echo "PASS no secret in $(wc -l <"$WORK/server.log") debug log lines"
fi
exit "$STATUS"
