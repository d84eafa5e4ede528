#!/usr/bin/env python3
"""Tenuo minting service for the integration tests and the load benchmark.

A loopback-only HTTP/JSON server that mints warrants, delegations, warrant
stacks, proof-of-possession signatures and revocation lists with the official
Tenuo Python SDK (PyPI `tenuo`, pinned by tests/tenuo/install.sh), so the Rust
tests exercise portcullis with tokens made exactly the way a real Tenuo client
makes them.

    .venv/bin/python tests/tenuo/mint.py [--port 0]

Prints one JSON line `{"url": "http://127.0.0.1:PORT"}` on stdout when it
accepts connections (port 0 = a free port). Exits when its stdin is a pipe and
that pipe closes (the Rust harness keeps it open for the child's lifetime), or
on SIGTERM/SIGINT.

Every endpoint takes and returns JSON; a bad request answers 400
`{"error": "..."}`. Keys live in memory and are referred to by id ("k1", ...).

  GET  /health   -> {"ok": true, "sdk": "<tenuo version>"}
  POST /key      {} | {"secret_hex"}                 -> {"id", "public_hex", "secret_hex"}
  POST /mint     {"issuer", "holder"?, "tools": {tool: {arg: spec}}, "ttl"?}
                                                      -> warrant info (below)
  POST /grant    {"parent": b64, "signer", "to", "tool": str|[str], "ttl"?, "constraints"?: {arg: spec},
                  "inherit"?: true}                   -> warrant info
                 Delegation with the SDK's Warrant.grant(to=, allow=, ttl=, key=, **constraints).
                 The SDK replaces a tool's constraints with exactly the given ones; with
                 "inherit" (default) the parent's constraints for the tool are kept and
                 only the given args are overridden. "inherit": false passes them as-is.
  POST /stack    {"warrants": [b64 root..leaf]}      -> {"header"}
  POST /pop      {"warrant": b64, "key", "tool", "args", "ts"?}
                                                      -> {"pop", "pop_urlsafe", "pop_hex", "ts"}
  POST /pops     {"warrant": b64, "key", "tool", "args_list": [args...], "ts"?}
                                                      -> {"pops": [b64...], "ts"} (one per args)
  POST /headers  {"warrant": b64, "key", "tool", "args", "chain"?: [b64 parents], "trusted_roots"?: [hex]}
                                                      -> the SDK's warrant.bind(key, trusted_roots=...)
                                                         .headers(tool, args, warrant_chain=chain) dict
                 (the SDK validates locally first and needs trusted roots; default: the
                 issuer of the root warrant, i.e. chain[0] or the warrant itself)
  POST /srl      {"issuer", "revoked": [ids], "version"?}
                                                      -> {"srl_b64", "srl_hex", "version", "revoked"}
  POST /inspect  {"warrant": b64}                    -> warrant info

Warrant info: {"warrant": Warrant.to_base64(), "id": "tnu_wrt_...", "expires_at": unix int,
"depth", "holder_hex", "issuer_hex", "tools": [names]}.

Constraint specs (one key each): {"pattern": "web-*"}, {"exact": "x"},
{"range": [min, max]} (either bound may be null), {"one_of": [...]},
{"not_one_of": [...]}, {"wildcard": true}, {"regex": "..."},
{"cidr": "10.0.0.0/8"}, {"subpath": "/data"}, {"url_pattern": "https://*/x"},
{"url_safe": {kwargs} | true}, {"contains": [...]}, {"subset": [...]},
{"cel": "value > 3"}, {"shlex": ["ls"]}, {"not": spec}, {"any_of": [specs]},
{"all": [specs]}.

PoP encodings: "pop" is padded standard base64 (what the SDK's own headers()
sends), "pop_urlsafe" URL-safe base64 without padding, "pop_hex" lowercase hex.
"""

from __future__ import annotations

import argparse
import base64
import datetime as _dt
import itertools
import json
import os
import signal
import stat
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict

import tenuo  # noqa: F401  (must come first: patches tenuo_core.Warrant)
from tenuo_core import (
    CEL,
    All,
    AnyOf,
    Cidr,
    Contains,
    Exact,
    Not,
    NotOneOf,
    OneOf,
    Pattern,
    PublicKey,
    Range,
    Regex,
    Shlex,
    SignedRevocationList,
    SigningKey,
    Subpath,
    Subset,
    UrlPattern,
    UrlSafe,
    Warrant,
    Wildcard,
    encode_warrant_stack,
)

