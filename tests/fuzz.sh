#!/usr/bin/env bash
# Coverage-guided fuzzing of every parser (cargo-fuzz / libFuzzer):
#
#   ./tests/fuzz.sh [SECONDS]        # every target, SECONDS each (default 60)
#   FUZZ_TARGETS="path cookies" ./tests/fuzz.sh 300
#   FUZZ_PROFILE=dev ./tests/fuzz.sh 10  # unoptimized: quicker to build
#
# Installs cargo-fuzz if missing, checks the fuzz crate (fmt, the unit tests
# that prove each invariant fires on known-bad behaviour), builds every
# target once, then runs each from its seed corpus (fuzz/corpus/<target>,
# never modified: new inputs go to a temporary directory) with its
# dictionary. Prints per target the executions and whether a crash (panic,
# broken invariant, timeout, out-of-memory) was found; exits non-zero if
# any was. Crashing inputs are kept in fuzz/artifacts/<target>/; replay one
# with `cd fuzz && cargo fuzz run <target> <file>` (RUSTC_BOOTSTRAP=1 on
# stable).
#
# Uses stable with RUSTC_BOOTSTRAP=1 (libFuzzer instrumentation needs `-Z`
# flags), or an installed nightly with FUZZ_TOOLCHAIN=nightly. No
# sanitizer: portcullis forbids `unsafe`, the fuzzers look for panics and
# logic errors, and an uninstrumented-memory build is several times faster
# to build and to run. FUZZ_SANITIZER=address turns ASan on.
set -euo pipefail

CARGO_FUZZ_VERSION=0.13.2
ALL_TARGETS="path header_edits cookies credential jwt_header warrant_header config"

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
seconds=${1:-60}
targets=${FUZZ_TARGETS:-$ALL_TARGETS}
sanitizer=${FUZZ_SANITIZER:-none}

step() { printf '\n==> %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
[[ "$seconds" =~ ^[0-9]+$ ]] && [ "$seconds" -gt 0 ] || die "SECONDS must be a positive integer, got '$seconds'"

start=$(date +%s)

step "cargo-fuzz ${CARGO_FUZZ_VERSION}"
if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi
cargo fuzz --version

# The stable toolchain every machine has, with RUSTC_BOOTSTRAP=1 for the
# `-Z` flags; FUZZ_TOOLCHAIN=nightly uses an installed nightly instead. The
# test command and CI take the default, so they build what a fresh machine can.
toolchain=()
if [ "${FUZZ_TOOLCHAIN:-stable}" = nightly ]; then
  toolchain=(+nightly)
  echo "toolchain: nightly"
else
  export RUSTC_BOOTSTRAP=1
  echo "toolchain: $(rustc --version) with RUSTC_BOOTSTRAP=1"
fi

step "fuzz crate: fmt, clippy and invariant unit tests"
# The unit tests share the main target directory: portcullis and its
# dependencies are already built there by the test suite.
cargo fmt --manifest-path fuzz/Cargo.toml --all -- --check
CARGO_TARGET_DIR="$root/target" cargo clippy --manifest-path fuzz/Cargo.toml --all-targets --quiet -- -D warnings
CARGO_TARGET_DIR="$root/target" cargo test --manifest-path fuzz/Cargo.toml --lib --quiet

step "build every target (sanitizer: $sanitizer, profile: ${FUZZ_PROFILE:-release})"
build_start=$(date +%s)
flags=(--sanitizer "$sanitizer" --debug-assertions)
# FUZZ_PROFILE=dev: unoptimized, built in about half the time; the test
# command's 10-second smoke run replays the corpus with it. Long runs keep the
# default (release: many more executions per second).
[ "${FUZZ_PROFILE:-release}" = dev ] && flags+=(--dev)
(cd fuzz && cargo "${toolchain[@]}" fuzz build "${flags[@]}")
build_seconds=$(($(date +%s) - build_start))
echo "built in ${build_seconds}s"

# Longer inputs where size is the point: thousands of header names, tokens
# over max_token_bytes, whole config files.
max_len() {
  case "$1" in
    header_edits) echo 65536 ;;
    jwt_header) echo 8192 ;;
    config) echo 16384 ;;
    *) echo 4096 ;;
  esac
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=0
summary=()
for t in $targets; do
  [ -f "fuzz/fuzz_targets/$t.rs" ] || die "no fuzz target '$t' (have: $ALL_TARGETS)"
  step "fuzz $t for ${seconds}s"
  mkdir -p "$work/$t" "fuzz/artifacts/$t"
  args=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len="$(max_len "$t")" -print_final_stats=1)
  [ -f "fuzz/dict/$t.dict" ] && args+=(-dict="dict/$t.dict")
  log="$work/$t.log"
  set +e
  (cd fuzz && cargo "${toolchain[@]}" fuzz run "${flags[@]}" "$t" "$work/$t" "corpus/$t" -- "${args[@]}") >"$log" 2>&1
  rc=$?
  set -e
  execs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' | tail -1)
  [ -n "$execs" ] || execs=$(grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#')
  corpus=$(find "$work/$t" "fuzz/corpus/$t" -type f | wc -l)
  if [ "$rc" -eq 0 ]; then
    result=ok
  else
    failed=1
    artifact=$(grep -oE "Test unit written to [^ ]+" "$log" | tail -1 | sed 's/Test unit written to //')
    why=$(grep -m1 -oE 'invariant violated: .{0,300}' "$log" || grep -m1 -A1 'panicked at' "$log" | tail -1 || true)
    [ -n "$why" ] || why=$(grep -m1 -oE 'ERROR: libFuzzer: [a-z-]+' "$log" || echo "exit $rc")
    result="CRASH: ${why}${artifact:+ (input: ${artifact#"$root/"})}"
    grep -m1 -B1 -A3 'panicked at\|ERROR: libFuzzer' "$log" || tail -n 20 "$log"
  fi
  line=$(printf '%-15s %6ss %12s execs %6s corpus  %s' "$t" "$seconds" "${execs:-?}" "$corpus" "$result")
  echo "$line"
  summary+=("$line")
done

step "fuzz summary (build ${build_seconds}s, total $(($(date +%s) - start))s)"
printf '%s\n' "${summary[@]}"
[ "$failed" -eq 0 ] || die "a fuzz target found a crash or a broken invariant"
