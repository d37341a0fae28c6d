"""Lambda: EventBridge Scheduler's minute; fire the CRON triggers that are due."""

from loom.runtime.aws.entry import entry_point
from loom.runtime.aws.platform import with_platform
from loom.runtime.aws.triggers import fire_schedules

handler = entry_point("schedule_fired", with_platform(fire_schedules), correlation_id_path="")
