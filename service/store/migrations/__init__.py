"""Alembic migrations (a package so that wheels ship env.py)."""