MAX_BODY = 1 << 20


class BadRequest(Exception):
    pass


# --- keys ---------------------------------------------------------------------

_keys: Dict[str, SigningKey] = {}
_keys_lock = threading.Lock()
_key_ids = itertools.count(1)


def _key(kid: Any, field: str) -> SigningKey:
    if not isinstance(kid, str):
        raise BadRequest(f"{field}: expected a key id string, got {kid!r}")
    with _keys_lock:
        k = _keys.get(kid)
    if k is None:
        raise BadRequest(f"{field}: unknown key id {kid!r} (POST /key first)")
    return k


def _pub_hex(key: SigningKey) -> str:
    return bytes(key.public_key.to_bytes()).hex()


# --- constraints --------------------------------------------------------------


def _constraint(spec: Any, where: str) -> Any:
    if not isinstance(spec, dict) or len(spec) != 1:
        raise BadRequest(f"{where}: a constraint spec is an object with exactly one key, got {spec!r}")
    (kind, v), = spec.items()
    try:
        if kind == "pattern":
            return Pattern(v)
        if kind == "exact":
            return Exact(v)
        if kind == "range":
            if not (isinstance(v, list) and len(v) == 2):
                raise BadRequest(f"{where}: range is [min, max] (null = open)")
            return Range(v[0], v[1])
        if kind == "one_of":
            return OneOf(v)
        if kind == "not_one_of":
            return NotOneOf(v)
        if kind == "wildcard":
            if v is not True:
                raise BadRequest(f"{where}: use {{\"wildcard\": true}}")
            return Wildcard()
        if kind == "regex":
            return Regex(v)
        if kind == "cidr":
            return Cidr(v)
        if kind == "subpath":
            return Subpath(v)
        if kind == "url_pattern":
            return UrlPattern(v)
        if kind == "url_safe":
            return UrlSafe() if v is True else UrlSafe(**v)
        if kind == "contains":
            return Contains(v)
        if kind == "subset":
            return Subset(v)
        if kind == "cel":
            return CEL(v)
        if kind == "shlex":
            return Shlex(v)
        if kind == "not":
            return Not(_constraint(v, f"{where}.not"))
        if kind == "any_of":
            return AnyOf([_constraint(s, f"{where}.any_of[{i}]") for i, s in enumerate(v)])
        if kind == "all":
            return All([_constraint(s, f"{where}.all[{i}]") for i, s in enumerate(v)])
    except BadRequest:
        raise
    except Exception as e:  # the SDK's own validation (TypeError, ValueError, ...)
        raise BadRequest(f"{where}: {kind} {v!r}: {type(e).__name__}: {e}") from e
    raise BadRequest(f"{where}: unknown constraint kind {kind!r}")


def _constraint_map(m: Any, where: str) -> Dict[str, Any]:
    if m is None:
        return {}
    if not isinstance(m, dict):
        raise BadRequest(f"{where}: expected an object of arg -> constraint spec")
    return {arg: _constraint(spec, f"{where}.{arg}") for arg, spec in m.items()}


# --- warrants -----------------------------------------------------------------


def _unix(rfc3339: str) -> int:
    return int(_dt.datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp())


def _warrant(b64: Any, field: str) -> Warrant:
    if not isinstance(b64, str):
        raise BadRequest(f"{field}: expected a base64 warrant string")
    try:
        return Warrant.from_base64(b64)
    except Exception as e:
        raise BadRequest(f"{field}: cannot decode warrant: {type(e).__name__}: {e}") from e


def _info(w: Warrant) -> Dict[str, Any]:
    return {
        "warrant": w.to_base64(),
        "id": str(w.id),
        "expires_at": _unix(w.expires_at()),
        "depth": w.depth,
        "holder_hex": bytes(w.authorized_holder.to_bytes()).hex(),
        "issuer_hex": bytes(w.issuer.to_bytes()).hex(),
        "tools": list(w.tools or []),
    }


def _ttl(body: Dict[str, Any], default: int = 600) -> int:
    ttl = body.get("ttl", default)
    if not isinstance(ttl, int) or isinstance(ttl, bool) or ttl <= 0:
        raise BadRequest(f"ttl: expected a positive integer of seconds, got {ttl!r}")
    return ttl


def _args(body: Dict[str, Any]) -> Dict[str, Any]:
    args = body.get("args", {})
    if not isinstance(args, dict):
        raise BadRequest("args: expected an object")
    return args


