"""node.crc32c: CRC-32C (Castagnoli), the checksum of pg_control and WAL records."""

from __future__ import annotations

import pytest

from node.crc32c import crc32c


@pytest.mark.parametrize(
    ("data", "crc"),
    [
        (b"", 0x00000000),
        (b"123456789", 0xE3069283),  # the standard check value
        (b"a", 0xC1D04330),
        (bytes(32), 0x8A9136AA),  # RFC 3720 B.4: 32 bytes of zeros
        (b"\xff" * 32, 0x62A8AB43),  # RFC 3720 B.4: 32 bytes of 0xff
        (bytes(range(32)), 0x46DD794E),  # RFC 3720 B.4: incrementing
        (bytes(range(31, -1, -1)), 0x113FDB5C),  # RFC 3720 B.4: decrementing
    ],
)
def test_known_vectors(data: bytes, crc: int) -> None:
    assert crc32c(data) == crc


def test_incremental_equals_one_shot() -> None:
    data = b"The quick brown fox jumps over the lazy dog"
    assert crc32c(data[17:], crc32c(data[:17])) == crc32c(data) == 0x22620404


def test_single_bit_flip_changes_crc() -> None:
    data = bytearray(b"pg_control" * 10)
    base = crc32c(bytes(data))
    for i in range(len(data)):
        data[i] ^= 0x80
        assert crc32c(bytes(data)) != base, i
        data[i] ^= 0x80
