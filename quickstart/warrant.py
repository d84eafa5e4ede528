#!/usr/bin/env python3
"""The quickstart's Tenuo side, with Tenuo's own Python SDK (PyPI `tenuo`).

    WARRANT=$(.venv/bin/python quickstart/warrant.py mint)
        The control plane mints a warrant for the agent: tool `read_file`,
        argument `path` only under /data/reports/, valid 10 minutes, bound to
        the agent's key (proof of possession).
    POP=$(.venv/bin/python quickstart/warrant.py pop "$WARRANT" read_file path=/data/reports/q3.txt)
        The agent signs this one call (tool + arguments + time): X-Tenuo-PoP.
        A PoP is accepted for about a minute; sign again after that.

portcullis trusts the control plane's public key (quickstart/portcullis.yaml,
tenuo.trusted_issuers). Both keys below are DEMO KEYS, published in this
repository: never trust them anywhere but the quickstart.
"""

import base64
import sys
import time

import tenuo  # noqa: F401  (must come first: patches tenuo_core.Warrant)
from tenuo_core import SigningKey, Subpath, Warrant

# Demo keys (32-byte Ed25519 secrets). The control plane's public key is in portcullis.yaml.
CONTROL_PLANE = SigningKey.from_bytes(bytes.fromhex("5175696b73746172742d636f6e74726f6c2d706c616e652d64656d6f2d6b6579"))
AGENT = SigningKey.from_bytes(bytes.fromhex("5175696b73746172742d6167656e742d64656d6f2d6b65792d6e6f742d736563"))


def mint() -> str:
    warrant = (
        Warrant.mint_builder()
        .capability("read_file", {"path": Subpath("/data/reports")})
        .holder(AGENT.public_key)
        .ttl(600)
        .mint(CONTROL_PLANE)
    )
    return warrant.to_base64()


def pop(warrant_b64: str, tool: str, pairs: list) -> str:
    args = dict(p.split("=", 1) for p in pairs)
    warrant = Warrant.from_base64(warrant_b64)
    return base64.b64encode(bytes(warrant.sign(AGENT, tool, args, int(time.time())))).decode("ascii")


def main(argv: list) -> int:
    if argv[:1] == ["mint"] and len(argv) == 1:
        print(mint())
    elif argv[:1] == ["pop"] and len(argv) >= 3:
        print(pop(argv[1], argv[2], argv[3:]))
    elif argv[:1] == ["issuer-public-key"]:
        print(bytes(CONTROL_PLANE.public_key.to_bytes()).hex())
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
