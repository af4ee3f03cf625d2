"""msgpack in one canonical, bounded form for everything vetohash writes and reads.

Writing sorts map keys so the same content always gives the same bytes. Reading treats the input as hostile:
explicit length limits, string keys only, no extension types, no object hooks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgpack

# Maps and arrays nest at most this deep in anything vetohash reads; its own formats need 5.
MAX_DEPTH = 32


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
    """Decode untrusted msgpack with every length bounded and nesting at most MAX_DEPTH deep; raise ValueError
    on any flaw.

    msgpack has no depth option: its C decoder stops at 1,024 levels on its own, without recursing, but
    everything that walks the result recursively (re-encoding to check canonical form, building a spec) would
    hit Python's recursion limit first. So depth is checked here, without recursion, before anyone walks it.
    """
    value = msgpack.unpackb(
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
    _check_depth(value)
    return value


def _check_depth(value: Any) -> None:
    """ValueError if maps and arrays nest deeper than MAX_DEPTH; an explicit stack, never recursion."""
    stack: list[tuple[Any, int]] = [(value, 1)] if isinstance(value, (dict, list)) else []
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        if depth > MAX_DEPTH:
            raise ValueError(f"msgpack nested deeper than {MAX_DEPTH} levels")
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
