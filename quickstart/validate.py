"""Static checks behind quickstart/validate.sh that no off-the-shelf linter does.

    python quickstart/validate.py compose   quickstart/compose.yaml
    python quickstart/validate.py dashboard deploy/observability/portcullis-dashboard.json OUT.yaml

`compose`: what the compose-spec JSON schema cannot see — files and build
contexts that must exist, references between services, the shared network
namespace, the Envoy image matching the version the tests run, healthcheck
shell syntax.

`dashboard`: the Grafana JSON parses and is well formed (unique panel ids,
datasource on every query, grid inside 24 columns), and writes every PromQL
query (Grafana variables replaced by sample values) as a Prometheus recording
rule into OUT.yaml, for `promtool check rules` to parse.

Exit status 1 with one line per problem. Needs ruamel.yaml (a dependency of
check-jsonschema, installed by validate.sh).
"""

import json
import re
import subprocess
import sys
from pathlib import Path

from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parent.parent


def load_yaml(path):
    return YAML(typ="safe", pure=True).load(Path(path).read_text())


# ---------------------------------------------------------------------------
# compose


GO_DURATION = re.compile(r"(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+")
PORT = re.compile(r"((\d{1,3}\.){3}\d{1,3}:)?(\d{1,5}(-\d{1,5})?:)?\d{1,5}(-\d{1,5})?(/(tcp|udp|sctp))?")


def check_compose(path):
    path = Path(path).resolve()
    base = path.parent
    doc = load_yaml(path)
    problems = []
    services = doc.get("services") or {}
    if "version" in doc:
        problems.append("top-level `version:` is obsolete in the compose spec; remove it")

    for name, svc in services.items():
        where = f"services.{name}"
        if "image" not in svc and "build" not in svc:
            problems.append(f"{where}: neither image nor build")
        build = svc.get("build")
        if isinstance(build, str):
            build = {"context": build}
        if build:
            ctx = (base / build.get("context", ".")).resolve()
            dockerfile = ctx / build.get("dockerfile", "Dockerfile")
            if not ctx.is_dir():
                problems.append(f"{where}.build.context: {ctx} is not a directory")
            elif not dockerfile.is_file():
                problems.append(f"{where}.build.dockerfile: {dockerfile} does not exist")
        for vol in svc.get("volumes") or []:
            source = vol.get("source") if isinstance(vol, dict) else vol.split(":")[0]
            if isinstance(vol, dict):
                is_bind = vol.get("type") == "bind"
            else:
                is_bind = source.startswith((".", "/"))
            if is_bind and not (base / source).exists():
                problems.append(f"{where}.volumes: bind source {source} does not exist (relative to {base})")
            if is_bind and isinstance(vol, str) and not vol.endswith(":ro"):
                problems.append(f"{where}.volumes: {vol} should be mounted read-only (:ro)")
        deps = svc.get("depends_on") or {}
        for dep in deps if isinstance(deps, list) else deps.keys():
            if dep not in services:
                problems.append(f"{where}.depends_on: unknown service {dep}")
            elif (
                isinstance(deps, dict)
                and deps[dep].get("condition") == "service_healthy"
                and "healthcheck" not in services[dep]
            ):
                problems.append(f"{where}.depends_on.{dep}: service_healthy, but {dep} has no healthcheck")
        mode = svc.get("network_mode", "")
        if mode.startswith("service:"):
            owner = mode.split(":", 1)[1]
            if owner not in services:
                problems.append(f"{where}.network_mode: unknown service {owner}")
            for key in ("ports", "networks", "expose"):
                if key in svc:
                    problems.append(f"{where}.{key}: not allowed with network_mode {mode} (publish on {owner} instead)")
        durations = dict((svc.get("healthcheck") or {}), stop_grace_period=svc.get("stop_grace_period"))
        for key in ("interval", "timeout", "start_period", "start_interval", "stop_grace_period"):
            value = durations.get(key)
            if value is not None and not GO_DURATION.fullmatch(str(value)):
                problems.append(f"{where}: {key} {value!r} is not a duration like 2s or 1m30s")
        for port in svc.get("ports") or []:
            if isinstance(port, str) and not PORT.fullmatch(port):
                problems.append(f"{where}.ports: {port!r} is not [HOST_IP:]HOST_PORT:CONTAINER_PORT[/PROTOCOL]")
        hc = (svc.get("healthcheck") or {}).get("test")
        if isinstance(hc, list) and len(hc) >= 3 and hc[0] == "CMD" and hc[1] in ("bash", "sh") and hc[2] == "-c":
            script = hc[3].replace("$$", "$")
            res = subprocess.run(["bash", "-n", "-c", script], check=False, capture_output=True, text=True)
            if res.returncode != 0:
                problems.append(f"{where}.healthcheck.test: shell syntax error: {res.stderr.strip()}")

    # The Envoy image must be the version the tests and run.sh use.
    install = (ROOT / "envoy/install.sh").read_text()
    m = re.search(r"ENVOY_VERSION=\$\{ENVOY_VERSION:-([0-9.]+)\}", install)
    want = f"envoyproxy/envoy:v{m.group(1)}" if m else None
    images = [s.get("image", "") for s in services.values() if s.get("image", "").startswith("envoyproxy/envoy")]
    if want is None:
        problems.append("envoy/install.sh: default ENVOY_VERSION not found")
    elif images != [want]:
        problems.append(f"Envoy image {images} differs from the tested version: want {want} (envoy/install.sh)")
    return problems


