#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target into fuzz/corpus/<target>/.

    ./tests/tenuo/install.sh >/dev/null && .venv/bin/python fuzz/seeds.py

The seeds are committed; rerun this only to change them. Each seed is a
meaningful input in the target's input format (see fuzz/src/<module>.rs):
the attacks the integration tests send, plus the normal case, so the fuzzer
starts next to the interesting branches. Warrant seeds are real Tenuo
warrants, stacks and PoPs made by the official Python SDK (tests/tenuo/mint.py);
without the SDK they are skipped and the committed ones stay.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")


def write(target: str, seeds: list[bytes], keep: bool = False) -> None:
    d = os.path.join(CORPUS, target)
    if os.path.isdir(d) and not keep:
        shutil.rmtree(d)
    os.makedirs(d, exist_ok=True)
    for s in seeds:
        # Named by content, like libFuzzer's own corpus files.
        with open(os.path.join(d, hashlib.sha1(s).hexdigest()), "wb") as f:
            f.write(s)


def b64u(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def paths() -> list[bytes]:
    p = [
        "/", "/admin", "/admin/", "/admin/x", "/admin/public", "/admin/public/x", "/admin/publicity",
        "/administrator", "/users?next=/admin", "/admin?x=/public", "/ADMIN", "/Admin/Public/x",
        "/admin/..;/users", "/admin/../users", "/public/../admin", "/admin/./x", "//admin", "/admin//x",
        "/%61dmin", "/%2e%2e/admin", "/admin/%2e%2e/users", "/admin%2fx", "/admin%2Fx", "/admin%5cx",
        "/admin;jsessionid=1/x", "/admin#frag", "/a\\b", "/%", "/%4", "/%zz", "/%+1", "/%25", "/%0a",
        "/%7f", "/%C3%A9", "/caf%c3%a9", "/x%20y", "/%7e", "/%2D", "/a\x01b", "/é", "*",
        "http://x/admin", "", "/admin?\x01", "/..", "/.", "/a/.../b", "/a/..b/c",
    ]
    return [s.encode() for s in p]


def header_edits() -> list[bytes]:
    lists = [
        ["x-user-id", "accept", "user-agent"],
        ["X-User-Id", "x_user_id", "X_USER_ID", "x-user-id"],
        ["x-auth-request-user", "x-auth-request-email", "x-auth-request-groups", "x-auth-request-foo"],
        ["x-forwarded-user", "x-forwarded-email", "x-forwarded-groups", "x-forwarded-preferred-username"],
        ["x-tenuo-warrant-id", "X-Tenuo-Tool", "x_tenuo_holder", "x-tenuo-root-issuer", "x-tenuo-pop"],
        ["x-remote-user", "x_remote_user", "x-tenant-id", "x-internal-a", "x-tenant-ids"],
        ["x-email", "x_groups", "x-groups", "x-anything"],
        ["x-user", "x-user-email", "x-user-groups", "x-userx", "x_forwarded_user"],
        [""],
        ["x-auth-request-%d" % i for i in range(300)],
    ]
    out = []
    for i, names in enumerate(lists):
        for flags in (0x00, 0x07, 0x08, 0x0F, 0x1F):
            out.append(bytes([i % 4, flags]) + "\n".join(names).encode())
    return out


def cookies() -> list[bytes]:
    headers = [
        [b"a=1; b=2"],
        [b"__Host-portcullis=abc"],
        [b"a=1; __Host-portcullis=xyz; b=\"q r\"; __Host-portcullis-login-Ab_c=s"],
        [b"a=1", b"__Host-portcullis=xyz; c=3"],
        [b"x=1,__Host-portcullis=evil; __Host-portcullis=real"],
        [b"x=\"1, __Host-portcullis=evil\"; __Host-portcullis=v"],
        [b"__Host-portcullisx=1; __Host-portcullis-login=2"],
        [b" \t__Host-portcullis = v ;;; ;noequals; =empty"],
        [b"sid=abc; sid-login-xyz=1; sidx=2"],
        [b"lang=fr\xe9; __Host-portcullis=v"],
        [b"\xff\xfe", b"a=1"],
        [b""],
    ]
    out = []
    for hs in headers:
        for mode in (0, 1, 2, 3):
            out.append(bytes([mode]) + b"\n".join(hs))
    return out


def credentials() -> list[bytes]:
    values = [
        [b"Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln"],
        [b"bearer a.b.c"], [b"BEARER\t \ta.b.c \t"], [b"Bearer"], [b"Bearer "], [b"Bearer a b"],
        [b"Bearer a\"b"], [b"Bearer abc=="], [b"Bearer a=b"], [b"Basic dXNlcjpwYXNz"], [b"Bearerx a.b.c"],
        [b"Bearer a,Bearer b"], [b"Bearer a", b"Bearer b"], [b"Bearer \xff\xfe"], [b"Bearer " + b"a" * 70],
        [b""], [b"Bearer \xc2\xa0abc"],
    ]
    out = [bytes([8])]
    for vs in values:
        for mode in (0x00, 0x01, 0x02, 0x03, 0x06, 0x07):
            out.append(bytes([mode]) + b"\n".join(vs))
    return out


def jwts() -> list[bytes]:
    out = []
    headers = [
        {"alg": "RS256", "kid": "fuzz-rs256"}, {"alg": "ES256", "kid": "fuzz-es256"},
        {"alg": "EdDSA", "kid": "fuzz-eddsa"}, {"alg": "none"}, {"alg": "None", "kid": "fuzz-rs256"},
        {"alg": "HS256", "kid": "fuzz-rs256"}, {"alg": "RS256", "kid": "unknown"}, {"alg": "RS256"},
        {"alg": "ES256", "jwk": {"kty": "EC"}}, {"alg": "RS256", "jku": "http://127.0.0.1:1/k"},
        {"alg": "PS256", "kid": "fuzz-rs256", "typ": "JWT", "crit": ["exp"]}, {"alg": 1}, [],
    ]
    for i, h in enumerate(headers):
        out.append(bytes([1 + 3 * (i % 3)]) + json.dumps(h).encode())
    payloads = [{"iss": "http://127.0.0.1:1", "sub": "a"}, {"iss": 7}, {}, {"iss": None}, []]
    for h in headers[:4]:
        for p in payloads:
            out.append(b"\x02" + json.dumps(h).encode() + b"\x00" + json.dumps(p).encode() + b"\x00sig")
    for t in ["", ".", "..", "a.b.c", "e30.e30.", "eyJhbGciOiJub25lIn0.e30.", "a.b.c.d.e", "x" * 5000]:
        out.append(b"\x00" + t.encode())
    return out


def warrant_seeds() -> tuple[list[bytes], bool]:
    out = [b"\x00%%%", b"\x00", b"\x00 -__-AQ \n", b"\x00+//+AQ==", b"\x00+__+AQ"]
    for cbor in [b"\x80", b"\x89" + b"\x80" * 9, b"\x98\xc8\x83", b"\x9b\xff\xff\xff\xff\xff\xff\xff\xff\x80",
                 b"\x83\x01\x40\x40", b"\x82\x83\x01", b"\x9f\xff", b"\xa1\x01\x02", b"\x07" * 64]:
        out.append(b"\x0f" + cbor)
    try:
        sys.path.insert(0, os.path.join(ROOT, "tests", "tenuo"))
        import mint  # type: ignore
    except Exception as e:  # the SDK is optional for regenerating
        print(f"warrant seeds without the Tenuo SDK ({e})", file=sys.stderr)
        return out, False
    root = mint.h_key({})["id"]
    mid = mint.h_key({})["id"]
    leaf = mint.h_key({})["id"]
    w0 = mint.h_mint({"issuer": root, "holder": mid, "tools": {"deploy": {"env": {"pattern": "stg-*"}}}})
    w1 = mint.h_grant({"parent": w0["warrant"], "signer": mid, "to": leaf, "tool": "deploy"})
    stack = mint.h_stack({"warrants": [w0["warrant"], w1["warrant"]]})["header"]
    pop = mint.h_pop({"warrant": w1["warrant"], "key": leaf, "tool": "deploy", "args": {"env": "stg-1"}})
    for text in [w0["warrant"], w1["warrant"], stack, pop["pop"], pop["pop_urlsafe"], pop["pop_hex"]]:
        out.append(b"\x00" + text.encode())
        out.append(b"\x0e" + text.encode())
    for text in [w0["warrant"], stack]:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)) if "-" in text or "_" in text else base64.b64decode(text + "=" * (-len(text) % 4))
        out.append(b"\x01" + raw)
        out.append(b"\x0f" + raw)
    return out, True


