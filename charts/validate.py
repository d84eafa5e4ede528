#!/usr/bin/env python3
"""Helper of charts/test.sh: sort `helm template` renderings for the validators and check what
no schema sees, with istio/validate.py's own cross-checks (imported, not copied).

    validate.py prepare WORK CASE_DIR...   each CASE_DIR: manifests.yaml, notes.txt
    validate.py drift RENDERED_YAML ISTIO_BASE_DIR

prepare writes into WORK what istio/validate.sh's steps read (k8s/*.json, schema/<schema>/*.json,
portcullis/<n>.yaml + .env), plus schemas/ for the Prometheus Operator kinds and
promrules/*.yaml (the PrometheusRule groups, for promtool). Each case is rendered into its own
namespace, so the cases cannot see each other's objects. The mesh config and the CUSTOM
AuthorizationPolicy that NOTES.txt tells users to paste are parsed out of notes.txt and
validated like istio/mesh and istio/policies: NOTES is checked, not just printed.

Secrets: the chart never holds them, so for check-config every `{file: /etc/portcullis/secrets/X}`
becomes a file under WORK/secrets/ and every secretKeyRef env variable gets a value, both a
random 32-byte key (valid as a cookie key and as a client secret).

drift compares the chart's default rendering with istio/base on the fields that matter for
security and operations (Deployment, Service ports, PodDisruptionBudget, the config's listeners,
shutdown timing, headers and cache); any difference fails.
"""

import base64
import json
import os
import re
import secrets
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "istio"))
import validate as iv  # noqa: E402  (istio/validate.py)

SECRETS_DIR = "/etc/portcullis/secrets/"
NOTES_BLOCK = re.compile(r"^# --- (?P<name>[a-z ]+) ---\n(?P<body>.*?)^# --- end ---$", re.M | re.S)

# Closed subsets of the Prometheus Operator CRDs (monitoring.coreos.com/v1): exactly the fields
# the chart renders, with their types from the operator's API reference. No registry package
# here ships these CRDs as JSON schemas, so this is a structural check, not the CRD's own.
METADATA = {"type": "object", "required": ["name", "namespace"], "additionalProperties": False,
            "properties": {"name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
                           "namespace": {"type": "string"},
                           "labels": {"type": "object", "additionalProperties": {"type": "string"}}}}
STR_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
RELABEL = {"type": "object", "additionalProperties": False, "properties": {
    k: {"type": "string"} for k in ("action", "targetLabel", "replacement", "regex", "separator")}
    | {"sourceLabels": {"type": "array", "items": {"type": "string"}}, "modulus": {"type": "integer"}}}
DURATION = {"type": "string", "pattern": "^(0|([0-9]+(ms|s|m|h|d|w|y))+)$"}
SAFE_TLS = {"type": "object", "additionalProperties": False, "properties": {
    k: {"type": "string"} for k in ("caFile", "certFile", "keyFile", "serverName")}
    | {"insecureSkipVerify": {"type": "boolean"}}}


def envelope(kind, spec):
    return {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
            "additionalProperties": False, "required": ["apiVersion", "kind", "metadata", "spec"],
            "properties": {"apiVersion": {"const": "monitoring.coreos.com/v1"}, "kind": {"const": kind},
                           "metadata": METADATA, "spec": spec}}