def _tool(body: Dict[str, Any]) -> str:
    tool = body.get("tool")
    if not isinstance(tool, str) or not tool:
        raise BadRequest("tool: expected a non-empty string")
    return tool


# --- handlers -----------------------------------------------------------------


def h_key(body: Dict[str, Any]) -> Dict[str, Any]:
    secret = body.get("secret_hex")
    if secret is None:
        key = SigningKey.generate()
    else:
        try:
            raw = bytes.fromhex(secret)
        except (TypeError, ValueError) as e:
            raise BadRequest(f"secret_hex: {e}") from e
        if len(raw) != 32:
            raise BadRequest("secret_hex: expected 32 bytes (64 hex digits)")
        key = SigningKey.from_bytes(raw)
    kid = f"k{next(_key_ids)}"
    with _keys_lock:
        _keys[kid] = key
    return {"id": kid, "public_hex": _pub_hex(key), "secret_hex": bytes(key.secret_key_bytes()).hex()}


def h_mint(body: Dict[str, Any]) -> Dict[str, Any]:
    issuer = _key(body.get("issuer"), "issuer")
    holder = _key(body["holder"], "holder") if body.get("holder") is not None else issuer
    tools = body.get("tools")
    if not isinstance(tools, dict) or not tools:
        raise BadRequest("tools: expected a non-empty object of tool -> {arg: spec}")
    b = Warrant.mint_builder().holder(holder.public_key).ttl(_ttl(body))
    for tool, cons in tools.items():
        b = b.capability(tool, _constraint_map(cons, f"tools.{tool}"))
    return _info(b.mint(issuer))


def h_grant(body: Dict[str, Any]) -> Dict[str, Any]:
    parent = _warrant(body.get("parent"), "parent")
    signer = _key(body.get("signer"), "signer")
    to = _key(body.get("to"), "to")
    tool = body.get("tool")
    if not (isinstance(tool, str) or (isinstance(tool, list) and tool and all(isinstance(t, str) for t in tool))):
        raise BadRequest("tool: expected a tool name or a list of tool names")
    constraints = _constraint_map(body.get("constraints"), "constraints")
    inherit = body.get("inherit", True)
    if not isinstance(inherit, bool):
        raise BadRequest("inherit: expected a boolean")
    if constraints and inherit:
        # Warrant.grant applies the same constraint kwargs to every named tool;
        # start from the parent's constraints of the (first) tool.
        first = tool if isinstance(tool, str) else tool[0]
        base = dict((parent.capabilities or {}).get(first) or {})
        base.update(constraints)
        constraints = base
    child = parent.grant(to=to.public_key, allow=tool, ttl=_ttl(body, 300), key=signer, **constraints)
    return _info(child)


def h_stack(body: Dict[str, Any]) -> Dict[str, Any]:
    ws = body.get("warrants")
    if not isinstance(ws, list) or not ws:
        raise BadRequest("warrants: expected a non-empty list of base64 warrants, root first")
    return {"header": encode_warrant_stack([_warrant(w, f"warrants[{i}]") for i, w in enumerate(ws)])}


def h_pop(body: Dict[str, Any]) -> Dict[str, Any]:
    w = _warrant(body.get("warrant"), "warrant")
    key = _key(body.get("key"), "key")
    ts = body.get("ts")
    if ts is None:
        ts = int(time.time())
    if not isinstance(ts, int) or isinstance(ts, bool):
        raise BadRequest("ts: expected a unix timestamp integer")
    sig = bytes(w.sign(key, _tool(body), _args(body), ts))
    return {
        "pop": base64.b64encode(sig).decode("ascii"),
        "pop_urlsafe": base64.urlsafe_b64encode(sig).decode("ascii").rstrip("="),
        "pop_hex": sig.hex(),
        "ts": ts,
    }


def h_pops(body: Dict[str, Any]) -> Dict[str, Any]:
    """One PoP per entry of `args_list`, all signed at the same `ts` (load benchmarks)."""
    w = _warrant(body.get("warrant"), "warrant")
    key = _key(body.get("key"), "key")
    tool = _tool(body)
    args_list = body.get("args_list")
    if not isinstance(args_list, list) or not all(isinstance(a, dict) for a in args_list):
        raise BadRequest("args_list: expected a list of objects")
    ts = body.get("ts")
    if ts is None:
        ts = int(time.time())
    if not isinstance(ts, int) or isinstance(ts, bool):
        raise BadRequest("ts: expected a unix timestamp integer")
    pops = [base64.b64encode(bytes(w.sign(key, tool, a, ts))).decode("ascii") for a in args_list]
    return {"pops": pops, "ts": ts}