# ---------------------------------------------------------------------------
# dashboard

# Sample values for Grafana's variables, so the queries parse as PromQL.
GRAFANA_VARS = {
    "$__rate_interval": "5m",
    "$__interval": "1m",
    "$__range": "1h",
    "${datasource}": "prometheus",
    "$job": "portcullis",
    "$instance": ".*",
}


def substitute(expr):
    for var, value in sorted(GRAFANA_VARS.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(var, value)
    left = re.findall(r"\$\{?\w+", expr)
    return expr, left


def walk_panels(panels):
    for p in panels:
        yield p
        yield from walk_panels(p.get("panels") or [])


def check_dashboard(path, out):
    problems = []
    try:
        dash = json.loads(Path(path).read_text())
    except ValueError as e:
        return [f"{path}: not JSON: {e}"]
    for key in ("title", "uid", "panels", "schemaVersion", "templating"):
        if key not in dash:
            problems.append(f"{path}: missing top-level {key!r}")
    if dash.get("id") is not None:
        problems.append(f"{path}: id must be null in a shared dashboard")
    queries = []  # (where, expr)
    ids = set()
    for panel in walk_panels(dash.get("panels") or []):
        where = f"panel {panel.get('id')} {panel.get('title')!r}"
        if panel.get("id") in ids:
            problems.append(f"{where}: duplicate panel id")
        ids.add(panel.get("id"))
        g = panel.get("gridPos") or {}
        if not all(k in g for k in "hwxy") or g["x"] + g["w"] > 24:
            problems.append(f"{where}: gridPos {g} missing or wider than 24 columns")
        if panel.get("type") == "row":
            continue
        targets = panel.get("targets") or []
        if not targets:
            problems.append(f"{where}: no queries")
        if not panel.get("description"):
            problems.append(f"{where}: no description")
        refs = set()
        for t in targets:
            if (t.get("datasource") or panel.get("datasource") or {}).get("uid") != "${datasource}":
                problems.append(f"{where}: query {t.get('refId')} does not use the ${{datasource}} variable")
            if t.get("refId") in refs:
                problems.append(f"{where}: duplicate refId {t.get('refId')}")
            refs.add(t.get("refId"))
            if not t.get("expr"):
                problems.append(f"{where}: query {t.get('refId')} has no expr")
            else:
                queries.append((f"{where} {t.get('refId')}", t["expr"]))
    for var in (dash.get("templating") or {}).get("list", []):
        if var.get("type") != "query":
            continue
        q = var.get("query")
        q = q.get("query") if isinstance(q, dict) else q
        m = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\)\s*", q or "")
        if not m:
            problems.append(f"variable {var.get('name')}: unsupported query {q!r}")
        else:
            queries.append((f"variable {var.get('name')}", m.group(1)))

    rules = []
    for i, (where, expr) in enumerate(queries):
        expr, left = substitute(expr)
        if left:
            problems.append(f"{where}: unknown variable(s) {left}")
        rules.append({"record": f"dashboard:query_{i}", "expr": expr})
    Path(out).write_text(json.dumps({"groups": [{"name": "dashboard-queries", "rules": rules}]}, indent=1))
    print(f"{len(queries)} queries written to {out}")
    return problems


def main(argv):
    if len(argv) >= 2 and argv[0] == "compose":
        problems = check_compose(argv[1])
    elif len(argv) >= 3 and argv[0] == "dashboard":
        problems = check_dashboard(argv[1], argv[2])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    for p in problems:
        print(f"  - {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
