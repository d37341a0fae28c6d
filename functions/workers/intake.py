"""Lambda: every minute, handle the intake queue's due events (retries, released leases,
replayed dead letters)."""

from loom.runtime.aws.entry import entry_point
from loom.runtime.aws.platform import with_platform
from loom.runtime.aws.triggers import drain_intake

handler = entry_point("intake", with_platform(drain_intake), correlation_id_path="")
