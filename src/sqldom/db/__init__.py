"""Persistence: the only package that knows SQL. Nothing from SQLAlchemy leaves it."""
