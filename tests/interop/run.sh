#!/usr/bin/env bash
# Interoperability tests: the examples against WebSocket implementations this team did not
# write, all on 127.0.0.1. See README.md in this directory.
#
# usage: tests/interop/run.sh [python] [node] [browser] [autobahn]   (default: all of them)
#
# Installs its peers when missing (Python `websockets` into target/interop/venv, Node `ws` and
# `playwright-core` into tests/interop/node_modules, Debian's chromium), builds the examples
# once, starts the servers on free ports, runs every peer's driver and prints one line per
# peer. Exits non-zero if any check failed or any peer could not be installed or run.
set -u -o pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
WORK="$ROOT/target/interop"
LOGS="$WORK/logs"
VENV="$WORK/venv"
BIN="$ROOT/target/release/examples"
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
mkdir -p "$LOGS"

# One run at a time: runs share the logs, the venv, node_modules and Chromium's profile.
exec 9>"$WORK/run.lock"
if ! flock -n 9; then
  printf '%s\n' "another tests/interop/run.sh is running; waiting for it (at most 10 minutes)"
  if ! flock -w 600 9; then
    printf '%s\n' "!!! could not get $WORK/run.lock: another run is still going" "interop: 0 passed, 1 failed"
    exit 1
  fi
fi
rm -f "$LOGS"/*.log "$LOGS"/*.stdout "$LOGS"/*.png

WANT=("$@")
[ ${#WANT[@]} -eq 0 ] && WANT=(python node browser autobahn)
wants() { local w; for w in "${WANT[@]}"; do [ "$w" = "$1" ] && return 0; done; return 1; }

PEERS_PASSED=0
PEERS_FAILED=0
CHECKS_TOTAL=0
SUMMARY=()
PIDS=()

say() { printf '%s\n' "$*"; }
loud() {
  say "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
  say "!!! $*"
  say "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
}
record_fail() { PEERS_FAILED=$((PEERS_FAILED + 1)); SUMMARY+=("FAIL $1"); say "FAIL $1"; }
record_pass() { PEERS_PASSED=$((PEERS_PASSED + 1)); SUMMARY+=("PASS $1"); say "PASS $1"; }

cleanup() {
  local p
  for p in "${PIDS[@]:-}"; do
    [ -n "$p" ] && kill "$p" 2>/dev/null
  done
  wait 2>/dev/null
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- Installing the peers ------------------------------------------------------------------

PY_OK=0 NODE_OK=0 CHROME_OK=0

install_python() {
  if "$VENV/bin/python" -c 'import websockets' 2>/dev/null; then PY_OK=1; return; fi
  say "installing Python websockets (latest from PyPI) into $VENV"
  if python3 -m venv "$VENV" >"$LOGS/pip.log" 2>&1 \
    && "$VENV/bin/pip" install --upgrade websockets >>"$LOGS/pip.log" 2>&1 \
    && "$VENV/bin/python" -c 'import websockets' 2>>"$LOGS/pip.log"; then
    PY_OK=1
  else
    tail -5 "$LOGS/pip.log"
    loud "Python websockets could NOT be installed: its peers fail (see $LOGS/pip.log)"
  fi
}

install_node() {
  if [ -f "$HERE/node_modules/ws/package.json" ] && [ -f "$HERE/node_modules/playwright-core/package.json" ]; then
    NODE_OK=1; return
  fi
  if ! command -v npm >/dev/null; then
    loud "npm is not installed: the Node ws and browser peers fail"
    return
  fi
  say "installing Node ws and playwright-core (latest from npm) into $HERE/node_modules"
  # Both in one command: with --no-save, a later install would prune the other as extraneous.
  if (cd "$HERE" && npm install --prefix "$HERE" --no-save --no-package-lock --no-audit --no-fund \
      ws@latest playwright-core@latest) >"$LOGS/npm.log" 2>&1 \
    && [ -f "$HERE/node_modules/ws/package.json" ]; then
    NODE_OK=1
  else
    tail -5 "$LOGS/npm.log"
    loud "Node ws / playwright-core could NOT be installed: their peers fail (see $LOGS/npm.log)"
  fi
}

install_chromium() {
  if [ -x "$CHROMIUM" ]; then CHROME_OK=1; return; fi
  say "installing Debian's chromium (apt-get)"
  local sudo=""
  [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null && sudo="sudo -n"
  if { $sudo apt-get update && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y chromium; } >"$LOGS/apt.log" 2>&1 \
    && [ -x "$CHROMIUM" ]; then
    CHROME_OK=1
  else
    tail -5 "$LOGS/apt.log"
    loud "chromium could NOT be installed: the browser peer fails (see $LOGS/apt.log)"
  fi
}

if wants python || wants autobahn; then install_python; fi
if wants node || wants browser; then install_node; fi
if wants browser; then install_chromium; fi

# --- Building the examples -----------------------------------------------------------------

say "building examples: cargo build --release --all-features --examples"
if ! (cd "$ROOT" && cargo build --release --all-features --examples) >"$LOGS/build.log" 2>&1; then
  tail -30 "$LOGS/build.log"
  loud "cargo build --release --all-features --examples FAILED (see $LOGS/build.log)"
  say "interop: 0 passed, 1 failed"
  exit 1
fi
MISSING=()
for ex in echo_server relay client autobahn_client; do
  [ -x "$BIN/$ex" ] || MISSING+=("$ex")
done
if [ ${#MISSING[@]} -gt 0 ]; then
  loud "examples missing after the build: ${MISSING[*]} (the peers that need them fail)"
fi
have_bin() { [ -x "$BIN/$1" ]; }

PY="$VENV/bin/python"
VERSIONS=()
[ $PY_OK = 1 ] && VERSIONS+=("websockets $("$PY" -c 'import websockets; print(websockets.__version__)')")
[ $NODE_OK = 1 ] && VERSIONS+=("ws $(node -p "require('$HERE/node_modules/ws/package.json').version")" \
  "playwright-core $(node -p "require('$HERE/node_modules/playwright-core/package.json').version")")
[ $CHROME_OK = 1 ] && VERSIONS+=("$("$CHROMIUM" --version 2>/dev/null | head -1)")
say "peers: ${VERSIONS[*]:-none}"

# --- Servers and drivers -------------------------------------------------------------------

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# start_server NAME LOG ARGS...: starts an example, waits for `listening on ADDR` on stderr,
# sets SERVER_PID and SERVER_ADDR. Returns non-zero if it did not come up within 15 s.
start_server() {
  local name=$1 log=$2
  shift 2
  "$BIN/$name" "$@" 2>"$log" >"$log.stdout" &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  local i
  for i in $(seq 1 150); do
    # Complete lines only (`read` fails on a last line with no newline yet): a line read
    # while the server is still writing it would give half an address.
    SERVER_ADDR=""
    local line
    while IFS= read -r line; do
      case $line in
        *"listening on "*) SERVER_ADDR=${line##*listening on }; SERVER_ADDR=${SERVER_ADDR%% *}; break ;;
      esac
    done <"$log"
    [ -n "$SERVER_ADDR" ] && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
  done
  say "--- $name did not print 'listening on <addr>' (args: $*); its stderr:"
  tail -10 "$log"
  return 1
}

stop_server() {
  kill "$1" 2>/dev/null
  wait "$1" 2>/dev/null
}

# server_health LABEL PID LOG: the server must still be running and must not have panicked.
server_health() {
  local pid=$2 log=$3
  if ! kill -0 "$pid" 2>/dev/null; then
    say "    server exited during the run; last lines of $log:"; tail -5 "$log" | sed 's/^/    /'
    return 1
  fi
  if grep -q "panicked" "$log"; then
    say "    server panicked:"; grep -m3 -A2 "panicked" "$log" | sed 's/^/    /'
    return 1
  fi
  return 0
}

# run_driver LABEL LOG CMD...: runs a driver (240 s at most) and reads its
# `checks: N passed, M failed` line into DRIVER_PASSED / DRIVER_FAILED / DRIVER_RC.
run_driver() {
  local label=$1 log=$2
  shift 2
  say "--- $label"
  timeout 240 "$@" >"$log" 2>&1
  local rc=$?
  local line passed failed
  line=$(grep -E '^checks: [0-9]+ passed, [0-9]+ failed' "$log" | tail -1)
  passed=$(sed -n 's/^checks: \([0-9]*\) passed.*/\1/p' <<<"$line")
  failed=$(sed -n 's/.* \([0-9]*\) failed.*/\1/p' <<<"$line")
  DRIVER_PASSED=${passed:-0}
  DRIVER_FAILED=${failed:-0}
  DRIVER_RC=$rc
  CHECKS_TOTAL=$((CHECKS_TOTAL + DRIVER_PASSED + DRIVER_FAILED))
  if [ -z "$line" ]; then
    say "    driver ended (exit $rc) without its checks line; last output:"
    tail -15 "$log" | sed 's/^/    /'
    DRIVER_FAILED=$((DRIVER_FAILED + 1))
  elif [ "$DRIVER_FAILED" -gt 0 ] || [ $rc -ne 0 ]; then
    grep -E '^FAIL' "$log" | head -20 | sed 's/^/    /'
  fi
}

