"""Lambda: the migrations custom resource; applies pending migrations on every deploy."""

from loom.runtime.aws.entry import entry_point
from loom.runtime.aws.migrate import on_event

handler = entry_point("migrate", on_event, correlation_id_path="RequestId")