SCHEMAS = {
    "servicemonitor.monitoring.coreos.com_v1.json": envelope("ServiceMonitor", {
        "type": "object", "additionalProperties": False, "required": ["selector", "endpoints"],
        "properties": {
            "selector": {"type": "object", "additionalProperties": False, "required": ["matchLabels"],
                         "properties": {"matchLabels": STR_MAP}},
            "namespaceSelector": {"type": "object", "additionalProperties": False,
                                  "properties": {"matchNames": {"type": "array", "items": {"type": "string"}}}},
            "endpoints": {"type": "array", "minItems": 1, "items": {
                "type": "object", "additionalProperties": False, "required": ["port"],
                "properties": {"port": {"type": "string"}, "path": {"type": "string", "pattern": "^/"},
                               "interval": DURATION, "scrapeTimeout": DURATION,
                               "scheme": {"enum": ["http", "https"]}, "tlsConfig": SAFE_TLS,
                               "relabelings": {"type": "array", "items": RELABEL},
                               "metricRelabelings": {"type": "array", "items": RELABEL}}}}}}),
    "prometheusrule.monitoring.coreos.com_v1.json": envelope("PrometheusRule", {
        "type": "object", "additionalProperties": False, "required": ["groups"],
        "properties": {"groups": {"type": "array", "minItems": 1, "items": {
            "type": "object", "additionalProperties": False, "required": ["name", "rules"],
            "properties": {"name": {"type": "string", "minLength": 1}, "interval": DURATION,
                           "rules": {"type": "array", "minItems": 1, "items": {
                               "type": "object", "additionalProperties": False, "required": ["expr"],
                               "oneOf": [{"required": ["alert"]}, {"required": ["record"]}],
                               "properties": {"alert": {"type": "string"}, "record": {"type": "string"},
                                              "expr": {"type": "string", "minLength": 1}, "for": DURATION,
                                              "labels": STR_MAP, "annotations": STR_MAP}}}}}}}}),
}
MONITORING = {("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor.monitoring.coreos.com_v1.json",
              ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrule.monitoring.coreos.com_v1.json"}


def fake_key():
    return base64.b64encode(secrets.token_bytes(32)).decode()


# Variables whose value must be an Ed25519 public key (hex), not any 32 bytes: RFC 8032's
# first test key, the one portcullis.example.yaml shows.
TENUO_KEY_VARS = ("TRUSTED_ISSUERS", "TENUO_TRUSTED_KEYS")
TEST_PUBLIC_KEY = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"


def notes_blocks(c, case, text):
    blocks = {m["name"]: m["body"] for m in NOTES_BLOCK.finditer(text)}
    out = {}
    for name in ("mesh config", "authorization policy"):
        if name in blocks:
            out[name] = iv.embedded(c, blocks[name], f"{case} NOTES.txt {name}")
    return out


def prepare_case(c, work, case_dir):
    case = os.path.basename(case_dir.rstrip("/"))
    st = iv.State(work)
    with open(os.path.join(case_dir, "manifests.yaml")) as fh:
        docs = iv.load_all(fh.read(), f"{case}/manifests.yaml")
    with open(os.path.join(case_dir, "notes.txt")) as fh:
        notes = notes_blocks(c, case, fh.read())
    istio = any(d.get("kind") == "PeerAuthentication" for d in docs)
    if istio:
        c.check("mesh config" in notes and "authorization policy" in notes,
                f"{case}: NOTES.txt prints the mesh provider and the CUSTOM policy")
    mesh = (notes.get("mesh config") or {}).get("meshConfig")
    if mesh is not None:
        st.plan.write("schema/meshconfig.json", case, "NOTES-meshConfig", mesh)
        st.meshes.append((f"{case} NOTES.txt meshConfig", mesh))
    if notes.get("authorization policy"):
        policy = notes["authorization policy"]
        st.plan.write(f"schema/{iv.schema_for(policy)}", case, "NOTES-AuthorizationPolicy", policy)
        st.policies.append((f"{case} NOTES.txt", policy))

    for doc in docs:
        origin = f"{case}/manifests.yaml"
        if not c.check(isinstance(doc, dict) and isinstance(doc.get("metadata"), dict),
                       f"{origin}: every document is an object with metadata"):
            continue
        schema = MONITORING.get((doc.get("apiVersion"), doc.get("kind")))
        if schema:
            st.objs[(doc["kind"], doc["metadata"].get("namespace"), doc["metadata"].get("name"))] = doc
            st.plan.write(f"schema/{schema}", origin, f"{doc['kind']}-{doc['metadata'].get('name')}", doc)
            if doc["kind"] == "PrometheusRule":
                st.plan.write("promrules", origin, "groups", iv.yaml.safe_dump({"groups": doc["spec"]["groups"]}),
                              ext="yaml")
            continue
        iv.guarded(c, f"{origin}: {iv.name_of(doc)}", iv.sort_doc, c, st, origin, doc)
    c.check(not st.unknown, f"{case}: every object has a validator", "; ".join(st.unknown))

    deps = [o for (k, _, _), o in st.objs.items() if k == "Deployment"]
    if c.check(len(deps) == 1, f"{case}: one Deployment"):
        dep = deps[0]
        # existingSecret is created out of band (never by the chart): stand in for it, as the
        # secret values are stood in for below.
        for vol in dep["spec"]["template"]["spec"].get("volumes", []):
            if "secret" in vol:
                st.objs[("Secret", dep["metadata"]["namespace"], vol["secret"]["secretName"])] = {}
        iv.guarded(c, iv.name_of(dep), iv.portcullis_deployment, c, st.plan, dep, st.objs, st.portcullis_cfgs)
        iv.guarded(c, f"{case}: secrets", fake_secrets, c, work, case, dep)
        iv.guarded(c, f"{case}: monitoring", monitoring_checks, c, case, st.objs, dep)
    if istio:
        iv.guarded(c, f"{case}: mesh wiring", iv.mesh_checks, c, st.meshes, st.policies, st.services)


def fake_secrets(c, work, case, dep):
    """Give check-config what the cluster's Secret would: env values and secret files."""
    ctr = dep["spec"]["template"]["spec"]["containers"][0]
    env = [e["name"] for e in ctr.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})]
    sdir = os.path.join(work, "secrets", case)
    for name in sorted(os.listdir(os.path.join(work, "portcullis"))):
        if not (name.endswith(".yaml") and f"_{case}_" in name):
            continue
        path = os.path.join(work, "portcullis", name)
        with open(path) as fh:
            text = fh.read()
        for ref in sorted(set(re.findall(re.escape(SECRETS_DIR) + r"([A-Za-z0-9._-]+)", text))):
            os.makedirs(sdir, exist_ok=True)
            with open(os.path.join(sdir, ref), "w") as fh:
                fh.write(fake_key() + "\n")
        c.check(SECRETS_DIR not in text or any(m["mountPath"] == SECRETS_DIR.rstrip("/")
                                               for m in ctr.get("volumeMounts", [])),
                f"{case}: config reads {SECRETS_DIR} and the Secret is mounted there")
        with open(path, "w") as fh:
            fh.write(text.replace(SECRETS_DIR, sdir + "/"))
        with open(path[:-len(".yaml")] + ".env", "a") as fh:
            fh.write("".join(f"{n}={TEST_PUBLIC_KEY if n in TENUO_KEY_VARS else fake_key()}\n" for n in env))


