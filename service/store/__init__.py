"""Persistence: the engine and sessions (db), the tables (models), job states and transitions (jobs)."""
