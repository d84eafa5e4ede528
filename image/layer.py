#!/usr/bin/env python3
"""Writes the image's one layer as a reproducible tar: layer.py OUT BINARY CA_BUNDLE

Entries sorted, owned by 0:0 (numeric, no names), fixed modes, mtime from
SOURCE_DATE_EPOCH, no PAX timestamps: the same inputs give the same bytes.
The user 65532 `nonroot` is named in /etc/passwd and /etc/group (as in
distroless), so tools that print user names have one; the image runs it by
number.
"""

import io
import os
import sys
import tarfile

MTIME = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
PASSWD = b"root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
GROUP = b"root:x:0:\nnonroot:x:65532:\n"


def entry(name, mode, data=None):
    info = tarfile.TarInfo(name)
    info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = MTIME, mode, 0, 0, "", ""
    if data is None:
        info.type = tarfile.DIRTYPE
        return info, None
    info.size = len(data)
    return info, io.BytesIO(data)


def main():
    out, binary, ca = sys.argv[1:4]
    with open(binary, "rb") as f:
        portcullis = f.read()
    with open(ca, "rb") as f:
        bundle = f.read()
    items = [
        entry("etc/", 0o755),
        entry("etc/group", 0o644, GROUP),
        entry("etc/passwd", 0o644, PASSWD),
        entry("etc/portcullis/", 0o755),
        entry("etc/ssl/", 0o755),
        entry("etc/ssl/certs/", 0o755),
        entry("etc/ssl/certs/ca-certificates.crt", 0o644, bundle),
        # The home named in /etc/passwd, owned by nobody else: empty, like distroless'.
        entry("home/", 0o755),
        entry("home/nonroot/", 0o700),
        entry("usr/", 0o755),
        entry("usr/local/", 0o755),
        entry("usr/local/bin/", 0o755),
        entry("usr/local/bin/portcullis", 0o755, portcullis),
    ]
    items.sort(key=lambda i: i[0].name)
    for info, _ in items:
        if info.name == "home/nonroot/":
            info.uid = info.gid = 65532
    with open(out, "wb") as f, tarfile.open(fileobj=f, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for info, data in items:
            tar.addfile(info, data)


if __name__ == "__main__":
    main()