def configs() -> list[bytes]:
    out = []
    with open(os.path.join(ROOT, "portcullis.example.yaml"), "rb") as f:
        out.append(f.read())
    for d in ["examples", "quickstart", "istio", "deploy"]:
        for base, _, files in os.walk(os.path.join(ROOT, d)):
            for name in sorted(files):
                path = os.path.join(base, name)
                if name.endswith((".yaml", ".yml")) and os.path.getsize(path) < 20000:
                    with open(path, "rb") as f:
                        text = f.read()
                    if b"oidc:" in text or b"tenuo:" in text or b"rules:" in text:
                        out.append(text)
    out += [
        b"", b"{}", b"listen: [", b"a: &a [*a, *a]\nb: &b [*a, *a]\nc: [*b, *b]\n",
        b"oidc: {providers: [{issuer: 'http://example.com', audiences: []}]}",
        b"oidc: {providers: [{issuer: 'https://i.example.com', audiences: [a]}]}\nrules: [{path_prefix: admin}]\n",
        b"oidc: {providers: [{issuer: 'https://i.example.com', audiences: [a]}]}\nheaders: {user: X-User, strip: ['*']}\n",
        b"tenuo: {trusted_issuers: [zz], gateway: {inline: 'x'}}\n",
        b"unknown_key: 1\n", b"cache: {max_entries: -1}\n", b"shutdown_delay_seconds: 99999999999999999999\n",
    ]
    return out


def main() -> None:
    write("path", paths())
    write("header_edits", header_edits())
    write("cookies", cookies())
    write("credential", credentials())
    write("jwt_header", jwts())
    seeds, full = warrant_seeds()
    write("warrant_header", seeds, keep=not full)
    write("config", configs())
    for t in sorted(os.listdir(CORPUS)):
        print(t, len(os.listdir(os.path.join(CORPUS, t))))


if __name__ == "__main__":
    main()
