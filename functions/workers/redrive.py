"""Lambda: move the intake DLQ's messages back to the intake queue (bounded per call;
``{"limit": n}`` moves fewer)."""

from loom.runtime.aws.entry import entry_point
from loom.runtime.aws.redrive import redrive

handler = entry_point("redrive", redrive, correlation_id_path="")
