"""Alembic migrations of the mirrorscope schema."""
