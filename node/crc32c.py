"""CRC-32C (Castagnoli), the checksum PostgreSQL uses for pg_control and WAL records.

What it does: a table-driven pure-Python CRC-32C, enough for pg_control. What it deliberately
does not do: go fast on megabytes; the storage issue's WAL path may swap in a C implementation
behind the same function.
"""

from __future__ import annotations


def _make_table() -> list[int]:
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _make_table()


def crc32c(data: bytes, crc: int = 0) -> int:
    crc ^= 0xFFFFFFFF
    t = _TABLE
    for b in data:
        crc = t[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF
