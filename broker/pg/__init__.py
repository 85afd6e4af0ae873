"""The broker's stores in PostgreSQL: one database that every broker of a realm shares.

Imported only when ``--db`` names a ``postgresql://`` database, so that a
SQLite broker never loads psycopg.
"""
