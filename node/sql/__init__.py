"""pgbed's SQL layer: PostgreSQL statements over the SQLite heap.

What it does: `catalog` (PG types of tables kept in SQLite), `translate` (PG SQL -> Plan, cached),
`functions` (SQLite functions the translations call), `values` (PG text output / parameter input),
`execute` (run a Plan, apply DDL catalog changes, map SQLite errors to SQLSTATEs).

What it deliberately does not do: sessions, transactions, locking, WAL, the wire protocol — the
backend calls this layer inside the transaction it owns.
"""