def h_headers(body: Dict[str, Any]) -> Dict[str, Any]:
    w = _warrant(body.get("warrant"), "warrant")
    key = _key(body.get("key"), "key")
    chain = body.get("chain") or []
    if not isinstance(chain, list):
        raise BadRequest("chain: expected a list of base64 parent warrants, root first")
    parents = [_warrant(c, f"chain[{i}]") for i, c in enumerate(chain)]
    roots = body.get("trusted_roots")
    if roots is None:
        trusted = [(parents[0] if parents else w).issuer]
    elif isinstance(roots, list) and all(isinstance(r, str) for r in roots):
        try:
            trusted = [PublicKey.from_bytes(bytes.fromhex(r)) for r in roots]
        except Exception as e:
            raise BadRequest(f"trusted_roots: {type(e).__name__}: {e}") from e
    else:
        raise BadRequest("trusted_roots: expected a list of 64-hex public keys")
    bound = w.bind(key, trusted_roots=trusted)
    return dict(bound.headers(_tool(body), _args(body), warrant_chain=parents or None))


def h_srl(body: Dict[str, Any]) -> Dict[str, Any]:
    issuer = _key(body.get("issuer"), "issuer")
    revoked = body.get("revoked", [])
    if not isinstance(revoked, list) or not all(isinstance(r, str) for r in revoked):
        raise BadRequest("revoked: expected a list of warrant id strings")
    version = body.get("version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise BadRequest("version: expected a non-negative integer")
    b = SignedRevocationList.builder()
    for r in revoked:
        b = b.revoke(r)
    srl = b.version(version).build(issuer)
    raw = bytes(srl.to_bytes())
    return {
        "srl_b64": base64.b64encode(raw).decode("ascii"),
        "srl_hex": raw.hex(),
        "version": srl.version,
        "revoked": list(srl.revoked_ids),
    }


def h_inspect(body: Dict[str, Any]) -> Dict[str, Any]:
    return _info(_warrant(body.get("warrant"), "warrant"))


ROUTES: Dict[str, Callable[[Dict[str, Any]], Dict[str, Any]]] = {
    "/key": h_key,
    "/mint": h_mint,
    "/grant": h_grant,
    "/stack": h_stack,
    "/pop": h_pop,
    "/pops": h_pops,
    "/headers": h_headers,
    "/srl": h_srl,
    "/inspect": h_inspect,
}


class Handler(BaseHTTPRequestHandler):
    server_version = "tenuo-mint/1"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt: str, *args: Any) -> None:  # to stderr, one line each
        sys.stderr.write("%s %s\n" % (self.address_string(), fmt % args))

    def _send(self, status: int, obj: Any) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/health":
            self._send(200, {"ok": True, "sdk": getattr(tenuo, "__version__", "?")})
        else:
            self._send(404, {"error": f"no route GET {self.path}"})

    def do_POST(self) -> None:
        handler = ROUTES.get(self.path)
        try:
            n = int(self.headers.get("content-length") or 0)
            if n > MAX_BODY:
                raise BadRequest("body too large")
            raw = self.rfile.read(n) if n else b"{}"
            if handler is None:
                self._send(404, {"error": f"no route POST {self.path}"})
                return
            try:
                body = json.loads(raw or b"{}")
            except ValueError as e:
                raise BadRequest(f"body is not JSON: {e}") from e
            if not isinstance(body, dict):
                raise BadRequest("body must be a JSON object")
            self._send(200, handler(body))
        except BadRequest as e:
            self._send(400, {"error": str(e)})
        except Exception as e:  # SDK refusals (bad attenuation, wrong signer, ...) are client errors too
            traceback.print_exc(file=sys.stderr)
            self._send(400, {"error": f"{type(e).__name__}: {e}"})


def _exit_when_stdin_closes() -> None:
    try:
        mode = os.fstat(0).st_mode
    except OSError:
        return
    if not stat.S_ISFIFO(mode):
        return

    def watch() -> None:
        try:
            while os.read(0, 4096):
                pass
        except OSError:
            pass
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0 = any free port)")
    opts = ap.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", opts.port), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    _exit_when_stdin_closes()
    print(json.dumps({"url": f"http://127.0.0.1:{server.server_address[1]}"}), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
