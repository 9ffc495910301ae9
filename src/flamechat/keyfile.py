"""Load or create a server's Ed25519 key file (mode 0600)."""

from __future__ import annotations

import os
from pathlib import Path

from flamechat.crypto import NodeKey


def load_or_create_key(path: Path) -> NodeKey:
    if path.exists():
        return NodeKey.from_seed(bytes.fromhex(path.read_text().strip()))
    path.parent.mkdir(parents=True, exist_ok=True)
    key = NodeKey.generate()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key.seed.hex() + "\n")
    return key
