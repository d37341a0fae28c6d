"""Lambda: a human wait's timer fired; apply the request's timeout action."""

from loom.runtime.aws.entry import entry_point
from loom.runtime.aws.hil import time_out
from loom.runtime.aws.platform import with_platform

handler = entry_point("hil_timeout", with_platform(time_out))