def monitoring_checks(c, case, objs, dep):
    ns = dep["metadata"]["namespace"]
    labels = dep["spec"]["template"]["metadata"]["labels"]
    for (kind, ons, name), o in objs.items():
        if kind == "ServiceMonitor":
            svc = objs.get(("Service", ns, dep["metadata"]["name"]))
            c.check(svc is not None and iv.matches(o["spec"]["selector"]["matchLabels"], svc["metadata"]["labels"])
                    and ons in o["spec"]["namespaceSelector"]["matchNames"],
                    f"{case}: ServiceMonitor {name} selects the Service")
            ports = [p["name"] for p in svc["spec"]["ports"]] if svc else []
            c.check(all(e["port"] in ports for e in o["spec"]["endpoints"]),
                    f"{case}: ServiceMonitor {name} scrapes a Service port")
        if kind == "AuthorizationPolicy" and o["spec"].get("action") == "ALLOW":
            c.check(iv.matches(o["spec"]["selector"]["matchLabels"], labels),
                    f"{case}: AuthorizationPolicy {name} selects the portcullis pods")


def prepare(work, case_dirs):
    c = iv.Checks()
    for d in case_dirs:
        prepare_case(c, work, d)
    for name, schema in SCHEMAS.items():
        os.makedirs(os.path.join(work, "schemas"), exist_ok=True)
        with open(os.path.join(work, "schemas", name), "w") as fh:
            json.dump(schema, fh, indent=1)
    print(f"{c.passed} cross-checks passed, {c.failed} failed")
    return 1 if c.failed else 0


