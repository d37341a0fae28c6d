"""Lambda: runs HUMAN_IN_THE_LOOP nodes under waitForTaskToken (files the request, waits)."""

from loom.runtime.aws.entry import entry_point
from loom.runtime.aws.nodes import run_human
from loom.runtime.aws.platform import with_platform

handler = entry_point("node_human_in_the_loop", with_platform(run_human))
