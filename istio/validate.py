#!/usr/bin/env python3
"""Helper of validate.sh: collect every manifest under istio/, sort it for the validators,
and check what no schema can see (references between objects, hardening, mesh wiring).

    validate.py prepare ISTIO_DIR WORK_DIR

Writes into WORK_DIR:
  k8s/*.json                 built-in Kubernetes objects, for kubernetes-validate
  schema/<schema>/*.json     Istio objects and embedded mesh/proxy config, for check-jsonschema
                             against ISTIO_DIR/schemas/<schema>
  portcullis/<n>.yaml        portcullis config from a ConfigMap key `portcullis.yaml`,
  portcullis/<n>.env         with the literal env values of the container that mounts it
  renderer                   how kustomizations were rendered
Prints each failed cross-check (each passed one too with VERBOSE=1) and a count; exits 1 if
any failed. Files in a kustomization directory are validated in their rendered form only.
"""

import http
import json
import os
import re
import shutil
import subprocess
import sys

import yaml

PORTCULLIS_ENV = ("PORTCULLIS_", "OIDC_PROXY_HEADER")
PROVIDER_KEY = "envoyExtAuthzGrpc"


# ------------------------------------------------------------------ loading

class StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys (PyYAML keeps the last one silently)."""


def _mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def load_all(text, origin):
    try:
        return [d for d in yaml.load_all(text, Loader=StrictLoader) if d is not None]
    except yaml.YAMLError as exc:
        raise SystemExit(f"FAIL yaml: {origin}: {exc}")


def render_kustomization(path):
    kubectl = shutil.which("kubectl")
    if kubectl:
        out = subprocess.run([kubectl, "kustomize", path], check=False, capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(f"FAIL kustomize: {path}: {out.stderr.strip()}")
        return out.stdout, "kubectl kustomize (" + kubectl_version(kubectl) + ")"
    # Fallback for machines without kubectl: only `resources` (plain files) and `namespace`.
    with open(os.path.join(path, "kustomization.yaml")) as fh:
        kust = load_all(fh.read(), path)[0]
    extra = set(kust) - {"apiVersion", "kind", "namespace", "resources"}
    if extra:
        raise SystemExit(f"FAIL kustomize: {path}: no kubectl, and the fallback renderer "
                         f"does not handle {sorted(extra)}")
    docs = []
    for res in kust.get("resources", []):
        if not os.path.isfile(os.path.join(path, res)):
            raise SystemExit(f"FAIL kustomize: {path}: no kubectl, and the fallback renderer "
                             f"handles plain files only, not {res}")
        with open(os.path.join(path, res)) as fh:
            for doc in load_all(fh.read(), os.path.join(path, res)):
                if "namespace" in kust and doc.get("kind") != "Namespace":
                    doc.setdefault("metadata", {})["namespace"] = kust["namespace"]
                docs.append(doc)
    return yaml.safe_dump_all(docs, sort_keys=False), "built-in fallback (resources + namespace)"


def kubectl_version(kubectl):
    out = subprocess.run([kubectl, "version", "--client", "-o", "json"],
                         check=False, capture_output=True, text=True)
    try:
        info = json.loads(out.stdout)
        return f"kubectl {info['clientVersion']['gitVersion']}, kustomize {info.get('kustomizeVersion', '?')}"
    except (ValueError, KeyError):
        return "kubectl"


def collect(istio_dir):
    """(origin, doc) for every object, kustomizations rendered; plus the renderer used."""
    kust_dirs, plain = [], []
    for dirpath, dirnames, filenames in os.walk(istio_dir):
        dirnames[:] = sorted(d for d in dirnames if d != "schemas")
        if "kustomization.yaml" in filenames:
            kust_dirs.append(dirpath)
        for f in sorted(filenames):
            if f.endswith((".yaml", ".yml")):
                plain.append(os.path.join(dirpath, f))
    items, renderers = [], set()
    # Every file must parse (no duplicate keys), including the ones kustomize renders.
    parsed = {}
    for f in plain:
        with open(f) as fh:
            parsed[f] = load_all(fh.read(), rel(f, istio_dir))
    # A manifest next to a kustomization.yaml that the kustomization does not list would
    # never be applied nor validated: refuse it.
    for f in plain:
        owners = [d for d in kust_dirs if os.path.commonpath([f, d]) == d]
        if owners and os.path.basename(f) != "kustomization.yaml":
            d = max(owners, key=len)
            kust = (parsed[os.path.join(d, "kustomization.yaml")] or [{}])[0]
            if os.path.relpath(f, d) not in (kust.get("resources") or []):
                raise SystemExit(f"FAIL kustomize: {rel(f, istio_dir)} is not listed in "
                                 f"{rel(d, istio_dir)}/kustomization.yaml resources")
    for d in kust_dirs:
        text, how = render_kustomization(d)
        renderers.add(how)
        for doc in load_all(text, d):
            items.append((f"{rel(d, istio_dir)}/ (rendered)", doc))
    for f, docs in parsed.items():
        if any(os.path.commonpath([f, d]) == d for d in kust_dirs):
            continue  # validated in its rendered form
        for doc in docs:
            items.append((rel(f, istio_dir), doc))
    return items, sorted(renderers)


def rel(path, base):
    return os.path.relpath(path, os.path.dirname(base.rstrip("/")))


# ------------------------------------------------------------------ sorting

def schema_for(doc):
    api, kind = doc.get("apiVersion", ""), doc.get("kind", "")
    group = api.split("/")[0] if "/" in api else ""
    if group == "" or group.endswith(".k8s.io") or "." not in group:
        return "k8s"
    table = {
        ("security.istio.io/v1", "AuthorizationPolicy"): "authorizationpolicy.security.istio.io_v1.json",
        ("security.istio.io/v1", "PeerAuthentication"): "peerauthentication.security.istio.io_v1.json",
        ("install.istio.io/v1alpha1", "IstioOperator"): "istiooperator.install.istio.io_v1alpha1.json",
    }
    return table.get((api, kind))


def slug(text):
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


class Plan:
    def __init__(self, work):
        self.work = work
        self.n = 0

    def write(self, sub, origin, label, obj, ext="json"):
        self.n += 1
        d = os.path.join(self.work, sub)
        os.makedirs(d, exist_ok=True)
        path = os.path.join(d, f"{self.n:02d}_{slug(origin)}__{slug(label)}.{ext}")
        with open(path, "w") as fh:
            if ext == "json":
                json.dump(obj, fh, indent=1)
            else:
                fh.write(obj)
        return path


def name_of(doc):
    meta = doc.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{doc.get('kind')}/{(ns + '/') if ns else ''}{meta.get('name')}"


# ------------------------------------------------------------------ cross-checks

class Checks:
    """Prints failures always, passes only with VERBOSE=1."""

    def __init__(self):
        self.failed = self.passed = 0
        self.verbose = os.environ.get("VERBOSE") == "1"

    def check(self, ok, what, detail=""):
        if not ok or self.verbose:
            print(f"{'ok  ' if ok else 'FAIL'} {what}" + (f" ({detail})" if detail else ""))
        if ok:
            self.passed += 1
        else:
            self.failed += 1
        return ok


def port_of(addr):
    m = re.search(r":(\d+)$", str(addr))
    return int(m.group(1)) if m else None


def matches(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def deployment_checks(c, dep, objs, cfg):
    """Hardening and wiring of one portcullis Deployment."""
    ns = dep["metadata"].get("namespace")
    spec = dep["spec"]
    pod = spec["template"]["spec"]
    labels = spec["template"]["metadata"].get("labels", {})
    ctr = next((x for x in pod["containers"] if x["name"] == "portcullis"), None)
    if not c.check(ctr is not None, f"{name_of(dep)}: has a container named portcullis"):
        return
    psc, csc = pod.get("securityContext", {}), ctr.get("securityContext", {})
    who = name_of(dep)
    hpa = next((o for (k, ons, _), o in objs.items()
                if k == "HorizontalPodAutoscaler" and ons == ns), None)
    # Without `replicas` an HPA owns the count (a Helm chart leaves it out so that an upgrade
    # does not reset it): its floor is what runs.
    floor = spec.get("replicas", (hpa or {}).get("spec", {}).get("minReplicas", 1))
    c.check(floor >= 2, f"{who}: at least 2 replicas", f"{floor}")
    c.check(pod.get("automountServiceAccountToken") is False, f"{who}: automountServiceAccountToken false")
    c.check(csc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True, f"{who}: runAsNonRoot")
    uid = csc.get("runAsUser", psc.get("runAsUser"))
    c.check(isinstance(uid, int) and uid > 0 and uid != 1337, f"{who}: fixed non-root UID, not Istio's 1337",
            f"runAsUser={uid}")
    c.check(csc.get("readOnlyRootFilesystem") is True, f"{who}: readOnlyRootFilesystem")
    c.check(csc.get("allowPrivilegeEscalation") is False, f"{who}: allowPrivilegeEscalation false")
    c.check(csc.get("capabilities", {}).get("drop") == ["ALL"], f"{who}: capabilities drop [ALL]")
    seccomp = csc.get("seccompProfile", psc.get("seccompProfile", {})).get("type")
    c.check(seccomp == "RuntimeDefault", f"{who}: seccompProfile RuntimeDefault")
    res = ctr.get("resources", {})
    c.check(bool(res.get("requests", {}).get("cpu")) and bool(res.get("requests", {}).get("memory"))
            and bool(res.get("limits", {}).get("memory")), f"{who}: cpu/memory requests and a memory limit")
    c.check(bool(pod.get("topologySpreadConstraints") or pod.get("affinity", {}).get("podAntiAffinity")),
            f"{who}: spread over nodes (topologySpreadConstraints or pod anti-affinity)")

    # --config path -> mount -> ConfigMap key
    args = ctr.get("args", [])
    conf_path = args[args.index("--config") + 1] if "--config" in args else None
    # The file itself (subPath), or the directory holding it (a directory mount follows
    # ConfigMap updates, which the chart uses for the reloadable tenuo section).
    mount = next((m for m in ctr.get("volumeMounts", []) if m["mountPath"] == conf_path
                  or (conf_path and m["mountPath"] == os.path.dirname(conf_path) and not m.get("subPath"))), None)
    c.check(mount is not None and mount.get("readOnly") is True,
            f"{who}: --config {conf_path} is a read-only mount")
    if mount:
        vol = next((v for v in pod.get("volumes", []) if v["name"] == mount["name"]), {})
        cm_name = vol.get("configMap", {}).get("name")
        key = mount.get("subPath") or os.path.basename(conf_path)
        items = vol.get("configMap", {}).get("items")
        if mount["mountPath"] != conf_path and items:
            key = next((i["key"] for i in items if i["path"] == key), None)
        cm = objs.get(("ConfigMap", ns, cm_name))
        c.check(cm is not None and key in cm.get("data", {}),
                f"{who}: config comes from ConfigMap {cm_name} key {key}")
    for vol in pod.get("volumes", []):
        sec = vol.get("secret")
        if sec:
            c.check(sec.get("optional") is True or ("Secret", ns, sec["secretName"]) in objs,
                    f"{who}: Secret volume {sec['secretName']} exists or is optional")
    sa = pod.get("serviceAccountName", "default")
    c.check(("ServiceAccount", ns, sa) in objs, f"{who}: ServiceAccount {sa} is defined")

    ports = {p["name"]: p["containerPort"] for p in ctr.get("ports", [])}
    if cfg is not None:
        grpc_port = port_of(cfg.get("listen", "0.0.0.0:9090"))
        admin_port = port_of(cfg.get("admin_listen", "0.0.0.0:9091"))
        c.check(grpc_port in ports.values(), f"{who}: container exposes listen port {grpc_port}")
        c.check(admin_port in ports.values(), f"{who}: container exposes admin_listen port {admin_port}")
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            get = ctr.get(probe, {}).get("httpGet", {})
            port = ports.get(get.get("port"), get.get("port"))
            c.check(get.get("path") == path and port == admin_port, f"{who}: {probe} {path} on the admin port")
        stop = cfg.get("shutdown_delay_seconds", 0) + cfg.get("shutdown_grace_seconds", 10)
        grace = pod.get("terminationGracePeriodSeconds", 30)
        c.check(grace > stop, f"{who}: terminationGracePeriodSeconds above shutdown delay + grace",
                f"{grace} > {stop}")
        c.check(cfg.get("shutdown_delay_seconds", 0) > 0, f"{who}: shutdown_delay_seconds > 0 so endpoints drain")

    # Objects that select these pods.
    for kind in ("Service", "PodDisruptionBudget", "NetworkPolicy", "PeerAuthentication"):
        for (k, ons, oname), o in objs.items():
            if k != kind or ons != ns:
                continue
            sel = (o["spec"].get("selector") if kind == "Service" else
                   o["spec"].get("podSelector", {}).get("matchLabels") if kind == "NetworkPolicy" else
                   (o["spec"].get("selector") or {}).get("matchLabels"))
            if kind == "PeerAuthentication" and sel is None:
                continue  # namespace-wide
            c.check(matches(sel, labels), f"{name_of(o)}: selects the portcullis pods")
    svc = objs.get(("Service", ns, dep["metadata"]["name"]))
    if c.check(svc is not None, f"{who}: Service of the same name"):
        for p in svc["spec"]["ports"]:
            tp = p.get("targetPort", p["port"])
            c.check(tp in ports or tp in ports.values(), f"{name_of(svc)}: port {p['name']} targets a container port")
        grpc = next((p for p in svc["spec"]["ports"] if p["name"] == "grpc"), None)
        c.check(grpc is not None and grpc.get("appProtocol") == "grpc",
                f"{name_of(svc)}: port `grpc` has appProtocol grpc")
    if hpa:
        ref = hpa["spec"]["scaleTargetRef"]
        c.check(ref["kind"] == "Deployment" and ref["name"] == dep["metadata"]["name"],
                f"{name_of(hpa)}: targets {who}")
        c.check(hpa["spec"].get("minReplicas", 1) >= 2, f"{name_of(hpa)}: minReplicas >= 2")
        for m in hpa["spec"].get("metrics", []):
            if m["type"] == "ContainerResource":
                c.check(m["containerResource"]["container"] in [x["name"] for x in pod["containers"]],
                        f"{name_of(hpa)}: container {m['containerResource']['container']} exists")
    # STRICT for pods in the mesh: namespace-wide (istio/base) or selecting these pods (the
    # chart, which shares its namespace with whatever else the user runs there).
    if labels.get("sidecar.istio.io/inject") == "true":
        pa = [o for (k, ons, _), o in objs.items() if k == "PeerAuthentication" and ons == ns]
        c.check(any(o["spec"].get("mtls", {}).get("mode") == "STRICT"
                    and (not o["spec"].get("selector") or matches(o["spec"]["selector"].get("matchLabels"), labels))
                    for o in pa), f"{who}: a STRICT PeerAuthentication covers the pods (namespace {ns})")


def mesh_checks(c, meshes, policies, services):
    """meshes: [(origin, MeshConfig dict)]; every CUSTOM policy names a gRPC provider that points
    at a Service we deploy, fails closed and has a valid statusOnError."""
    providers = {}
    for origin, mesh in meshes:
        for p in mesh.get("extensionProviders", []):
            if PROVIDER_KEY in p:
                providers.setdefault(p["name"], []).append((origin, p[PROVIDER_KEY]))
    for name, defs in providers.items():
        for origin, g in defs:
            svc = services.get(g.get("service"))
            c.check(svc is not None, f"{origin}: provider {name} service {g.get('service')} is a deployed Service",
                    "known: " + ", ".join(sorted(services)))
            if svc:
                ports = {p["port"]: p for p in svc["spec"]["ports"]}
                c.check(g.get("port") in ports and ports[g["port"]].get("appProtocol") == "grpc",
                        f"{origin}: provider {name} port {g.get('port')} is the Service's gRPC port")
            c.check(g.get("failOpen", False) is False, f"{origin}: provider {name} fails closed (failOpen false)")
            status = g.get("statusOnError")
            ok = status is None or (str(status).isdigit() and int(status) in http.HTTPStatus._value2member_map_)
            c.check(ok, f"{origin}: provider {name} statusOnError is an HTTP status", str(status))
            c.check("timeout" in g, f"{origin}: provider {name} sets a timeout (Istio's default is 600s)")
        c.check(all(d[1] == defs[0][1] for d in defs), f"provider {name}: identical in every mesh config form",
                ", ".join(o for o, _ in defs))
    for origin, ap in policies:
        spec = ap.get("spec", {})
        if spec.get("action") == "CUSTOM":
            pname = spec.get("provider", {}).get("name")
            c.check(pname in providers, f"{origin}: {name_of(ap)} provider {pname} is a gRPC extension provider")


class State:
    def __init__(self, work):
        self.plan = Plan(work)
        self.objs = {}            # (kind, namespace, name) -> object
        self.meshes = []          # (origin, MeshConfig)
        self.policies = []        # (origin, AuthorizationPolicy)
        self.services = {}        # FQDN -> Service
        self.portcullis_cfgs = {}  # (namespace, ConfigMap name) -> (origin, text, parsed)
        self.unknown = []


def embedded(c, text, origin):
    """A YAML document held in a string (ConfigMap value, annotation)."""
    try:
        docs = load_all(text, origin)
    except SystemExit as exc:
        c.check(False, str(exc).removeprefix("FAIL "))
        return None
    if not c.check(len(docs) == 1 and isinstance(docs[0], dict), f"{origin}: one YAML mapping"):
        return None
    return docs[0]


def sort_doc(c, st, origin, doc):
    kind, meta = doc.get("kind"), doc.get("metadata") or {}
    ns = meta.get("namespace")
    key = (kind, ns, meta.get("name"))
    if key in st.objs:
        c.check(False, f"{origin}: {name_of(doc)} defined once")
    st.objs[key] = doc
    schema = schema_for(doc)
    label = f"{kind}-{meta.get('name')}"
    if schema == "k8s":
        st.plan.write("k8s", origin, label, doc)
    elif schema:
        st.plan.write(f"schema/{schema}", origin, label, doc)
    else:
        st.unknown.append(f"{origin}: {doc.get('apiVersion')} {kind}")
    data = (doc.get("data") or {}) if kind == "ConfigMap" else {}
    if kind == "IstioOperator":
        st.meshes.append((f"{origin} spec.meshConfig", (doc.get("spec") or {}).get("meshConfig") or {}))
    if "mesh" in data:
        mesh = embedded(c, data["mesh"], f"{origin} data.mesh")
        if mesh is not None:
            st.plan.write("schema/meshconfig.json", origin, f"{label}-data.mesh", mesh)
            st.meshes.append((f"{origin} data.mesh", mesh))
    if "portcullis.yaml" in data:
        # check-config reads the text itself; the parsed copy feeds the cross-checks.
        cfg = embedded(c, data["portcullis.yaml"], f"{origin} data.portcullis.yaml")
        st.portcullis_cfgs[(ns, meta.get("name"))] = (origin, data["portcullis.yaml"], cfg)
    if kind == "AuthorizationPolicy":
        st.policies.append((origin, doc))
    if kind == "Service":
        st.services[f"{meta.get('name')}.{ns}.svc.cluster.local"] = doc
    if kind in ("Deployment", "StatefulSet", "DaemonSet"):
        ann = doc["spec"]["template"].get("metadata", {}).get("annotations", {})
        if "proxy.istio.io/config" in ann:
            pc = embedded(c, ann["proxy.istio.io/config"], f"{origin} proxy.istio.io/config")
            if pc is not None:
                st.plan.write("schema/proxyconfig.json", origin, f"{label}-proxy.istio.io-config", pc)


def prepare(istio_dir, work):
    items, renderers = collect(istio_dir)
    with open(os.path.join(work, "renderer"), "w") as fh:
        fh.write("; ".join(renderers) or "none")
    c, st = Checks(), State(work)
    for origin, doc in items:
        if c.check(isinstance(doc, dict) and isinstance(doc.get("metadata", {}), dict),
                   f"{origin}: every YAML document is an object with a metadata mapping"):
            guarded(c, f"{origin}: {name_of(doc)}", sort_doc, c, st, origin, doc)
    c.check(not st.unknown, "every object has a validator", "; ".join(st.unknown))

    deployments = [o for (k, _, _), o in st.objs.items() if k == "Deployment"]
    c.check(bool(deployments), "a Deployment is defined")
    for dep in deployments:
        guarded(c, name_of(dep), portcullis_deployment, c, st.plan, dep, st.objs, st.portcullis_cfgs)
    c.check(bool(st.meshes), "a mesh config (IstioOperator or istio ConfigMap) registers the provider")
    c.check(any((p.get("spec") or {}).get("action") == "CUSTOM" for _, p in st.policies),
            "a CUSTOM AuthorizationPolicy exists")
    guarded(c, "mesh wiring", mesh_checks, c, st.meshes, st.policies, st.services)
    print(f"{c.passed} cross-checks passed, {c.failed} failed")
    return 1 if c.failed else 0


def portcullis_deployment(c, plan, dep, objs, portcullis_cfgs):
    """Hand its portcullis config (with the container's env) to check-config; check the rest."""
    ns = dep["metadata"].get("namespace")
    pod = dep["spec"]["template"]["spec"]
    ctr = next((x for x in pod["containers"] if x["name"] == "portcullis"), {})
    vols = {v["name"]: v for v in pod.get("volumes", [])}
    cfg, found = None, False
    for m in ctr.get("volumeMounts", []):
        cm = vols.get(m["name"], {}).get("configMap", {}).get("name")
        if (ns, cm) in portcullis_cfgs:
            found = True
            origin, text, cfg = portcullis_cfgs[(ns, cm)]
            path = plan.write("portcullis", origin, f"ConfigMap-{cm}", text, ext="yaml")
            env = [f"{e['name']}={e['value']}" for e in ctr.get("env", [])
                   if "value" in e and e["name"].startswith(PORTCULLIS_ENV)]
            with open(path[:-len(".yaml")] + ".env", "w") as fh:
                fh.write("".join(line + "\n" for line in env))
    c.check(found, f"{name_of(dep)}: mounts a ConfigMap with key portcullis.yaml")
    deployment_checks(c, dep, objs, cfg)


def guarded(c, what, fn, *args):
    """A malformed object (wrong types, missing keys) is a failed check, not a traceback;
    the schema validators report the precise cause."""
    try:
        fn(*args)
    except (KeyError, TypeError, AttributeError, ValueError, IndexError) as exc:
        c.check(False, f"{what}: cross-checks could not read the object",
                f"{type(exc).__name__}: {exc}")


def main():
    if len(sys.argv) != 4 or sys.argv[1] != "prepare":
        sys.exit(__doc__)
    sys.exit(prepare(os.path.abspath(sys.argv[2]), os.path.abspath(sys.argv[3])))


if __name__ == "__main__":
    main()
