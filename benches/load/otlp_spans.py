#!/usr/bin/env python3
"""Counts the spans an OpenTelemetry Collector's file exporter wrote in
`format: proto` (each export: a 4-byte big-endian length, then an OTLP
ExportTraceServiceRequest). Usage: otlp_spans.py FILE SERVICE_NAME; prints
JSON: exports, spans (all), and of the spans of SERVICE_NAME named
`envoy.service.auth.v3.Authorization/Check` (portcullis's Check span): how
many, in how many distinct traces, how many with a parent span, how many
sampled (flags bit 0) and their `portcullis.decision` values. A missing file
counts as empty. No protobuf library: the few fields needed are read from the
wire format directly."""

import json
import struct
import sys

SPAN_NAME = b"envoy.service.auth.v3.Authorization/Check"


def fields(buf):
    """(field number, wire type, value) of a protobuf message; value: int or bytes."""
    i, n = 0, len(buf)
    while i < n:
        key, i = varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = varint(buf, i)
        elif wt == 1:
            v, i = buf[i : i + 8], i + 8
        elif wt == 2:
            ln, i = varint(buf, i)
            v, i = buf[i : i + ln], i + ln
        elif wt == 5:
            v, i = buf[i : i + 4], i + 4
        else:
            raise ValueError(f"wire type {wt}")
        yield num, wt, v


def varint(buf, i):
    shift = result = 0
    while True:
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, i
        shift += 7


def string_attrs(kvs):
    """{key: string value} of KeyValue messages (other value types skipped)."""
    out = {}
    for kv in kvs:
        key = val = None
        for num, _, v in fields(kv):
            if num == 1:
                key = v.decode()
            elif num == 2:
                for n2, _, v2 in fields(v):
                    if n2 == 1:
                        val = v2.decode()
        if key is not None and val is not None:
            out[key] = val
    return out


def main():
    path, service = sys.argv[1], sys.argv[2]
    try:
        data = open(path, "rb").read()
    except FileNotFoundError:
        data = b""
    exports = spans = ours = with_parent = sampled = 0
    traces, decisions = set(), {}
    i = 0
    while i + 4 <= len(data):
        (ln,) = struct.unpack(">I", data[i : i + 4])
        msg, i = data[i + 4 : i + 4 + ln], i + 4 + ln
        exports += 1
        for num, _, rs in fields(msg):
            if num != 1:
                continue
            rs_fields = list(fields(rs))
            resource = [v for n, _, v in rs_fields if n == 1]
            attrs = string_attrs(v for r in resource for n, _, v in fields(r) if n == 1)
            mine = attrs.get("service.name") == service
            for n, _, ss in rs_fields:
                if n != 2:
                    continue
                for n2, _, span in fields(ss):
                    if n2 != 2:
                        continue
                    spans += 1
                    if not mine:
                        continue
                    f = {}
                    span_attrs = []
                    for n3, _, v in fields(span):
                        if n3 == 9:
                            span_attrs.append(v)
                        else:
                            f[n3] = v
                    if f.get(5) != SPAN_NAME:
                        continue
                    ours += 1
                    traces.add(f.get(1))
                    with_parent += bool(f.get(4))
                    flags = f.get(16)
                    sampled += bool(flags and struct.unpack("<I", flags)[0] & 1)
                    d = string_attrs(span_attrs).get("portcullis.decision", "-")
                    decisions[d] = decisions.get(d, 0) + 1
    if i != len(data):
        sys.exit(f"{path}: {len(data) - i} trailing bytes (a truncated export)")
    print(json.dumps({"exports": exports, "spans": spans, "portcullis_spans": ours, "traces": len(traces),
                      "with_parent": with_parent, "sampled_flag": sampled, "decisions": decisions}))


main()
