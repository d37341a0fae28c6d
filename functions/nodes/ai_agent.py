"""Lambda: runs AI_AGENT nodes for the state machine."""

from loom.runtime.aws.entry import entry_point
from loom.runtime.aws.nodes import run_agent_node
from loom.runtime.aws.platform import with_platform

handler = entry_point("node_ai_agent", with_platform(run_agent_node))
