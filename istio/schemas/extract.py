#!/usr/bin/env python3
"""Build the JSON schemas that istio/validate.sh hands to check-jsonschema.

    python3 extract.py --out DIR [--models-wheel WHEEL]

validate.sh runs it on every validation, into a temporary directory; nothing it writes is
committed. Standard library only.

--models-wheel is the wheel of the PyPI package cloudcoil-models-istio (pinned and
checked by sha256 in validate.sh). Its module cloudcoil/models/istio/security/v1.py holds
pydantic models that the package's authors generate from Istio's CRD definitions
(crd-all.gen.yaml of the Istio release in the package version). It is read as data, with
`ast`, never imported (importing it would need cloudcoil and a Kubernetes client), and
turned into:

* <kind>.security.istio.io_v1.json for AuthorizationPolicy and PeerAuthentication: the
  spec of the CRD as the models give it (field names, required fields, enums, patterns,
  lengths), with
  - every object closed with `additionalProperties: false`, so that a typo is an error
    (the API server would prune it, istiod would ignore it);
  - Optional fields that may be absent but not null;
  - the CRD's CEL rules, which the models do not carry, written again by hand in RULES;
  - an envelope: apiVersion and kind as constants (checked against the models), a small
    closed `metadata`, and no `status` (a manifest to apply has none).
  A construct of the models that this script does not know stops it, as does a RULES path
  that is not in the schema, so a new package version cannot silently weaken a check.

Without --models-wheel only the hand-written schemas below are written.

No registry package ships Istio's MeshConfig/ProxyConfig protos, and IstioOperator has no
CRD, so meshconfig.json, proxyconfig.json and istiooperator.install.istio.io_v1alpha1.json
are written here by hand from Istio's reference documentation: closed schemas of exactly
the fields this deployment uses (or its comments suggest enabling). A field outside them
is rejected, even a valid one: add it to MESH/PROXY here when you start using it.
"""

import argparse
import ast
import hashlib
import json
import os
import re
import sys
import zipfile

DRAFT = "https://json-schema.org/draft/2020-12/schema"
MODULE = "cloudcoil/models/istio/security/v1.py"
GROUP_VERSION = "security.istio.io/v1"
KINDS = ["AuthorizationPolicy", "PeerAuthentication"]

NO_STAR = "^[^*]*$"
PORT_NUMBER = "^0*([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])$"


def _req(*names):
    return {"required": list(names)}


# Istio's CEL rules (x-kubernetes-validations) for the two kinds, as JSON Schema, at a path
# in the kind's schema ("[]" = the items of an array). Written from the CRD definitions'
# rules: the models lost them. Each is added with allOf, next to what the models give.
NO_STAR_LABELS = {  # matchLabels: no empty key, no "*" in keys or values
    "propertyNames": {"minLength": 1, "pattern": NO_STAR},
    "additionalProperties": {"pattern": NO_STAR},
}
RULES = {
    "AuthorizationPolicy": {
        # at most one of selector / targetRef / targetRefs
        "spec": {"not": {"anyOf": [_req("selector", "targetRef"), _req("selector", "targetRefs"),
                                   _req("targetRef", "targetRefs")]}},
        "spec.selector.matchLabels": NO_STAR_LABELS,
        # cross-namespace references are not supported: namespace must be empty
        "spec.targetRef.namespace": {"maxLength": 0},
        "spec.targetRefs.[].namespace": {"maxLength": 0},
    },
    "PeerAuthentication": {
        # portLevelMtls needs a non-empty selector.matchLabels
        "spec": {"if": _req("portLevelMtls"),
                 "then": {"required": ["selector"],
                          "properties": {"selector": {"required": ["matchLabels"],
                                                      "properties": {"matchLabels": {"minProperties": 1}}}}}},
        "spec.selector.matchLabels": NO_STAR_LABELS,
        # keys are port numbers 1-65535, and at least one
        "spec.portLevelMtls": {"minProperties": 1, "propertyNames": {"pattern": PORT_NUMBER}},
    },
}

