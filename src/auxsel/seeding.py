"""Seeds derived from (global seed, stage, task, aux, ...).

Hashing the parts, rather than adding offsets, keeps the seed of one job independent of which
other jobs exist, so adding a candidate never changes the numbers of the others.
"""

from __future__ import annotations

import hashlib


def derive_seed(global_seed: int, *parts: object) -> int:
    """A 31-bit seed that depends on the global seed and every part, in order."""
    text = "/".join([str(int(global_seed)), *map(str, parts)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big") & 0x7FFFFFFF
