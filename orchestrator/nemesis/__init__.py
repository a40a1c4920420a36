"""Fault injection: see each module's header."""
