"""A local runner in its own process, for kill -9 tests.

usage: python -m tests.utils.runner_proc <app conninfo> <blob dir> resume
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import tests.utils.test_nodes  # noqa: F401 - registers ACTION.TEST
from loom.blobs import LocalBlobStore
from loom.db import Database, DatabaseUrls
from loom.engine.advance import Engine
from loom.engine.runner import LocalRunner


def main() -> None:
    app, blob_dir = sys.argv[1], Path(sys.argv[2])
    with Database(DatabaseUrls(owner=app, app=app, embedded=False), min_size=1, max_size=4) as db:
        runner = LocalRunner(Engine(db, LocalBlobStore(blob_dir)))
        results = asyncio.run(runner.resume_all())
    sys.stdout.write(" ".join(r.status.value for r in results) + "\n")


if __name__ == "__main__":
    main()
