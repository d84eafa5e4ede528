#!/usr/bin/env bash
# Direct gRPC load on the ext_authz Check API: ./benches/load/grpc.sh
#
# portcullis (release) and null-authz (benches/load/tools: a tonic ext_authz
# server that does no work and answers every Check with the very bytes
# portcullis answered, captured first) get the same Checks from grpc-load
# (benches/load/tools: closed-loop streams on HTTP/2, a latency histogram, the
# server's CPU per Check from /proc/PID/task/*/schedstat), at several
# concurrencies, in the same run, interleaved: per round and concurrency, each
# scenario in turn (the order rotating by round) runs null-authz and portcullis
# back to back (order alternating).
#
# Scenarios (one portcullis serving all of them but bearer-traced*; rules by path):
#   bearer        the same RS256 bearer token again (cache hit)        GET /bench
#   cold-rs256    a new RS256 token per Check (each sent once)         GET /bench
#   cold-eddsa    a new EdDSA token per Check (each sent once)         GET /bench
#   session       the same sealed session cookie (login done first
#                 through a real Envoy and the test IdP's /authorize)  GET /app/
#   warrant-exact the same warrant + PoP again (exact repeat)          GET /w/bench
#   warrant       the same warrant, a new argument and PoP per Check
#                 (each sent once; minted by Tenuo's Python SDK)       GET /w/bench-N
#   bearer-traced `bearer` against a second portcullis, the same config plus
#                 `tracing:` exporting to a real OpenTelemetry Collector
#                 (tests/otelcol: OTLP/gRPC receiver, file exporter), every
#                 Check with its own sampled W3C traceparent request header
#                 (a new trace id per Check: grpc-load --traceparent 01), so
#                 every Check makes and exports a span                  GET /bench
#   bearer-traced-unsampled  the same, traceparent flags 00: a span is
#                 started but not recorded, nothing exported             GET /bench
# After a traced run the traced portcullis is stopped (its shutdown exports
# what is queued), then the collector; the spans in its file are counted and
# compared with the sampled Checks sent (warm-up included).
# Tokens come from the test IdP (tests/idp/idp.mjs), warrants and PoPs from
# tests/tenuo/mint.py (PyPI tenuo). Every Check must be allowed, or the run fails.
#
# Everything listens on 127.0.0.1 only; every run is bounded (duration or count).
#
# Knobs (environment):
#   BENCH_DURATION=5      seconds per measured run (duration scenarios)
#   BENCH_WARMUP=1        seconds of warm-up before each duration run
#   BENCH_RUNS=3          rounds (median reported)
#   BENCH_CONCURRENCY="1 10 100"   streams in flight
#   BENCH_GRPC_CONNECTIONS=1       HTTP/2 connections the streams share (Envoy: one per worker)
#   BENCH_ONCE_COUNT=2000 Checks per run in the send-once scenarios
#   BENCH_SCENARIOS="bearer cold-rs256 cold-eddsa session warrant-exact warrant"
#                         (bearer-traced, bearer-traced-unsampled: on request)
#   OTELCOL_BIN           the collector for the traced scenarios (default: tests/otelcol/install.sh)
#   ENVOY_BIN             envoy for the login (default: envoy/install.sh)
#   TENUO_PYTHON          python with the Tenuo SDK (default: tests/tenuo/install.sh)
#   PORTCULLIS_BIN        a prebuilt portcullis (default: cargo build --release)
#   BENCH_KEEP=1          keep the work directory
#   BENCH_RESULTS         where to write the Markdown (default benches/load/RESULTS-grpc.md)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=benches/load/lib.sh
. "$HERE/lib.sh"

DURATION=${BENCH_DURATION:-5}
WARMUP=${BENCH_WARMUP:-1}
CONCURRENCY=${BENCH_CONCURRENCY:-1 10 100}
GRPC_CONNS=${BENCH_GRPC_CONNECTIONS:-1}
ONCE=${BENCH_ONCE_COUNT:-2000}
SCENARIOS=${BENCH_SCENARIOS:-bearer cold-rs256 cold-eddsa session warrant-exact warrant}
RESULTS=${BENCH_RESULTS:-$HERE/RESULTS-grpc.md}
COMMAND_LINE="$(knobs_set PORTCULLIS_BIN OTELCOL_BIN BENCH_DURATION BENCH_WARMUP BENCH_RUNS BENCH_CONCURRENCY BENCH_GRPC_CONNECTIONS \
  BENCH_ONCE_COUNT BENCH_SCENARIOS)$0${*:+ $*}"
