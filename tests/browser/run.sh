#!/usr/bin/env bash
# Browser tests: headless Chromium (Debian's chromium, driven by the pinned playwright-core) loads
# pages from a small page server on 127.0.0.1 (another origin than sluice, so CORS is real) that
# run the pinned @segment/analytics-next and sluice's own /sluice.js through the footer snippet;
# every test asserts through the admin events API what sluice stored. The dashboard tests drive
# the dashboard (sign-in, sources, the live debugger, a Customer.io destination) against the
# in-repo Customer.io test server. See README.md here.
#
#   cargo build -p sluice -p sluice-testkit   # the suite runs target/debug/sluice and
#                                             # target/debug/sluice-cio-test-server
#   bash tests/browser/run.sh        # or: SLUICE_BIN=/path/to/sluice CIO_BIN=… bash tests/browser/run.sh
#
# Optional env: BROWSER_ONLY (run the tests whose name contains it), BROWSER_READY_TIMEOUT (s,
# default 60), BROWSER_EVENTS_TIMEOUT (s, default 30), BROWSER_TEST_TIMEOUT (s, default 120),
# BROWSER_SUITE_TIMEOUT (s, default 900), BROWSER_KEEP=1 (keep the temp dir with the logs).
# A failed test leaves full-page screenshots in tests/browser/.artifacts/ (cleared at each run).
# Ends with `browser: N passed, M failed`; exits non-zero on any failure.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
SCRATCH="$HERE/.scratch"
SLUICE_BIN="${SLUICE_BIN:-$ROOT/target/debug/sluice}"
CIO_BIN="${CIO_BIN:-$ROOT/target/debug/sluice-cio-test-server}"
ARTIFACTS="$HERE/.artifacts"
CHROMIUM=/usr/bin/chromium
READY_TIMEOUT="${BROWSER_READY_TIMEOUT:-60}"
SUITE_TIMEOUT="${BROWSER_SUITE_TIMEOUT:-900}"
export NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}"
export no_proxy="$NO_PROXY"

WORK=""
TESTS_PID=""
SERVER_PID=""
PAGES_PID=""
CIO_PID=""
STATUS=1
SUMMARY=""

cleanup() {
  for pid in "$TESTS_PID" "$PAGES_PID" "$CIO_PID" "$SERVER_PID"; do
    [ -n "$pid" ] || continue
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null
    fi
    wait "$pid" 2>/dev/null
  done
  if [ -n "$WORK" ]; then
    if [ "$STATUS" -ne 0 ] && [ -s "$WORK/server.log" ]; then
      echo "--- last 30 lines of the sluice log ($WORK/server.log) ---"
      tail -n 30 "$WORK/server.log"
    fi
    if [ "$STATUS" -ne 0 ] && [ -s "$WORK/cio.log" ]; then
      echo "--- last 10 lines of the Customer.io test server's log ($WORK/cio.log) ---"
      tail -n 10 "$WORK/cio.log"
    fi
    if [ "${BROWSER_KEEP:-0}" = 1 ]; then echo "browser: kept $WORK"; else rm -rf "$WORK"; fi
  fi
  # The closing line, always last.
  if [ -n "$SUMMARY" ]; then
    echo "$SUMMARY"
  else
    echo "browser: 0 passed, 1 failed"
  fi
}
trap 'cleanup; exit "$STATUS"' EXIT
trap 'exit 130' INT TERM

fail_setup() {
  echo "FAIL setup: $*"
  STATUS=1
  exit 1
}

# ---------------------------------------------------------------- chromium (Debian's package)
if [ ! -x "$CHROMIUM" ]; then
  echo "chromium: installing Debian's chromium and chromium-driver"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq || fail_setup "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null \
    || fail_setup "apt-get install chromium chromium-driver failed"
fi
[ -x "$CHROMIUM" ] || fail_setup "no $CHROMIUM after installing chromium"
echo "chromium: $("$CHROMIUM" --version 2>/dev/null | tail -n 1)"

# ---------------------------------------------------------------- npm packages (cached in .scratch)
command -v node >/dev/null || fail_setup "node not found"
command -v npm >/dev/null || fail_setup "npm not found"
mkdir -p "$SCRATCH"
NODE_PROJECT="$SCRATCH/node"
stamp="$(cat "$HERE/package.json" "$HERE/package-lock.json" | sha256sum | cut -d' ' -f1) $(node --version)"
if [ -d "$NODE_PROJECT/node_modules/playwright-core" ] && [ -d "$NODE_PROJECT/node_modules/@segment/analytics-next" ] \
  && [ "$(cat "$NODE_PROJECT/.browser-stamp" 2>/dev/null)" = "$stamp" ]; then
  echo "npm: node modules up to date"
