#!/usr/bin/env python3
"""Turns the raw output of benches/load/run.sh into RESULTS.md (stdout).

Input: a work directory with meta.env (key=value lines), wrk-<setup>-<round>.txt
(wrk --latency output) and cpu-<setup>-<round>.txt (CPU clock ticks consumed
during that run by the front Envoy, the upstream Envoy, the authorizer
(portcullis, null-authz or oauth2-proxy; 0 otherwise) and wrk); parsed by benchlib.py.
"""

import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import Bench, fmt_ms  # noqa: E402

TARGET = 0.95  # portcullis throughput / null-authz throughput, through the same Envoy config
OPEN_P99 = 1.5  # portcullis p99 / null-authz p99 at half of null-authz's max rate
AUTHZ = ("nullauthz", "extauthz", "extsession", "oauth2proxy", "nullnoremove", "nullbare", "nullallowed")


def open_loop(work, meta):
    """Per open-loop setup, the median over rounds of p50/p99/p99.9 (ms) and the
    failed count summed: from open-<setup>-<round>.csv (vegeta encode: ns timestamp,
    status code, latency ns)."""
    out = {}
    for s in meta.get("open_setups", "").split():
        rounds = []
        for f in sorted(Path(work).glob(f"open-{s}-*.csv")):
            lat, bad = [], 0
            for line in f.read_text().splitlines():
                _, code, ns = line.split(",")[:3]
                lat.append(int(ns) / 1e6)
                bad += code != "200"
            if not lat:
                raise SystemExit(f"{f}: no requests")
            lat.sort()
            q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]
            rounds.append({"p50": q(0.50), "p99": q(0.99), "p999": q(0.999), "bad": bad, "n": len(lat)})
        out[s] = {k: statistics.median(r[k] for r in rounds) for k in ("p50", "p99", "p999")}
        out[s]["bad"], out[s]["n"] = sum(r["bad"] for r in rounds), sum(r["n"] for r in rounds)
        out[s]["p99_range"] = (min(r["p99"] for r in rounds), max(r["p99"] for r in rounds))
    return out


def open_table(b, ol):
    """The constant-rate latency table and its verdicts."""
    if not ol:
        return []
    null = ol["nullauthz"]["p99"]
    out = [f"At a constant {int(b.meta['open_rate']):,} requests/s (half of null-authz's median throughput; "
           f"open loop, vegeta {b.meta['vegeta']}, {b.meta['duration']} s per setup per round, median of {b.runs} rounds):", "",
           "| setup | p50 | p99 (rounds' range) | p99.9 | p99 vs null-authz | failed |", "|---|---:|---:|---:|---:|---:|"]
    for s, x in ol.items():
        lo, hi = x["p99_range"]
        out.append(f"| {b.label(s)} | {fmt_ms(x['p50'])} | {fmt_ms(x['p99'])} ({fmt_ms(lo)}–{fmt_ms(hi)}) "
                   f"| {fmt_ms(x['p999'])} | {x['p99'] / null:.2f} | {x['bad']} of {x['n']:,} |")
    return out + [""]


def summary(b):
    """The ten-second table (copied into the README by readme.py)."""
    med, null = b.med, b.med("nullauthz", "rps")
    rows = [s for s in ("noauth", "jwt", "jwtnocache", "nullauthz", "extauthz", "extsession", "oauth2proxy")
            if s in b.setups]
    out = ["## Summary", "",
           f"Through Envoy (`{b.meta['command']}`; front Envoy `--concurrency {b.meta.get('front_concurrency', '1')}`, "
           f"wrk {b.meta['wrk'].split(' --latency')[0].removeprefix('wrk ')}, median of {b.runs} rounds, {b.meta['date'][:10]}):", "",
           "| setup | requests/s | p99 | vs null ext_authz | authorizer CPU/request |",
           "|---|---:|---:|---:|---:|"]
    for s in rows:
        cpu = f"{med(s, 'authz_us'):.0f} µs" if s in AUTHZ else "–"
        out.append(f"| {b.label(s)} | {med(s, 'rps'):,.0f} | {fmt_ms(med(s, 'p99'))} | {med(s, 'rps') / null:.2f} | {cpu} |")
    return out + [""] + open_table(b, b.open_loop)