for c in $CONCURRENCY $GRPC_CONNS $ONCE; do
  [[ $c =~ ^[1-9][0-9]*$ ]] || die "BENCH_CONCURRENCY, BENCH_GRPC_CONNECTIONS and BENCH_ONCE_COUNT take positive integers"
  [ "$c" -le 100000 ] || die "bounds: at most 100000"
done
[ "$DURATION" -le 25 ] || die "bounds: BENCH_DURATION <= 25 s (a PoP window)"
for s in $SCENARIOS; do
  case $s in
  bearer | cold-rs256 | cold-eddsa | session | warrant-exact | warrant) ;;
  bearer-traced | bearer-traced-unsampled) TRACED=1 ;;
  *) die "unknown scenario $s" ;;
  esac
done
TRACED=${TRACED:-0}
SERVICE_NAME=portcullis-bench

# --- tools, builds -----------------------------------------------------------------
step "tools"
for t in curl node python3 cargo lscpu; do command -v "$t" >/dev/null || die "$t not found"; done
ENVOY_BIN=${ENVOY_BIN:-$(./envoy/install.sh)}
ENVOY_VERSION_LINE=$("$ENVOY_BIN" --version | sed -n 's/.*version: //p' | head -n1)
TENUO_PYTHON=${TENUO_PYTHON:-$(./tests/tenuo/install.sh)}
if [ "$TRACED" = 1 ]; then
  OTELCOL_BIN=${OTELCOL_BIN:-$(./tests/otelcol/install.sh)}
  [ -x "$OTELCOL_BIN" ] || die "collector not executable: $OTELCOL_BIN"
  OTELCOL_VERSION=$("$OTELCOL_BIN" --version | head -n1)
  note "collector: $OTELCOL_BIN ($OTELCOL_VERSION)"
fi
[ -d tests/idp/node_modules/oauth2-mock-server ] || (cd tests/idp && npm ci --no-audit --no-fund --loglevel=error) >&2

build_portcullis
step "cargo build --release (benches/load/tools)"
(cd "$HERE/tools" && CARGO_TARGET_DIR=$TARGET/load-tools cargo build --release >&2) || die "load tools build failed"
LOAD=$TARGET/load-tools/release/grpc-load
NULL_AUTHZ=$TARGET/load-tools/release/null-authz

init_work portcullis-grpc-load
read -r -a PORTS < <(free_ports 9)
PC_GRPC=${PORTS[0]} PC_ADMIN=${PORTS[1]} NULL_GRPC=${PORTS[2]} UP_PORT=${PORTS[3]}
TR_GRPC=${PORTS[6]} TR_ADMIN=${PORTS[7]} OTLP_PORT=${PORTS[8]}
declare -A LISTEN ADMIN
LISTEN[login]=${PORTS[4]} ADMIN[login]=${PORTS[5]}
HOST=127.0.0.1:${LISTEN[login]}

# --- IdP, Tenuo minting --------------------------------------------------------------
step "test IdP and Tenuo minting service"
mkfifo "$WORK/idp.stdin"
exec 3<>"$WORK/idp.stdin" # the IdP exits when this closes
(cd tests/idp && exec node idp.mjs <"$WORK/idp.stdin" >"$WORK/idp.out" 2>"$WORK/idp.log" 3>&-) &
PIDS+=($!)
"$TENUO_PYTHON" tests/tenuo/mint.py --port 0 <"$WORK/idp.stdin" >"$WORK/mint.out" 2>"$WORK/mint.log" 3>&- &
PIDS+=($!)
for _ in $(seq 1 150); do
  grep -q '"issuer"' "$WORK/idp.out" 2>/dev/null && grep -q '"url"' "$WORK/mint.out" 2>/dev/null && break
  sleep 0.1
