"""Lambda: every minute, start the runs committed but never handed to Step Functions."""

from loom.runtime.aws.entry import entry_point
from loom.runtime.aws.platform import with_platform
from loom.runtime.aws.stranded import start_stranded

handler = entry_point("stranded_runs", with_platform(start_stranded), correlation_id_path="")
