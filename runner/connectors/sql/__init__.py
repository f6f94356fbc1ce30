"""The SQL kinds: a base over SQLAlchemy and one module per database."""