done
ISSUER=$(json 'd["issuer"]' <"$WORK/idp.out") || die "IdP did not start: $(tail -n 5 "$WORK/idp.log")"
CONTROL=$(json 'd["control"]' <"$WORK/idp.out")
MINT=$(json 'd["url"]' <"$WORK/mint.out") || die "mint.py did not start: $(tail -n 5 "$WORK/mint.log")"
post() { # url json -> answer
  curl -sf --max-time 120 -X POST "$1" -H 'content-type: application/json' -d "$2" || die "POST $1 failed"
}
TOKEN=$(post "$CONTROL/mint" '{"alg":"RS256","claims":{"aud":"portcullis","sub":"bench-user"},"expiresIn":7200}' | json 'd["token"]')
TENUO_ISSUER=$(post "$MINT/key" '{}' | json 'd["id"]+" "+d["public_hex"]')
TENUO_ISSUER_ID=${TENUO_ISSUER%% *} TENUO_ISSUER_HEX=${TENUO_ISSUER#* }
AGENT_ID=$(post "$MINT/key" '{}' | json 'd["id"]')
WARRANT=$(post "$MINT/mint" "{\"issuer\": \"$TENUO_ISSUER_ID\", \"holder\": \"$AGENT_ID\", \"ttl\": 3600,
  \"tools\": {\"bench_read\": {\"resource\": {\"pattern\": \"bench*\"}}}}" | json 'd["warrant"]')
note "issuer $ISSUER; RS256 token ${#TOKEN} bytes; warrant ${#WARRANT} bytes"

# --- portcullis ------------------------------------------------------------------------
step "portcullis (release)"
head -c 32 /dev/urandom >"$WORK/session.key"
echo bench-secret >"$WORK/client.secret"
cat >"$WORK/gateway.yaml" <<EOF
version: "1"
settings: { warrant_header: "X-Tenuo-Warrant", pop_header: "X-Tenuo-PoP", clock_tolerance_secs: 30 }
tools:
  bench_read:
    description: "GET /w/<resource>"
    constraints:
      resource: { from: path, path: resource, required: true }
routes:
  - { pattern: "/w/{resource}", method: [GET], tool: bench_read }
EOF
cat >"$WORK/portcullis.yaml" <<EOF
listen: 127.0.0.1:$PC_GRPC
admin_listen: 127.0.0.1:$PC_ADMIN
oidc:
  providers:
    - issuer: $ISSUER
      audiences: [portcullis]
      login:
        name: bench
        client_id: portcullis-web
        client_secret: {file: $WORK/client.secret}
sessions:
  cookie_name: bench_session
  keys: [{file: $WORK/session.key}]
  public_url: http://$HOST
tenuo:
  trusted_issuers: ["$TENUO_ISSUER_HEX"]
  gateway_config: $WORK/gateway.yaml
rules:
  - path_prefix: /app
    login: bench
  - path_prefix: /w
    require: tenuo
  - path_prefix: /bench
EOF
start_portcullis "$PORTCULLIS"

wait_port() { # port seconds
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    (exec 9<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}
TR_PID=- COL_PID=- SMOKE_TRACED=0
if [ "$TRACED" = 1 ]; then
  step "OpenTelemetry Collector, and a second portcullis with tracing on"
  # JSON is YAML. The file exporter writes protobuf (4-byte length, then an
  # ExportTraceServiceRequest), the cheaper of its formats; no own metrics port.
  cat >"$WORK/otelcol.yaml" <<EOF
{"receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "127.0.0.1:$OTLP_PORT"}}}},
 "exporters": {"file": {"path": "$WORK/spans.pb", "format": "proto", "flush_interval": "1s"}},
 "service": {"telemetry": {"metrics": {"level": "none"}, "logs": {"level": "warn"}},
             "pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["file"]}}}}
EOF
  "$OTELCOL_BIN" --config "$WORK/otelcol.yaml" >"$WORK/otelcol.log" 2>&1 3>&- &
  COL_PID=$!
  PIDS+=("$COL_PID")
  wait_port "$OTLP_PORT" 30 || die "collector did not start: $(tail -n 5 "$WORK/otelcol.log")"
  {
    sed -e "s/^listen: .*/listen: 127.0.0.1:$TR_GRPC/" -e "s/^admin_listen: .*/admin_listen: 127.0.0.1:$TR_ADMIN/" \
      "$WORK/portcullis.yaml"
    cat <<EOF
tracing:
  otlp_endpoint: http://127.0.0.1:$OTLP_PORT
  service_name: $SERVICE_NAME
  sample_ratio: 1.0
  export_timeout_seconds: 5
EOF
  } >"$WORK/portcullis-traced.yaml"
  PLAIN_PID=$PC_PID
  start_portcullis "$PORTCULLIS" "$WORK/portcullis-traced.yaml" "$TR_ADMIN" "$WORK/portcullis-traced.log"
  TR_PID=$PC_PID PC_PID=$PLAIN_PID
  note "collector on 127.0.0.1:$OTLP_PORT (pid $COL_PID); traced portcullis on 127.0.0.1:$TR_GRPC (pid $TR_PID)"
fi

# --- a session cookie, by a real login through Envoy --------------------------------------
step "login through Envoy (envoy/envoy.yaml) for a session cookie"
render_repo_envoy login "$PC_GRPC"
start_envoy login "$WORK/front-login.yaml"
wait_http "http://127.0.0.1:${ADMIN[login]}/ready" 200 30 || die "Envoy not ready: $(tail -n 5 "$WORK/envoy-login.log")"
SESSION_COOKIE=$(login_cookie "$HOST" bench_session)
kill "${ENVOY_PID[login]}"
note "session cookie ${#SESSION_COOKIE} bytes"

# --- request files -------------------------------------------------------------------
reqs() { # name python-expression-of-a-list (vars: host, token, cookie, warrant; items: the JSON file $R_ITEMS)
  python3 - "$WORK/req-$1.json" "$2" "$HOST" <<'PY'
import json, os, sys
out, expr, host = sys.argv[1:]
env = {"host": host, "token": os.environ.get("R_TOKEN", ""), "cookie": os.environ.get("R_COOKIE", ""),
       "warrant": os.environ.get("R_WARRANT", ""), "os": os,
       "items": json.load(open(os.environ["R_ITEMS"])) if os.environ.get("R_ITEMS") else []}
json.dump(eval(expr, env), open(out, "w"))
PY
}
export R_TOKEN=$TOKEN R_COOKIE=$SESSION_COOKIE R_WARRANT=$WARRANT
reqs bearer '[{"method": "GET", "path": "/bench", "host": host, "headers": {"authorization": "Bearer " + token}}]'
reqs session '[{"method": "GET", "path": "/app/", "host": host,
  "headers": {"cookie": cookie, "accept": "text/html", "sec-fetch-site": "same-origin", "sec-fetch-mode": "navigate"}}]'
EXACT_POP=$(post "$MINT/pop" "{\"warrant\": \"$WARRANT\", \"key\": \"$AGENT_ID\", \"tool\": \"bench_read\",
  \"args\": {\"resource\": \"bench\"}}" | json 'd["pop"]')

# Fresh material for one send-once run: tokens (cold-*) or PoPs (warrant).
fresh() { # scenario -> $WORK/req-<scenario>.json with BENCH_ONCE_COUNT requests
  case $1 in
  cold-rs256 | cold-eddsa)
    local alg=RS256
    [ "$1" = cold-eddsa ] && alg=EdDSA
    post "$CONTROL/mint-batch" "{\"alg\":\"$alg\",\"count\":$ONCE,\"expiresIn\":3600,
      \"claims\":{\"aud\":\"portcullis\",\"sub\":\"bench-user\"}}" |
      python3 -c 'import json,sys; json.dump(json.load(sys.stdin)["tokens"], sys.stdout)' >"$WORK/items.json"
    R_ITEMS=$WORK/items.json reqs "$1" '[{"method": "GET", "path": "/bench", "host": host,
      "headers": {"authorization": "Bearer " + t}} for t in items]'
    ;;
  warrant)
    local args
    args=$(python3 -c "import json; print(json.dumps([{'resource': f'bench-{i}'} for i in range($ONCE)]))")
    echo "{\"warrant\": \"$WARRANT\", \"key\": \"$AGENT_ID\", \"tool\": \"bench_read\", \"args_list\": $args}" \
      >"$WORK/pops.body"
    post "$MINT/pops" "@$WORK/pops.body" | python3 -c 'import json,sys; json.dump(json.load(sys.stdin)["pops"], sys.stdout)' >"$WORK/items.json"
    R_ITEMS=$WORK/items.json reqs warrant '[{"method": "GET", "path": f"/w/bench-{i}", "host": host,
      "headers": {"x-tenuo-warrant": warrant, "x-tenuo-pop": p}} for i, p in enumerate(items)]'
    ;;
  warrant-exact)
    R_POP=$EXACT_POP reqs warrant-exact '[{"method": "GET", "path": "/w/bench", "host": host,
      "headers": {"x-tenuo-warrant": warrant, "x-tenuo-pop": os.environ["R_POP"]}}]' ;;
  esac
}
# A PoP holds for its 30 s window (+- the tolerance): an exact-repeat run is
# measured with a PoP of the current window, as a client signing per request.
fresh_exact() {
  python3 -c 'import time; left = 30 - time.time() % 30; time.sleep(left + 0.05 if left < '"$((DURATION + WARMUP + 2))"' else 0)'
  EXACT_POP=$(post "$MINT/pop" "{\"warrant\": \"$WARRANT\", \"key\": \"$AGENT_ID\", \"tool\": \"bench_read\",
    \"args\": {\"resource\": \"bench\"}}" | json 'd["pop"]')
  fresh warrant-exact
}
fresh_exact