def main():
    b = Bench(sys.argv[1])
    b.open_loop = open_loop(sys.argv[1], b.meta)
    meta, setups, med = b.meta, b.setups, b.med
    out = b.intro("portcullis load benchmark through real Envoy", "benches/load/run.sh", "front proxies")
    p = out.append
    p(f"- portcullis: release build of {meta['portcullis_rev']}, Tokio multi-thread runtime (default: one worker per CPU)")
    p(b.load_line())
    p(f"- Every request carries the same valid RS256 bearer token ({meta['token_bytes']} bytes, "
      "minted by tests/idp/idp.mjs), also in the no-auth setup; the session setup sends GET /app/ with the "
      f"sealed session cookie ({meta['cookie_bytes']} bytes) from a real login through that Envoy")
    p("- null-authz answers every Check with the bytes portcullis answered for the token (captured first): "
      "the same header edits, no work")
    if "oauth2proxy" in setups:
        p(f"- oauth2-proxy {meta['oauth2_proxy']} (`go install` from the Go module proxy) behind Envoy's HTTP "
          "ext_authz, `--skip-jwt-bearer-tokens`: it verifies the same bearer token against the same issuer")
    if meta.get("peer_note"):
        p(f"- {meta['peer_note']}")
    p(f"- All processes (wrk, front Envoy, upstream Envoy, authorizer, IdP) share the {b.ncpu} CPUs; "
      "nothing is pinned. Upstream: a separate Envoy answering `direct_response` 200 (3-byte body). "
      "The front Envoys of all setups run side by side; only the one under load is busy.")
    p("")
    out += summary(b)
    out += b.results_table("authorizer CPU", lambda s: s in AUTHZ)
    p("")
    p("CPU columns: share of one CPU used during the measured run (from /proc/<pid>/stat, "
      f"utime+stime, all threads) and CPU time per request. The machine has {b.ncpu * 100}%.")
    p("")
    base, null = med("noauth", "rps"), med("nullauthz", "rps")
    p(f"The ext_authz hop itself (null-authz, no work) keeps {null / base:.0%} of the no-auth throughput and "
      f"costs the front Envoy {med('nullauthz', 'front_us') - med('noauth', 'front_us'):+.0f} µs of CPU per request: "
      "what any gRPC ext_authz server costs with this Envoy config.")
    if "nullbare" in setups:
        f = lambda s: med(s, "front_us")
        p("")
        p("Envoy's share of the hop (front Envoy CPU per request, null-authz every time): "
          f"portcullis' answer as sent {f('nullauthz'):.0f} µs; the same without `headers_to_remove` "
          f"{f('nullnoremove'):.0f} µs; a bare OK {f('nullbare'):.0f} µs; portcullis' answer with Check sent only "
          f"the credential and spoofable headers (`allowed_headers`) {f('nullallowed'):.0f} µs; no ext_authz "
          f"{f('noauth'):.0f} µs.")
    for s in ("extauthz", "extsession"):
        if s in setups:
            ratio = med(s, "rps") / null
            verdict = "meets" if ratio >= TARGET else "misses"
            p("")
            p(f"{b.label(s)}: {ratio:.2f}× null-authz's throughput ({verdict} the {TARGET:.2f}× target); "
              f"p99 {med(s, 'p99') / med('nullauthz', 'p99'):.2f}× null-authz's; "
              f"{med(s, 'authz_us'):.1f} µs of portcullis CPU per request against {med('nullauthz', 'authz_us'):.1f} µs "
              "for null-authz.")
    for s in ("extauthz", "extsession"):
        if s in b.open_loop:
            ratio = b.open_loop[s]["p99"] / b.open_loop["nullauthz"]["p99"]
            verdict = "meets" if ratio <= OPEN_P99 else "misses"
            p("")
            p(f"{b.label(s)} at the constant rate: p99 {ratio:.2f}× null-authz's ({verdict} the ≤ {OPEN_P99}× target).")
    if "oauth2proxy" in setups and "extauthz" in setups:
        p("")
        p(f"Same token, same issuer: portcullis {med('extauthz', 'rps'):,.0f} requests/s, oauth2-proxy "
          f"{med('oauth2proxy', 'rps'):,.0f} ({med('extauthz', 'rps') / med('oauth2proxy', 'rps'):.1f}×); "
          f"authorizer CPU per request {med('extauthz', 'authz_us'):.0f} µs against {med('oauth2proxy', 'authz_us'):.0f} µs.")
    p("")
    out += b.every_run("authorizer")
    p("")
    print("\n".join(out))


if __name__ == "__main__":
    main()
