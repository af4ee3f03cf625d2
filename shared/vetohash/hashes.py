"""Hashes: packed sign bits of an embedding, their hex form and Hamming distance.

Bit order (fixed forever for a given spec): bit k of the hash is embedding value k > 0; bits are packed
most-significant-bit first, bit k in byte k // 8 at position 7 - k % 8 (numpy.packbits' default order). The hex
form is the packed bytes in order, lower-case, two digits a byte.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import HashFormatError


def pack_signs(embeddings: np.ndarray) -> np.ndarray:
    """(N, bits) float embeddings -> (N, bits // 8) uint8 packed hashes; a bit is 1 where the value is > 0."""
    if embeddings.ndim != 2 or embeddings.shape[1] % 8:
        raise ValueError(f"embeddings must be (N, bits) with bits a multiple of 8, got {embeddings.shape}")
    return np.packbits(embeddings > 0, axis=1)


@dataclass(frozen=True)
class Hash:
    """One packed hash; `a - b` is their Hamming distance."""

    data: bytes

    @classmethod
    def from_hex(cls, text: str, bits: int) -> Hash:
        """Parse the hex form, which must have exactly bits / 4 hex digits."""
        if len(text) != bits // 4:
            raise HashFormatError(f"a {bits}-bit hash has {bits // 4} hex digits, got {len(text)}")
        try:
            return cls(bytes.fromhex(text))
        except ValueError:
            raise HashFormatError(f"hash is not hexadecimal: {text[:40]!r}") from None

    @property
    def hex(self) -> str:
        """Lower-case hex, two digits a byte."""
        return self.data.hex()

    @property
    def bits(self) -> int:
        """Width in bits."""
        return len(self.data) * 8

    def __sub__(self, other: Hash) -> int:
        if len(self.data) != len(other.data):
            raise HashFormatError(f"cannot compare a {self.bits}-bit hash with a {other.bits}-bit hash")
        xor = np.bitwise_xor(np.frombuffer(self.data, np.uint8), np.frombuffer(other.data, np.uint8))
        return int(np.bitwise_count(xor).sum())

    def __str__(self) -> str:
        return self.hex