# --- the null server's answers: portcullis' own bytes ---------------------------------------
step "capture portcullis' answers (null-authz serves the same bytes)"
for s in bearer session warrant-exact; do
  "$LOAD" --addr "127.0.0.1:$PC_GRPC" --requests "$WORK/req-$s.json" --concurrency 1 --duration 0.2 \
    --expect allow --capture "$WORK/resp-$s.pb" >/dev/null || die "$s: portcullis did not allow the request"
done
cp "$WORK/resp-bearer.pb" "$WORK/resp-cold-rs256.pb"
cp "$WORK/resp-bearer.pb" "$WORK/resp-cold-eddsa.pb"
cp "$WORK/resp-warrant-exact.pb" "$WORK/resp-warrant.pb"
cp "$WORK/resp-bearer.pb" "$WORK/resp-bearer-traced.pb"
cp "$WORK/resp-bearer.pb" "$WORK/resp-bearer-traced-unsampled.pb"

count_spans() { # -> JSON on stdout: what the collector's file holds
  python3 "$HERE/otlp_spans.py" "$WORK/spans.pb" "$SERVICE_NAME"
}
if [ "$TRACED" = 1 ]; then
  # One sampled Check first: the span must reach the collector's file (the
  # batch processor exports every 5 s), or the traced runs would measure a
  # tracer that exports nothing.
  step "smoke: one traced Check reaches the collector"
  "$LOAD" --addr "127.0.0.1:$TR_GRPC" --requests "$WORK/req-bearer.json" --concurrency 1 --once \
    --traceparent 01 --expect allow >/dev/null || die "the traced portcullis did not allow the request"
  SMOKE_TRACED=1
  for _ in $(seq 1 150); do
    [ "$(count_spans | json 'd["spans"]')" -ge 1 ] && break
    sleep 0.1
  done
  [ "$(count_spans | json 'd["spans"]')" -ge 1 ] || die "no span reached the collector in 15 s: $(tail -n 5 "$WORK/otelcol.log")"
  note "ok: $(count_spans)"