else
  echo "npm: npm ci (pinned package-lock.json)"
  rm -rf "$NODE_PROJECT"
  mkdir -p "$NODE_PROJECT"
  cp "$HERE/package.json" "$HERE/package-lock.json" "$NODE_PROJECT/"
  (cd "$NODE_PROJECT" && npm ci --no-audit --no-fund --loglevel=error) || fail_setup "npm ci failed"
  echo "$stamp" >"$NODE_PROJECT/.browser-stamp"
fi
ANX_UMD="$NODE_PROJECT/node_modules/@segment/analytics-next/dist/umd/index.js"
[ -f "$ANX_UMD" ] || fail_setup "no $ANX_UMD"

# ---------------------------------------------------------------- sluice, the page server, the Customer.io test server
[ -x "$SLUICE_BIN" ] || fail_setup "no sluice binary at $SLUICE_BIN (run 'cargo build -p sluice' or set SLUICE_BIN)"
[ -x "$CIO_BIN" ] || fail_setup "no test server at $CIO_BIN (run 'cargo build -p sluice-testkit' or set CIO_BIN)"
rm -rf "$ARTIFACTS" # screenshots of the last run's failures

WORK="$(mktemp -d "${TMPDIR:-/tmp}/sluice-browser.XXXXXX")"
mkdir -p "$WORK/data" "$WORK/pages"
PORT="$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')"
TOKEN="$(node -e 'console.log(require("crypto").randomBytes(24).toString("hex"))')"
BASE="http://127.0.0.1:$PORT"

echo "sluice: $SLUICE_BIN serve on $BASE (data $WORK/data)"
SLUICE_ADMIN_TOKEN="$TOKEN" "$SLUICE_BIN" serve --data-dir "$WORK/data" --listen "127.0.0.1:$PORT" \
  >"$WORK/server.log" 2>&1 &
SERVER_PID=$!

node "$HERE/pages.mjs" --root "$WORK/pages" --analytics-next "$ANX_UMD" >"$WORK/pages.log" 2>&1 &
PAGES_PID=$!
PAGES_URL=""
for _ in $(seq 100); do
  PAGES_URL="$(sed -n 's/^listening on //p' "$WORK/pages.log" | head -n1)"
  [ -n "$PAGES_URL" ] && break
  kill -0 "$PAGES_PID" 2>/dev/null || break
  sleep 0.1
done
[ -n "$PAGES_URL" ] || fail_setup "the page server did not start: $(cat "$WORK/pages.log")"
echo "pages: $PAGES_URL"

# Customer.io-compatible: accepts Site ID SITE_ID_TEST with API key API_KEY_TEST until a test
# rotates them (POST /_test/credentials).
"$CIO_BIN" --listen 127.0.0.1:0 >"$WORK/cio.log" 2>&1 &
CIO_PID=$!
CIO_URL=""
for _ in $(seq 100); do
  CIO_URL="$(sed -n 's/^listening on //p' "$WORK/cio.log" | head -n1)"
  [ -n "$CIO_URL" ] && break
  kill -0 "$CIO_PID" 2>/dev/null || break
  sleep 0.1
done
[ -n "$CIO_URL" ] || fail_setup "the Customer.io test server did not start: $(cat "$WORK/cio.log")"
echo "customer.io test server: $CIO_URL"

deadline=$(( $(date +%s) + READY_TIMEOUT ))
until [ "$(curl -s -o /dev/null -w '%{http_code}' "$BASE/readyz" 2>/dev/null)" = 200 ]; do
  kill -0 "$SERVER_PID" 2>/dev/null || fail_setup "sluice exited: $(tail -n 20 "$WORK/server.log")"
  [ "$(date +%s)" -lt "$deadline" ] || fail_setup "sluice not ready within ${READY_TIMEOUT} s"
  sleep 0.2
done
echo "sluice: ready"

# ---------------------------------------------------------------- the tests
# In the background, so a signal to this script is handled at once (the trap stops it too).
timeout --kill-after=10 "$SUITE_TIMEOUT" node "$HERE/run.mjs" \
  --sluice "$BASE" --token "$TOKEN" --pages "$PAGES_URL" --pages-dir "$WORK/pages" \
  --node-project "$NODE_PROJECT" --asset "$ROOT/crates/sluice-collector/assets/sluice.js" \
  --cio "$CIO_URL" --artifacts "$ARTIFACTS" --summary "$WORK/summary.json" ${BROWSER_ONLY:+--only "$BROWSER_ONLY"} &
TESTS_PID=$!
wait "$TESTS_PID"
STATUS=$?
TESTS_PID=""
if [ -s "$WORK/summary.json" ]; then
  SUMMARY="$(node -e 'const s=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8"));console.log(`browser: ${s.passed} passed, ${s.failed} failed`)' "$WORK/summary.json")"
  case "$SUMMARY" in *" 0 failed") ;; *) [ "$STATUS" -ne 0 ] || STATUS=1 ;; esac
else
  [ "$STATUS" -eq 124 ] && echo "FAIL the suite took longer than ${SUITE_TIMEOUT} s"
  [ "$STATUS" -ne 0 ] || STATUS=1
fi
exit "$STATUS"