# judge LABEL [SERVER_OK]: one PASS/FAIL line for the driver just run; SERVER_OK=0 (the
# server crashed or panicked) fails it whatever the checks said.
judge() {
  local label=$1 extra_ok=${2:-1}
  if [ "$DRIVER_FAILED" -eq 0 ] && [ "$DRIVER_RC" -eq 0 ] && [ "$extra_ok" -eq 1 ] && [ "$DRIVER_PASSED" -gt 0 ]; then
    record_pass "$label: $DRIVER_PASSED checks"
  else
    record_fail "$label: $DRIVER_FAILED of $((DRIVER_PASSED + DRIVER_FAILED)) checks failed (exit $DRIVER_RC) (log: ${LOG#"$ROOT"/})"
  fi
}

ECHO_FLAGS=(--ping-interval-ms 300 --idle-timeout-ms 2000 --close-timeout-ms 3000
  --write-timeout-ms 10000 --max-message-size 16777216)

# client_vs_echo PEER LABEL_PREFIX MODE CMD...: the peer's client against echo_server. MODE
# `plain`: ws://, every runtime. MODE `tls`: wss:// with the test certificate, the tokio
# runtimes only (the blocking adapter has no TLS); CMD gets --ca to trust it.
client_vs_echo() {
  local peer=$1 prefix=$2 mode=$3
  shift 3
  local runtime runtimes=(tokio tokio-direct std) scheme=ws suffix="" tag=""
  local server_tls=() driver_tls=()
  if [ "$mode" = tls ]; then
    local fixtures="$ROOT/tests/fixtures/tls"
    runtimes=(tokio tokio-direct) scheme=wss suffix=" over TLS" tag="-tls"
    server_tls=(--tls-cert "$fixtures/cert.pem" --tls-key "$fixtures/key.pem")
    driver_tls=(--ca "$fixtures/cert.pem")
  fi
  for runtime in "${runtimes[@]}"; do
    local label="$prefix client vs echo_server($runtime)$suffix"
    LOG="$LOGS/$peer-client-$runtime$tag.log"
    local slog="$LOGS/echo_server-$peer-$runtime$tag.log"
    if ! have_bin echo_server; then record_fail "$label: examples/echo_server.rs missing"; continue; fi
    if ! start_server echo_server "$slog" --addr "127.0.0.1:$(free_port)" --runtime "$runtime" \
        "${server_tls[@]}" "${ECHO_FLAGS[@]}"; then
      record_fail "$label: echo_server did not start (log: ${slog#"$ROOT"/})"; continue
    fi
    local pid=$SERVER_PID
    run_driver "$label" "$LOG" "$@" --url "$scheme://$SERVER_ADDR" "${driver_tls[@]}" --server-log "$slog"
    local ok=1
    server_health "$label" "$pid" "$slog" || ok=0
    stop_server "$pid"
    judge "$label" $ok
  done
}