fi

run_null() { # scenario -> starts null-authz serving that scenario's answer; NULL_PID
  "$NULL_AUTHZ" "127.0.0.1:$NULL_GRPC" 600 "$WORK/resp-$1.pb" >>"$WORK/null-authz.log" 2>&1 3>&- &
  NULL_PID=$!
  for _ in $(seq 1 50); do
    (exec 9<>"/dev/tcp/127.0.0.1/$NULL_GRPC") 2>/dev/null && return 0
    sleep 0.1
  done
  die "null-authz did not start"
}

load() { # server scenario concurrency round
  local addr=127.0.0.1:$PC_GRPC pid=$PC_PID mode req=$2 extra=()
  case $2 in
  bearer-traced) req=bearer extra=(--traceparent 01) ;;
  bearer-traced-unsampled) req=bearer extra=(--traceparent 00) ;;
  esac
  # The traced scenarios go to the traced portcullis; its collector's CPU is counted too.
  if [ "$1" = null ]; then
    addr=127.0.0.1:$NULL_GRPC pid=$NULL_PID
  elif [ "$req" != "$2" ]; then
    addr=127.0.0.1:$TR_GRPC pid=$TR_PID extra+=(--peer-pid "$COL_PID")
  fi
  case $2 in cold-* | warrant) mode=(--once) ;; *) mode=(--duration "$DURATION" --warmup "$WARMUP") ;; esac
  "$LOAD" --addr "$addr" --requests "$WORK/req-$req.json" --concurrency "$3" \
    --connections "$((GRPC_CONNS < $3 ? GRPC_CONNS : $3))" "${mode[@]}" --pid "$pid" "${extra[@]}" --expect allow \
    >"$WORK/res-$1-$2-$3-$4.json" || die "$1 $2 c=$3: $(cat "$WORK/res-$1-$2-$3-$4.json")"
  note "$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("{0:>10} {1:<23} c={2:<4} ".format(*sys.argv[2:5]) + "{rps:>9,.0f}/s  p50 {p50_us:>7.0f} us  p99 {p99_us:>7.0f} us  p99.9 {p999_us:>7.0f} us  cpu {server_cpu_us_per_check:>6.1f} us/check".format(**d) + ("  collector {:>5.1f} us/check".format(d["peer_cpu_us_per_check"]) if d.get("peer_cpu_us_per_check") is not None else "") + "  others {:.2f} CPUs".format(d["others_busy_cpus"]))' \
    "$WORK/res-$1-$2-$3-$4.json" "$1" "$2" "$3")"
}

