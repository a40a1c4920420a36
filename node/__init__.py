"""pgbed's node: a PostgreSQL-style postmaster and its process kinds, in Python."""
