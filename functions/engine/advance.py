"""Lambda: the state machine's Advance step (record what finished, plan what is ready)."""

from loom.runtime.aws.advance import advance_round
from loom.runtime.aws.entry import entry_point
from loom.runtime.aws.platform import with_platform

handler = entry_point("advance", with_platform(advance_round))