# --- load -------------------------------------------------------------------------------
# Per concurrency, the scenarios in turn (their order rotated by round), so
# scenarios compared with each other (tracing off and on) run minutes apart at most.
read -r -a SCEN <<<"$SCENARIOS"
for ((r = 1; r <= RUNS; r++)); do
  step "round $r/$RUNS"
  for c in $CONCURRENCY; do
    for ((i = 0; i < ${#SCEN[@]}; i++)); do
      s=${SCEN[$(((i + r - 1) % ${#SCEN[@]}))]}
      run_null "$s"
      case $s in cold-* | warrant) fresh "$s" ;; warrant-exact) fresh_exact ;; esac
      if (((r + c) % 2)); then order=(null portcullis); else order=(portcullis null); fi
      for server in "${order[@]}"; do load "$server" "$s" "$c" "$r"; done
      kill "$NULL_PID"
      wait "$NULL_PID" 2>/dev/null || true
    done
  done
done
kill -0 "$PC_PID" || die "portcullis died during the run"
if [ "$TRACED" = 1 ]; then
  kill -0 "$TR_PID" || die "the traced portcullis died during the run"
  kill -0 "$COL_PID" || die "the collector died during the run: $(tail -n 5 "$WORK/otelcol.log")"
  step "spans: stop the traced portcullis (shutdown exports what is queued), then the collector (flushes its file)"
  kill -TERM "$TR_PID"
  for _ in $(seq 1 300); do kill -0 "$TR_PID" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$TR_PID" 2>/dev/null && die "the traced portcullis did not stop in 30 s"
  wait "$TR_PID" 2>/dev/null || true
  kill -TERM "$COL_PID"
  for _ in $(seq 1 300); do kill -0 "$COL_PID" 2>/dev/null || break; sleep 0.1; done
  wait "$COL_PID" 2>/dev/null || true
  count_spans >"$WORK/spans.json" || die "cannot read $WORK/spans.pb"
  note "collector file: $(cat "$WORK/spans.json")"
  if grep -q -E '"level":"(WARN|ERROR)"|\b(WARN|ERROR)\b' "$WORK/portcullis-traced.log"; then
    grep -E '"level":"(WARN|ERROR)"|\b(WARN|ERROR)\b' "$WORK/portcullis-traced.log" | head -n 5 >&2
    note "(the traced portcullis logged the above)"
  fi
fi

# --- report -----------------------------------------------------------------------------
cat >"$WORK/meta.env" <<EOF
command=$COMMAND_LINE
date=$(date -u '+%Y-%m-%d %H:%M:%S UTC')
cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -n1), $(nproc) CPUs
kernel=$(uname -r)
portcullis=$(tree_rev)
runs=$RUNS
duration=$DURATION
warmup=$WARMUP
once=$ONCE
connections=$GRPC_CONNS
scenarios=$SCENARIOS
concurrency=$CONCURRENCY
traced=$TRACED
EOF
if [ "$TRACED" = 1 ]; then
  cat >>"$WORK/meta.env" <<EOF
otelcol=$OTELCOL_VERSION
service_name=$SERVICE_NAME
smoke_traced=$SMOKE_TRACED
EOF
fi
python3 "$HERE/summarize_grpc.py" "$WORK" >"$RESULTS"
cat "$RESULTS"
if [ -z "${BENCH_RESULTS:-}" ]; then python3 "$HERE/readme.py" "$RESULTS" grpc; fi
ok=1