# ------------------------------------------------------------------ drift

def ops_view(dep):
    """The fields both deployments must agree on; labels and names may differ."""
    pod = dep["spec"]["template"]["spec"]
    ctr = next(x for x in pod["containers"] if x["name"] == "portcullis")
    ann = dep["spec"]["template"]["metadata"].get("annotations", {})
    spread = [{k: v for k, v in t.items() if k != "labelSelector"} for t in pod.get("topologySpreadConstraints", [])]
    return {
        "replicas": dep["spec"].get("replicas"),
        "strategy": dep["spec"].get("strategy"),
        "pod.securityContext": pod.get("securityContext"),
        "pod.automountServiceAccountToken": pod.get("automountServiceAccountToken"),
        "pod.enableServiceLinks": pod.get("enableServiceLinks"),
        "pod.terminationGracePeriodSeconds": pod.get("terminationGracePeriodSeconds"),
        "pod.topologySpreadConstraints (without labelSelector)": spread,
        "container.securityContext": ctr.get("securityContext"),
        "container.resources": ctr.get("resources"),
        "container.ports": ctr.get("ports"),
        "container.livenessProbe": ctr.get("livenessProbe"),
        "container.readinessProbe": ctr.get("readinessProbe"),
        "container.imagePullPolicy": ctr.get("imagePullPolicy"),
        "annotation proxy.istio.io/config": iv.yaml.safe_load(ann.get("proxy.istio.io/config", "")),
        "annotations prometheus.io/*": {k: v for k, v in ann.items() if k.startswith("prometheus.io/")},
        "label sidecar.istio.io/inject": dep["spec"]["template"]["metadata"]["labels"].get("sidecar.istio.io/inject"),
    }


def config_view(cm):
    cfg = iv.yaml.safe_load(cm["data"]["portcullis.yaml"])
    keys = ("listen", "admin_listen", "shutdown_delay_seconds", "shutdown_grace_seconds", "debug", "headers", "cache")
    return {k: cfg.get(k) for k in keys}


VIEWS = {  # kind -> (file in istio/base, the fields compared)
    "Deployment": ("deployment.yaml", ops_view),
    "Service": ("service.yaml", lambda o: {"type": o["spec"].get("type"), "ports": o["spec"]["ports"]}),
    "PodDisruptionBudget": ("poddisruptionbudget.yaml",
                            lambda o: {k: v for k, v in o["spec"].items() if k != "selector"}),
    "ConfigMap": ("configmap.yaml", config_view),
}


def drift(rendered, base_dir):
    """rendered: the chart's default rendering (one file, every object)."""
    with open(rendered) as fh:
        chart = {d.get("kind"): d for d in iv.load_all(fh.read(), rendered)}
    c = iv.Checks()
    for kind, (name, view) in VIEWS.items():
        with open(os.path.join(base_dir, name)) as fh:
            base = iv.load_all(fh.read(), f"istio/base/{name}")[0]
        if not c.check(kind in chart, f"chart default renders a {kind}"):
            continue
        a, b = view(chart[kind]), view(base)
        for key in a:
            c.check(a[key] == b[key], f"chart default vs istio/base/{name}: {key}",
                    "" if a[key] == b[key] else f"chart {json.dumps(a[key])} != istio/base {json.dumps(b[key])}")
    print(f"{c.passed} fields agree, {c.failed} differ")
    return 1 if c.failed else 0


def main():
    if len(sys.argv) >= 4 and sys.argv[1] == "prepare":
        sys.exit(prepare(os.path.abspath(sys.argv[2]), sys.argv[3:]))
    if len(sys.argv) == 4 and sys.argv[1] == "drift":
        sys.exit(drift(sys.argv[2], sys.argv[3]))
    sys.exit(__doc__)


if __name__ == "__main__":
    main()
