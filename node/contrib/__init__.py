"""Loadable modules shipped with pgbed (shared_preload_libraries / CREATE EXTENSION)."""
