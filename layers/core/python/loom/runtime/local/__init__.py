"""Local mode: everything on 127.0.0.1 in one process tree (``loom up``)."""
