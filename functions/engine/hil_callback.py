"""Lambda: hand a person's answer to the execution waiting on it (SendTaskSuccess)."""

from loom.runtime.aws.entry import entry_point
from loom.runtime.aws.hil import hand_answer
from loom.runtime.aws.platform import with_platform

handler = entry_point("hil_callback", with_platform(hand_answer))