if wants python; then
  if [ $PY_OK = 1 ]; then
    client_vs_echo python python-websockets plain "$PY" "$HERE/py_client.py"
    client_vs_echo python python-websockets tls "$PY" "$HERE/py_client.py"
    LOG="$LOGS/python-server.log"
    if have_bin autobahn_client; then
      label="python-websockets server vs autobahn_client --echo (blocking client adapter)"
      run_driver "$label" "$LOG" "$PY" "$HERE/py_server.py" --client-bin "$BIN/autobahn_client"
      judge "$label"
    else
      record_fail "python-websockets server vs autobahn_client: examples/autobahn_client.rs missing"
    fi
    LOG="$LOGS/python-server-line-client.log"
    if have_bin client; then
      label="python-websockets server vs examples/client (stdin lines, tokio client adapter)"
      run_driver "$label" "$LOG" "$PY" "$HERE/py_line_client.py" --client-bin "$BIN/client"
      judge "$label"
    else
      record_fail "python-websockets server vs examples/client: examples/client.rs missing"
    fi
  else
    record_fail "python-websockets: not installed (see above)"
  fi
fi

if wants node; then
  if [ $NODE_OK = 1 ]; then
    client_vs_echo node node-ws plain node "$HERE/node_client.js"
    LOG="$LOGS/node-server.log"
    if have_bin autobahn_client; then
      label="node-ws server vs autobahn_client --echo (blocking client adapter)"
      run_driver "$label" "$LOG" node "$HERE/node_server.js" --client-bin "$BIN/autobahn_client"
      judge "$label"
    else
      record_fail "node-ws server vs autobahn_client: examples/autobahn_client.rs missing"
    fi
  else
    record_fail "node-ws: not installed (see above)"
  fi
