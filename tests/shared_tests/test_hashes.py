"""Hashes: sign-bit packing order, hex form, Hamming distance."""

import numpy as np
import pytest

from vetohash.errors import HashFormatError
from vetohash.hashes import Hash, pack_signs


def test_bit_k_is_embedding_k_positive_packed_most_significant_bit_first():
    embedding = np.full((1, 16), -1.0, dtype=np.float32)
    embedding[0, 0] = 0.5  # bit 0 -> top bit of byte 0
    embedding[0, 15] = 2.0  # bit 15 -> low bit of byte 1
    embedding[0, 3] = 0.0  # zero is not > 0
    assert pack_signs(embedding).tobytes() == bytes([0b1000_0000, 0b0000_0001])


def test_hex_round_trip_and_hamming_distance():
    a = Hash.from_hex("ff00" * 8, 128)
    b = Hash.from_hex("0f00" * 8, 128)
    assert a.hex == "ff00" * 8 and a.bits == 128
    assert a - b == 4 * 8 and a - a == 0


@pytest.mark.parametrize("text", ["abc", "zz" * 16, "ff" * 15])
def test_malformed_hex_raises_hash_format_error(text):
    with pytest.raises(HashFormatError):
        Hash.from_hex(text, 128)


def test_hashes_of_different_widths_do_not_compare():
    with pytest.raises(HashFormatError):
        Hash(b"\x00" * 16) - Hash(b"\x00" * 32)
