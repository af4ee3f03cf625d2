"""msgpack in one canonical, bounded form for everything vetohash writes and reads.

Writing sorts map keys so the same content always gives the same bytes. Reading treats the input as hostile:
explicit length limits, string keys only, no extension types, no object hooks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgpack


def _canonical(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _canonical(value[key]) for key in sorted(value)}
    if isinstance(value, (list, tuple)):
        return [_canonical(item) for item in value]
    return value


def pack(value: Any) -> bytes:
    """Canonical msgpack bytes (sorted map keys, bin type for bytes, str for text)."""
    return msgpack.packb(_canonical(value), use_bin_type=True)


def unpack(data: bytes, *, max_bin: int, max_str: int = 1 << 16, max_items: int = 1 << 20) -> Any:
    """Decode untrusted msgpack with every length bounded; raise ValueError (msgpack's) on any flaw."""
    return msgpack.unpackb(
        data,
        raw=False,
        strict_map_key=True,
        use_list=True,
        max_bin_len=max_bin,
        max_str_len=max_str,
        max_array_len=max_items,
        max_map_len=max_items,
        max_ext_len=0,
    )