fi

if wants browser; then
  label="chromium (headless) vs relay page"
  LOG="$LOGS/browser.log"
  if [ $NODE_OK = 0 ] || [ $CHROME_OK = 0 ]; then
    record_fail "$label: chromium or playwright-core not installed (see above)"
  elif ! have_bin relay; then
    record_fail "$label: examples/relay.rs missing"
  else
    slog="$LOGS/relay-server.log"
    if start_server relay "$slog" --addr "127.0.0.1:$(free_port)"; then
      pid=$SERVER_PID
      run_driver "$label" "$LOG" node "$HERE/browser.js" --url "http://$SERVER_ADDR/" \
        --chromium "$CHROMIUM" --profile-dir "$WORK/chromium-profile" --server-log "$slog" --shots "$LOGS"
      ok=1
      server_health "$label" "$pid" "$slog" || ok=0
      stop_server "$pid"
      judge "$label" $ok
    else
      record_fail "$label: relay did not start (log: ${slog#"$ROOT"/})"
    fi
  fi
fi

if wants autobahn; then
  label="autobahn_client driver flow vs a mock fuzzingserver (python-websockets)"
  LOG="$LOGS/autobahn-mock.log"
  if [ $PY_OK = 0 ]; then
    record_fail "$label: python websockets not installed"
  elif ! have_bin autobahn_client; then
    record_fail "$label: examples/autobahn_client.rs missing"
  else
    run_driver "$label" "$LOG" "$PY" "$HERE/py_autobahn_mock.py" --client-bin "$BIN/autobahn_client"
    judge "$label"
  fi
fi

say ""
say "=== interop summary (${CHECKS_TOTAL} checks; logs in ${LOGS#"$ROOT"/}) ==="
for s in "${SUMMARY[@]}"; do say "$s"; done
say "interop: $PEERS_PASSED passed, $PEERS_FAILED failed"
[ "$PEERS_FAILED" -eq 0 ] && [ "$PEERS_PASSED" -gt 0 ]
