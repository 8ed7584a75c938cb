"""Alembic migrations of var/build.db, shipped inside the package as ``sqldom.migrations``."""