# What a manifest we apply may carry in metadata. Deliberately narrower than ObjectMeta.
METADATA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "maxLength": 253,
                 "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"},
        "namespace": {"type": "string", "maxLength": 63,
                      "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}


def fail(msg):
    sys.exit(f"extract.py: {msg}")


# ------------------------------------------------------------ pydantic models -> JSON Schema

SCALARS = {"str": "string", "int": "integer", "bool": "boolean", "float": "number"}
# pydantic Field() keyword -> JSON Schema keyword, by the JSON type it constrains
FIELD_KEYWORDS = {
    ("max_length", "string"): "maxLength", ("min_length", "string"): "minLength",
    ("max_length", "array"): "maxItems", ("min_length", "array"): "minItems",
    ("max_length", "object"): "maxProperties", ("min_length", "object"): "minProperties",
    ("pattern", "string"): "pattern",
    ("ge", "integer"): "minimum", ("le", "integer"): "maximum",
}


class Models:
    """The classes of one generated pydantic module, read with ast."""

    def __init__(self, source):
        tree = ast.parse(source)
        self.classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
        self.building = []

    def fields(self, name):
        """(python name, annotation, has default, default) of each field of class `name`."""
        for st in self.classes[name].body:
            if isinstance(st, ast.AnnAssign):
                try:
                    default = ast.literal_eval(st.value) if st.value is not None else None
                except ValueError:
                    fail(f"{name}.{st.target.id}: unsupported default {ast.unparse(st.value)}")
                yield st.target.id, st.annotation, st.value is not None, default

    def klass(self, name):
        if name in self.building:
            fail(f"recursive model {' -> '.join([*self.building, name])}")
        self.building.append(name)
        try:
            bases = [ast.unparse(b) for b in self.classes[name].bases]
            if any(b.startswith("RootModel[") for b in bases):
                (_, ann, _, _), = self.fields(name)
                return self.annotation(ann, name)
            if bases != ["BaseModel"]:
                fail(f"{name}: unsupported bases {bases}")
            props, required = {}, []
            for py_name, ann, has_default, default in self.fields(name):
                schema, alias = self.field(ann, f"{name}.{py_name}")
                if has_default and default is not None:
                    fail(f"{name}.{py_name}: unsupported default {default!r}")
                props[alias or py_name] = schema
                if not has_default:
                    required.append(alias or py_name)
            out = {"type": "object", "additionalProperties": False, "properties": props}
            if required:
                out["required"] = required
            return out
        finally:
            self.building.pop()

    def field(self, ann, where):
        """Schema and JSON name (alias) of Annotated[X, Field(...)] or of a bare X."""
        if not (isinstance(ann, ast.Subscript) and ast.unparse(ann.value) == "Annotated"):
            return self.annotation(ann, where), None
        inner, call = ann.slice.elts
        if not (isinstance(call, ast.Call) and ast.unparse(call.func) == "Field" and not call.args):
            fail(f"{where}: unsupported Annotated metadata {ast.unparse(call)}")
        schema = self.annotation(inner, where)
        alias = None
        for kw in call.keywords:
            value = ast.literal_eval(kw.value)
            if kw.arg == "alias":
                alias = value
            elif kw.arg == "title":
                continue  # documentation only
            elif (kw.arg, schema.get("type")) in FIELD_KEYWORDS:
                schema[FIELD_KEYWORDS[(kw.arg, schema.get("type"))]] = value
            else:
                fail(f"{where}: unsupported Field({kw.arg}=...) on {schema}")
        return schema, alias

    def annotation(self, ann, where):
        if isinstance(ann, ast.Constant) and isinstance(ann.value, str):
            ann = ast.parse(ann.value, mode="eval").body  # forward reference
        if isinstance(ann, ast.Name):
            if ann.id in SCALARS:
                return {"type": SCALARS[ann.id]}
            if ann.id in self.classes:
                return self.klass(ann.id)
        if isinstance(ann, ast.Subscript):
            head = ast.unparse(ann.value)
            args = ann.slice.elts if isinstance(ann.slice, ast.Tuple) else [ann.slice]
            if head == "Optional":
                return self.annotation(args[0], where)  # may be absent; null is not allowed
            if head == "List":
                return {"type": "array", "items": self.annotation(args[0], where)}
            if head == "Dict" and ast.unparse(args[0]) == "str":
                return {"type": "object", "additionalProperties": self.annotation(args[1], where)}
            if head == "Union":
                return {"anyOf": [self.annotation(a, where) for a in args]}
            if head == "Literal":
                values = [ast.literal_eval(a) for a in args]
                if all(isinstance(v, str) for v in values):
                    return {"type": "string", "enum": values}
            if head == "Annotated":
                schema, alias = self.field(ann, where)
                if alias is None:
                    return schema
        fail(f"{where}: unsupported annotation {ast.unparse(ann)}")

    def resource(self, kind):
        """The spec schema of a Resource class, after checking its apiVersion and kind."""
        if kind not in self.classes:
            fail(f"{kind} not found in {MODULE}")
        fields = {py: (ann, default) for py, ann, _, default in self.fields(kind)}
        if (fields.get("api_version", (None, None))[1], fields.get("kind", (None, None))[1]) != (GROUP_VERSION, kind):
            fail(f"{kind}: not a {GROUP_VERSION} resource in {MODULE}")
        return self.field(fields["spec"][0], f"{kind}.spec")[0]


def nodes_at(schema, path, where):
    """The schema nodes at a dotted path; "[]" steps into array items, anyOf branches are
    followed. Fails when the path leads nowhere, so a RULES entry cannot go stale quietly."""
    nodes = [schema]
    for step in path.split("."):
        found = []
        for node in nodes:
            for branch in node.get("anyOf", [node]):
                if step == "[]" and "items" in branch:
                    found.append(branch["items"])
                elif step in branch.get("properties", {}):
                    found.append(branch["properties"][step])
        if not found:
            fail(f"{where}: RULES path {path!r} is not in the schema")
        nodes = found
    return nodes


def crd_schemas(wheel):
    with open(wheel, "rb") as fh:
        digest = hashlib.sha256(fh.read()).hexdigest()
    with zipfile.ZipFile(wheel) as zf:
        meta = next((n for n in zf.namelist() if n.endswith(".dist-info/METADATA")), None)
        if meta is None or MODULE not in zf.namelist():
            fail(f"{wheel}: not a cloudcoil-models-istio wheel (no {MODULE})")
        version = re.search(r"^Version: (\S+)$", zf.read(meta).decode(), re.MULTILINE).group(1)
        models = Models(zf.read(MODULE).decode())
    out = {}
    for kind in KINDS:
        spec = models.resource(kind)
        schema = {
            "$schema": DRAFT,
            "$comment": (f"Generated by istio/schemas/extract.py from PyPI cloudcoil-models-istio {version} "
                         f"(sha256 {digest}), {MODULE} {kind}: models generated from Istio's CRD "
                         "definitions. Closed with additionalProperties:false; CEL rules added by hand. "
                         "Do not edit."),
            "title": f"{kind} {GROUP_VERSION}",
            "type": "object",
            "additionalProperties": False,
            "required": ["apiVersion", "kind", "metadata"],
            "properties": {
                "apiVersion": {"const": GROUP_VERSION},
                "kind": {"const": kind},
                "metadata": METADATA,
                "spec": spec,
            },
        }
        for path, rule in RULES[kind].items():
            for node in nodes_at(schema, path, kind):
                node.setdefault("allOf", []).append(rule)
        out[f"{kind.lower()}.{GROUP_VERSION.replace('/', '_')}.json"] = schema
    return out


# ------------------------------------------------ mesh config, proxy config: by hand

def closed(properties, required=()):
    out = {"type": "object", "additionalProperties": False, "properties": properties}
    if required:
        out["required"] = list(required)
    return out


STRING, BOOL = {"type": "string"}, {"type": "boolean"}
UINT32 = {"type": "integer", "minimum": 0, "maximum": 2**32 - 1}
# google.protobuf.Duration in the proto3 JSON mapping: seconds with an "s" ("0.5s"); istiod
# rejects "500ms".
DURATION = {"type": "string", "pattern": "^-?[0-9]+(\\.[0-9]{1,9})?s$"}

# istio.mesh.v1alpha1.MeshConfig, only what this deployment sets. Names are the camelCase
# JSON names (istiod also takes snake_case; we do not).
GRPC_PROVIDER = closed({  # MeshConfig.ExtensionProvider.EnvoyExternalAuthorizationGrpcProvider
    "service": STRING,
    "port": UINT32,
    "timeout": DURATION,
    "failOpen": BOOL,
    "statusOnError": STRING,
    "includeRequestBodyInCheck": closed({  # ...EnvoyExternalAuthorizationRequestBody
        "maxRequestBytes": UINT32, "allowPartialMessage": BOOL, "packAsBytes": BOOL}),
}, required=["service", "port"])
MESH = closed({
    "extensionProviders": {"type": "array", "items": closed(
        {"name": STRING, "envoyExtAuthzGrpc": GRPC_PROVIDER}, required=["name", "envoyExtAuthzGrpc"])},
    "pathNormalization": closed({"normalization": {
        "type": "string", "enum": ["DEFAULT", "NONE", "BASE", "MERGE_SLASHES", "DECODE_AND_MERGE_SLASHES"]}}),
})
# istio.mesh.v1alpha1.ProxyConfig (the proxy.istio.io/config annotation), same rule.
PROXY = closed({"holdApplicationUntilProxyStarts": BOOL, "terminationDrainDuration": DURATION})
# IstioOperatorSpec (istioctl's install file; no CRD since the in-cluster operator went):
# every top-level key, meshConfig as above, the Helm pass-through parts left to istioctl.
ISTIOOPERATOR_SPEC = closed({
    "profile": STRING, "installPackagePath": STRING, "hub": STRING, "tag": {},
    "namespace": STRING, "revision": STRING, "compatibilityVersion": STRING,
    "meshConfig": MESH, "components": {"type": "object"}, "values": {"type": "object"},
    "unvalidatedValues": {},
})

HAND_WRITTEN = "Written by hand in istio/schemas/extract.py from Istio's reference documentation"


def hand_written_schemas():
    def doc(title, body):
        return {"$schema": DRAFT, "$comment": f"{HAND_WRITTEN}: only the fields this deployment uses. "
                "Do not edit; change extract.py.", "title": title, **body}
    return {
        "meshconfig.json": doc("Istio MeshConfig (subset)", MESH),
        "proxyconfig.json": doc("Istio ProxyConfig, proxy.istio.io/config annotation (subset)", PROXY),
        "istiooperator.install.istio.io_v1alpha1.json": doc(
            "IstioOperator install.istio.io/v1alpha1 (istioctl install file)",
            closed({"apiVersion": {"const": "install.istio.io/v1alpha1"},
                    "kind": {"const": "IstioOperator"},
                    "metadata": METADATA,
                    "spec": ISTIOOPERATOR_SPEC}, required=["apiVersion", "kind", "spec"])),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--models-wheel", help="cloudcoil-models-istio wheel (omit: hand-written schemas only)")
    args = ap.parse_args()
    files = hand_written_schemas()
    if args.models_wheel:
        files.update(crd_schemas(args.models_wheel))
    os.makedirs(args.out, exist_ok=True)
    for name, schema in sorted(files.items()):
        with open(os.path.join(args.out, name), "w") as fh:
            json.dump(schema, fh, indent=1, sort_keys=True)
            fh.write("\n")
        print(f"wrote {name}")


if __name__ == "__main__":
    main()
