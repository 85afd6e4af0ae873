"""A realm of several brokers: the queue, workers and routes they share in Redis.

Imported only when a broker runs with ``--engine redis://...``; a lone
broker never loads redis-py. :class:`broker.engine.realm.SharedRealm` builds
the shared parts (docs/scale.md shows the layout and what each failure does).
"""
