"""Lambda: runs ACTION.CODE user code in the sandbox; no permissions, no VPC, no secrets."""

from loom.runtime.aws.code import run_code
from loom.runtime.aws.entry import entry_point

handler = entry_point("node_code", run_code, correlation_id_path="")
