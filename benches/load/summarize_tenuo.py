#!/usr/bin/env python3
"""Turns the raw output of benches/load/tenuo.sh into RESULTS-tenuo.md (stdout).

Input: a work directory with meta.env, wrk-<setup>-<round>.txt and
cpu-<setup>-<round>.txt, as for summarize.py (both parse them with benchlib.py).
Setups: noauth, tenuohttp (Envoy HTTP ext_authz -> tenuo-authorizer) and,
when measured, pctenuo (Envoy gRPC ext_authz -> portcullis).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import Bench, fmt_ms  # noqa: E402


def main():
    b = Bench(sys.argv[1])
    meta, setups, ncpu, med = b.meta, b.setups, b.ncpu, b.med
    base = med("noauth", "rps")
    out = b.intro("Tenuo warrants through real Envoy: tenuo-authorizer vs portcullis", "benches/load/tenuo.sh",
                  "front proxies")
    p = out.append
    p(f"- tenuo-authorizer: v{meta.get('authz_version', '?')}, crate tenuo {meta['tenuo_crate']} (`cargo install --locked --features "
      f"{meta['tenuo_features']}`), `serve` behind Envoy's HTTP ext_authz (front-tenuo-http.yaml, "
      "as Tenuo's Envoy quickstart), "
      + ("log level warn (`RUST_LOG=tenuo_authorizer=warn`)" if meta.get("authz_quiet") == "1"
         else "default logging (one INFO line per allowed request, to a file)"))
    if "pctenuo" in setups:
        p(f"- portcullis: {meta['portcullis_rev']} (release unless prebuilt) behind Envoy's gRPC ext_authz "
          "(envoy/envoy.yaml), config `tenuo: {trusted_issuers, gateway_config}` + rule `require: tenuo`")
    else:
        p(f"- portcullis: {meta.get('portcullis_skip') or 'not measured'}")
    p(b.load_line())
    p(f"- Every request carries the same root warrant ({meta['warrant_bytes']} bytes, tool `bench_read`, "
      "`resource: Pattern(bench*)`) and the same PoP over `{resource: \"bench\"}`, both made by the "
      f"official Python SDK {meta['sdk']} (tests/tenuo/mint.py), also in the no-auth setup. Both "
      "authorizers use the same gateway config (route `GET …/{resource}`, `resource` from the path). "
      "The PoP is signed right before each run, in a 30 s window that lasts the whole run (so every "
      "check finds it in the current window, one signature check)")
    p("- All processes share the CPUs; nothing is pinned. Upstream: a separate Envoy answering "
      "`direct_response` 200. The front Envoys of all setups run side by side; only the one under "
      "load is busy.")
    p("")
    out += ["## Summary", "",
            f"Tenuo warrants through Envoy (`{meta['command']}`; front Envoy `--concurrency "
            f"{meta.get('front_concurrency', '1')}`, median of {b.runs} rounds, {meta['date'][:10]}):", "",
            "| setup | requests/s | p99 | vs tenuo-authorizer | authorizer CPU/request |", "|---|---:|---:|---:|---:|"]
    for s in setups:
        cpu = f"{med(s, 'authz_us'):.0f} µs" if s != "noauth" else "–"
        out.append(f"| {b.label(s)} | {med(s, 'rps'):,.0f} | {fmt_ms(med(s, 'p99'))} "
                   f"| {med(s, 'rps') / med('tenuohttp', 'rps'):.2f} | {cpu} |")
    out.append("")
    out += b.results_table("authorizer CPU", lambda s: s != "noauth")
    p("")
    p("CPU columns: share of one CPU used during the measured run (from /proc/<pid>/stat, "
      "utime+stime, all threads) and CPU time per request. "
      f"The machine has {ncpu * 100}%.")
    p("")
    p("## Ratios")
    p("")
    tz = med("tenuohttp", "rps")
    p(f"- tenuo-authorizer / no-auth throughput: {tz / base:.2f}; p99 {fmt_ms(med('tenuohttp', 'p99'))} "
      f"vs {fmt_ms(med('noauth', 'p99'))}")
    if "pctenuo" in setups:
        pc = med("pctenuo", "rps")
        p(f"- portcullis / no-auth throughput: {pc / base:.2f}; p99 {fmt_ms(med('pctenuo', 'p99'))}")
        if "nullauthz" in setups:
            nz = med("nullauthz", "rps")
            p(f"- portcullis / null-authz (the same answer, no work) throughput: {pc / nz:.2f} (target ≥ 0.95); "
              f"p99 {med('pctenuo', 'p99') / med('nullauthz', 'p99'):.2f}× null-authz's")
        p(f"- portcullis / tenuo-authorizer throughput: {pc / tz:.2f} (target ≥ 3.0); p99 "
          f"{med('pctenuo', 'p99') / med('tenuohttp', 'p99'):.2f}× theirs; authorizer CPU per request "
          f"{med('pctenuo', 'authz_us'):.0f} µs vs {med('tenuohttp', 'authz_us'):.0f} µs")
    else:
        p(f"- portcullis: {meta.get('portcullis_skip') or 'not measured'}")
    p("")
    out += b.every_run("authorizer")
    p("")
    print("\n".join(out))


if __name__ == "__main__":
    main()
