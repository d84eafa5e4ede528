#!/usr/bin/env python3
"""Turns the raw output of benches/load/run.sh into RESULTS.md (stdout).

Input: a work directory with meta.env (key=value lines), wrk-<setup>-<round>.txt
(wrk --latency output) and cpu-<setup>-<round>.txt (CPU clock ticks consumed
during that run by the front Envoy, the upstream Envoy, the ext_authz server
(portcullis or null-authz; 0 otherwise) and wrk); parsed by benchlib.py.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import Bench  # noqa: E402

TARGET = 0.70  # ext_authz throughput / no-auth throughput


def main():
    b = Bench(sys.argv[1])
    meta, setups, runs, med = b.meta, b.setups, b.runs, b.med
    base = med("noauth", "rps")
    out = b.intro("portcullis load benchmark through real Envoy", "benches/load/run.sh", "front proxy")
    p = out.append
    p(f"- portcullis: release build of {meta['portcullis_rev']}, Tokio multi-thread runtime (default: one worker per CPU)")
    p(b.load_line())
    p(f"- Every request carries the same valid RS256 bearer token ({meta['token_bytes']} bytes, "
      "minted by tests/idp/idp.mjs), also in the no-auth setup")
    p("- All processes (wrk, front Envoy, upstream Envoy, portcullis, IdP) share the 2 CPUs; "
      "nothing is pinned. Upstream: a separate Envoy answering `direct_response` 200 (3-byte body). "
      "The front Envoys of all setups run side by side; only the one under load is busy.")
    p("")
    out += b.results_table("ext_authz server CPU", lambda s: s in ("extauthz", "nullauthz"))
    p("")
    p("CPU columns: share of one CPU used during the measured run (from /proc/<pid>/stat, "
      "utime+stime, all threads) and CPU time per request. The machine has 200%.")
    if "extauthz" in setups:
        ratio = med("extauthz", "rps") / base
        verdict = "meets" if ratio >= TARGET else "misses"
        p("")
        p(f"ext_authz → portcullis reaches {ratio:.0%} of the no-auth throughput: {verdict} the "
          f"{TARGET:.0%} target.")
        fa, fe = med("noauth", "front_us"), med("extauthz", "front_us")
        p("")
        p(f"Front Envoy CPU per request: {fa:.0f} µs without auth, {fe:.0f} µs with ext_authz "
          f"(+{fe - fa:.0f} µs for the Check call inside Envoy); portcullis itself: "
          f"{med('extauthz', 'authz_us'):.0f} µs per Check. Throughput ratio predicted from the front "
          f"Envoy's CPU per request alone (its single worker is the bottleneck): {fa / fe:.0%}.")
    p("")
    out += b.every_run("ext_authz server")
    p("")
    print("\n".join(out))


if __name__ == "__main__":
    main()
