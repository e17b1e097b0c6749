"""Alembic revisions. A package so an installed levbot ships them."""
