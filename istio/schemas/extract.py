#!/usr/bin/env python3
"""Regenerate the vendored JSON schemas in this directory from Istio's own sources.

Not run by validate.sh: the schemas are committed, so validation needs neither the
network nor these inputs. Run it when moving to a new Istio release (see README.md):

    python3 extract.py --istio-api DIR --istio DIR [--out DIR]

  --istio-api  a checkout of the istio/api repository at the wanted commit
  --istio      a checkout of the istio/istio repository at the matching release
               (only operator/pkg/apis/types.go is read, for the IstioOperator spec keys)

Needs PyYAML, and grpcio-tools (which bundles protoc) for the MeshConfig/ProxyConfig schemas.

What it produces, and how each schema is made stricter than the Kubernetes API server
(which prunes unknown fields instead of failing, unless a client asks for strict field
validation) so that a typo is an error here:

* <kind>.<group>_<version>.json for AuthorizationPolicy and PeerAuthentication:
  the openAPIV3Schema of the *storage* version from
  kubernetes/customresourcedefinitions.gen.yaml, with
  - every object that lists `properties` (and is not x-kubernetes-preserve-unknown-fields)
    closed with `additionalProperties: false`;
  - `description` and the `x-kubernetes-*` extension keys removed;
  - each CEL rule (`x-kubernetes-validations`) replaced by a hand-written JSON Schema
    equivalent from CEL_EQUIVALENTS below; a rule not in that table stops the extraction,
    so a new Istio release cannot silently drop a check;
  - an envelope: apiVersion and kind as constants, and a small closed `metadata` schema.
* meshconfig.json / proxyconfig.json: generated from the protobuf descriptors of
  mesh/v1alpha1/config.proto (MeshConfig, and ProxyConfig for the `proxy.istio.io/config`
  pod annotation), using the proto3 JSON mapping with camelCase names only.
* istiooperator.install.istio.io_v1alpha1.json: IstioOperator is no CRD any more (the in-cluster
  operator is gone; istioctl reads the file), so its envelope is built here from the JSON tags
  of IstioOperatorSpec in istio/istio operator/pkg/apis/types.go, with spec.meshConfig pointing
  at the MeshConfig schema and the Helm pass-through fields (values, components, ...) left open.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from typing import ClassVar

import yaml

DRAFT = "https://json-schema.org/draft/2020-12/schema"

CRDS = "kubernetes/customresourcedefinitions.gen.yaml"
CRD_KINDS = ["AuthorizationPolicy", "PeerAuthentication"]

# Keywords we know how to carry over from a CRD's structural schema into JSON Schema
# 2020-12 unchanged. Anything else (nullable, boolean exclusiveMinimum, ...) stops the run.
PASSTHROUGH = {
    "type", "properties", "items", "required", "enum", "pattern", "format",
    "minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties",
    "minimum", "maximum", "oneOf", "anyOf", "allOf", "not", "additionalProperties",
}
DROPPED = {"description", "x-kubernetes-int-or-string", "x-kubernetes-preserve-unknown-fields",
           "x-kubernetes-validations", "x-kubernetes-list-type", "x-kubernetes-map-type"}

NO_STAR = "^[^*]*$"
PORT_NUMBER = "^0*([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])$"


def _req(*names):
    return {"required": list(names)}


# CEL rule text (whitespace collapsed) -> JSON Schema that says the same thing (or a function
# of the schema node carrying the rule, where the equivalent depends on its type).
CEL_EQUIVALENTS = {
    # spec: at most one of selector / targetRef / targetRefs
    "(has(self.selector) ? 1 : 0) + (has(self.targetRef) ? 1 : 0) + (has(self.targetRefs) ? 1 : 0) <= 1": {
        "not": {"anyOf": [_req("selector", "targetRef"), _req("selector", "targetRefs"),
                          _req("targetRef", "targetRefs")]}
    },
    # source: serviceAccounts/notServiceAccounts exclude namespaces and principals
    "(has(self.serviceAccounts) || has(self.notServiceAccounts)) ? (!has(self.principals) && "
    "!has(self.notPrincipals) && !has(self.namespaces) && !has(self.notNamespaces)) : true": {
        "if": {"anyOf": [_req("serviceAccounts"), _req("notServiceAccounts")]},
        "then": {"not": {"anyOf": [_req("principals"), _req("notPrincipals"),
                                   _req("namespaces"), _req("notNamespaces")]}},
    },
    'self.all(key, !key.contains("*"))': {"propertyNames": {"pattern": NO_STAR}},
    "self.all(key, key.size() != 0)": {"propertyNames": {"minLength": 1}},
    '!self.contains("*")': {"pattern": NO_STAR},
    "self.size() == 0": lambda node: {"string": {"maxLength": 0}, "array": {"maxItems": 0},
                                      "object": {"maxProperties": 0}}[node["type"]],
    # PeerAuthentication: portLevelMtls needs a non-empty selector.matchLabels
    "has(self.portLevelMtls) ? (((has(self.selector) && has(self.selector.matchLabels)) ? "
    "self.selector.matchLabels : {}).size() > 0) : true": {
        "if": _req("portLevelMtls"),
        "then": {"required": ["selector"],
                 "properties": {"selector": {"required": ["matchLabels"],
                                             "properties": {"matchLabels": {"minProperties": 1}}}}},
    },
    "self.all(key, 0 < int(key) && int(key) <= 65535)": {"propertyNames": {"pattern": PORT_NUMBER}},
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


def git_head(repo):
    try:
        return subprocess.run(["git", "-C", repo, "rev-parse", "HEAD"], check=True,
                              capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


# --------------------------------------------------------------------------- CRDs

def convert_crd_node(node, where):
    """Return a JSON Schema for one structural-schema node."""
    if not isinstance(node, dict):
        fail(f"{where}: unexpected schema node {node!r}")
    unknown = set(node) - PASSTHROUGH - DROPPED
    if unknown:
        fail(f"{where}: unsupported keywords {sorted(unknown)}")
    out = {}
    for key, val in node.items():
        if key in DROPPED:
            continue
        if key == "properties":
            out[key] = {k: convert_crd_node(v, f"{where}.{k}") for k, v in val.items()}
        elif key == "items" or (key == "additionalProperties" and isinstance(val, dict)) or key == "not":
            out[key] = convert_crd_node(val, f"{where}[{key}]")
        elif key in ("oneOf", "anyOf", "allOf"):
            out[key] = [convert_crd_node(v, f"{where}[{key}]") for v in val]
        else:
            out[key] = val
    open_object = node.get("x-kubernetes-preserve-unknown-fields") is True
    if node.get("type") == "object" and not open_object and "additionalProperties" not in node:
        out["additionalProperties"] = False
    cel = []
    for rule in node.get("x-kubernetes-validations", []):
        text = " ".join(rule["rule"].split())
        if text not in CEL_EQUIVALENTS:
            fail(f"{where}: no JSON Schema equivalent for CEL rule {text!r}; add one to CEL_EQUIVALENTS")
        equivalent = CEL_EQUIVALENTS[text]
        cel.append(equivalent(node) if callable(equivalent) else equivalent)
    if cel:
        out.setdefault("allOf", []).extend(cel)
    return out


def crd_schemas(api_dir, commit):
    with open(os.path.join(api_dir, CRDS)) as fh:
        docs = [d for d in yaml.safe_load_all(fh) if d]
    out = {}
    for kind in CRD_KINDS:
        crd = next((d for d in docs if d["spec"]["names"]["kind"] == kind), None)
        if crd is None:
            fail(f"{kind} not found in {CRDS}")
        group = crd["spec"]["group"]
        version = next(v for v in crd["spec"]["versions"] if v.get("storage"))
        if not version.get("served"):
            fail(f"{kind} storage version {version['name']} is not served")
        body = convert_crd_node(version["schema"]["openAPIV3Schema"], kind)
        body.pop("type", None)
        body["properties"] = {
            "apiVersion": {"const": f"{group}/{version['name']}"},
            "kind": {"const": kind},
            "metadata": METADATA,
            **body["properties"],
        }
        schema = {
            "$schema": DRAFT,
            "$comment": (f"Generated by istio/schemas/extract.py from istio/api@{commit} {CRDS}, "
                         f"CRD {crd['metadata']['name']}, version {version['name']} (served, storage). "
                         "Closed with additionalProperties:false; CEL rules translated. Do not edit."),
            "title": f"{kind} {group}/{version['name']}",
            "type": "object",
            "required": ["apiVersion", "kind", "metadata"],
            **body,
            "additionalProperties": False,
        }
        out[f"{kind.lower()}.{group}_{version['name']}.json"] = schema
    return out


# ----------------------------------------------------------------- protobuf -> JSON

def descriptor_set(api_dir):
    try:
        import grpc_tools
        from google.protobuf import descriptor_pb2
        from grpc_tools import protoc
    except ImportError:
        fail("needs grpcio-tools (pip install grpcio-tools)")
    wkt = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "mesh.pb")
        rc = protoc.main(["protoc", f"-I{api_dir}", f"-I{os.path.join(api_dir, 'common-protos')}",
                          f"-I{wkt}", "--include_imports", f"--descriptor_set_out={out}",
                          os.path.join(api_dir, "mesh/v1alpha1/config.proto")])
        if rc != 0:
            fail("protoc failed")
        fds = descriptor_pb2.FileDescriptorSet()
        with open(out, "rb") as fh:
            fds.ParseFromString(fh.read())
    return fds


class ProtoJson:
    """proto3 JSON mapping -> JSON Schema, one $defs entry per message/enum reached."""

    INT32: ClassVar[dict] = {"type": "integer", "minimum": -2**31, "maximum": 2**31 - 1}
    UINT32: ClassVar[dict] = {"type": "integer", "minimum": 0, "maximum": 2**32 - 1}
    INT64: ClassVar[dict] = {"anyOf": [{"type": "integer"}, {"type": "string", "pattern": "^-?[0-9]+$"}]}
    UINT64: ClassVar[dict] = {"anyOf": [{"type": "integer", "minimum": 0}, {"type": "string", "pattern": "^[0-9]+$"}]}
    WELL_KNOWN: ClassVar[dict] = {
        ".google.protobuf.Duration": {"type": "string", "pattern": "^-?[0-9]+(\\.[0-9]{1,9})?s$"},
        ".google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
        ".google.protobuf.Struct": {"type": "object"},
        ".google.protobuf.Value": {},
        ".google.protobuf.ListValue": {"type": "array"},
        ".google.protobuf.Any": {"type": "object", "required": ["@type"]},
        ".google.protobuf.Empty": {"type": "object", "maxProperties": 0},
        ".google.protobuf.FieldMask": {"type": "string"},
        ".google.protobuf.BoolValue": {"type": "boolean"},
        ".google.protobuf.StringValue": {"type": "string"},
        ".google.protobuf.BytesValue": {"type": "string"},
        ".google.protobuf.DoubleValue": {"type": "number"},
        ".google.protobuf.FloatValue": {"type": "number"},
        ".google.protobuf.Int32Value": INT32,
        ".google.protobuf.UInt32Value": UINT32,
        ".google.protobuf.Int64Value": INT64,
        ".google.protobuf.UInt64Value": UINT64,
    }

    def __init__(self, fds):
        from google.protobuf import descriptor_pb2 as d
        self.F = d.FieldDescriptorProto
        self.messages, self.enums = {}, {}
        for f in fds.file:
            prefix = "." + f.package if f.package else ""
            for m in f.message_type:
                self._index(m, prefix)
            for e in f.enum_type:
                self.enums[f"{prefix}.{e.name}"] = e
        self.defs = {}

    def _index(self, msg, prefix):
        name = f"{prefix}.{msg.name}"
        self.messages[name] = msg
        for nested in msg.nested_type:
            self._index(nested, name)
        for e in msg.enum_type:
            self.enums[f"{name}.{e.name}"] = e

    def ref(self, type_name):
        return {"$ref": "#/$defs/" + type_name.lstrip(".")}

    def scalar(self, field):
        F = self.F
        t = field.type
        if t == F.TYPE_STRING or t == F.TYPE_BYTES:
            return {"type": "string"}
        if t == F.TYPE_BOOL:
            return {"type": "boolean"}
        if t in (F.TYPE_INT32, F.TYPE_SINT32, F.TYPE_SFIXED32):
            return dict(self.INT32)
        if t in (F.TYPE_UINT32, F.TYPE_FIXED32):
            return dict(self.UINT32)
        if t in (F.TYPE_INT64, F.TYPE_SINT64, F.TYPE_SFIXED64):
            return dict(self.INT64)
        if t in (F.TYPE_UINT64, F.TYPE_FIXED64):
            return dict(self.UINT64)
        if t in (F.TYPE_DOUBLE, F.TYPE_FLOAT):
            return {"type": "number"}
        if t == F.TYPE_ENUM:
            self.enum(field.type_name)
            return self.ref(field.type_name)
        if t == F.TYPE_MESSAGE:
            if field.type_name in self.WELL_KNOWN:
                return dict(self.WELL_KNOWN[field.type_name])
            self.message(field.type_name)
            return self.ref(field.type_name)
        fail(f"unsupported field type {t} for {field.name}")

    def enum(self, type_name):
        key = type_name.lstrip(".")
        if key not in self.defs:
            self.defs[key] = {"type": "string", "enum": [v.name for v in self.enums[type_name].value]}

    def message(self, type_name):
        key = type_name.lstrip(".")
        if key in self.defs:
            return
        msg = self.messages[type_name]
        self.defs[key] = schema = {"type": "object", "additionalProperties": False, "properties": {}}
        oneofs = {}
        for field in msg.field:
            json_name = field.json_name or field.name
            entry = self.messages.get(field.type_name) if field.type == self.F.TYPE_MESSAGE else None
            if entry is not None and entry.options.map_entry:
                key_f, val_f = entry.field[0], entry.field[1]
                prop = {"type": "object", "additionalProperties": self.scalar(val_f)}
                if key_f.type != self.F.TYPE_STRING:
                    prop["propertyNames"] = {"pattern": "^-?[0-9]+$"}
            elif field.label == self.F.LABEL_REPEATED:
                prop = {"type": "array", "items": self.scalar(field)}
            else:
                prop = self.scalar(field)
            schema["properties"][json_name] = prop
            if field.HasField("oneof_index") and not field.proto3_optional:
                oneofs.setdefault(field.oneof_index, []).append(json_name)
        for names in oneofs.values():
            if len(names) > 1:
                # at most one member of a oneof
                schema.setdefault("allOf", []).append({"oneOf": [
                    *({"required": [n]} for n in names),
                    {"not": {"anyOf": [{"required": [n]} for n in names]}},
                ]})

    def root(self, type_name, title, comment):
        self.message(type_name)
        return {"$schema": DRAFT, "$comment": comment, "title": title,
                "$ref": "#/$defs/" + type_name.lstrip("."), "$defs": self.defs}


def mesh_schemas(api_dir, commit):
    fds = descriptor_set(api_dir)
    src = f"istio/api@{commit} mesh/v1alpha1/config.proto (proto3 JSON mapping, camelCase names only)"
    mesh = ProtoJson(fds).root(".istio.mesh.v1alpha1.MeshConfig", "Istio MeshConfig",
                               f"Generated by istio/schemas/extract.py from {src}. Do not edit.")
    proxy = ProtoJson(fds).root(".istio.mesh.v1alpha1.ProxyConfig",
                                "Istio ProxyConfig (proxy.istio.io/config annotation)",
                                f"Generated by istio/schemas/extract.py from {src}. Do not edit.")
    return mesh, proxy


def istiooperator_schema(istio_dir, mesh):
    path = os.path.join(istio_dir, "operator/pkg/apis/types.go")
    with open(path) as fh:
        src = fh.read()
    m = re.search(r"type IstioOperatorSpec struct \{(.*?)\n\}", src, re.DOTALL)
    if not m:
        fail(f"IstioOperatorSpec not found in {path}")
    fields = re.findall(r'^\s*(\w+)\s+(\S+)\s+`json:"(\w+)', m.group(1), re.MULTILINE)
    if not fields:
        fail("no json-tagged fields in IstioOperatorSpec")
    spec = {}
    for _go_name, go_type, json_name in fields:
        if json_name == "meshConfig":
            spec[json_name] = {"$ref": "#/$defs/istio.mesh.v1alpha1.MeshConfig"}
        elif go_type == "string":
            spec[json_name] = {"type": "string"}
        elif go_type == "any":
            spec[json_name] = {}
        else:  # components, values: Helm pass-through, validated by istioctl itself
            spec[json_name] = {"type": "object"}
    return {
        "$schema": DRAFT,
        "$comment": (f"Generated by istio/schemas/extract.py: envelope from istio/istio@{git_head(istio_dir)} "
                     "operator/pkg/apis/types.go (IstioOperatorSpec JSON tags); spec.meshConfig is the "
                     "MeshConfig schema. Do not edit."),
        "title": "IstioOperator install.istio.io/v1alpha1 (istioctl install file)",
        "type": "object",
        "additionalProperties": False,
        "required": ["apiVersion", "kind", "spec"],
        "properties": {
            "apiVersion": {"const": "install.istio.io/v1alpha1"},
            "kind": {"const": "IstioOperator"},
            "metadata": METADATA,
            "spec": {"type": "object", "additionalProperties": False, "properties": spec},
        },
        "$defs": mesh["$defs"],
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--istio-api", required=True)
    ap.add_argument("--istio", required=True)
    ap.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    args = ap.parse_args()
    commit = git_head(args.istio_api)
    files = crd_schemas(args.istio_api, commit)
    mesh, proxy = mesh_schemas(args.istio_api, commit)
    files["meshconfig.json"] = mesh
    files["proxyconfig.json"] = proxy
    files["istiooperator.install.istio.io_v1alpha1.json"] = istiooperator_schema(args.istio, mesh)
    os.makedirs(args.out, exist_ok=True)
    for name, schema in sorted(files.items()):
        with open(os.path.join(args.out, name), "w") as fh:
            json.dump(schema, fh, indent=1, sort_keys=True)
            fh.write("\n")
        print(f"wrote {name}")


if __name__ == "__main__":
    main()
