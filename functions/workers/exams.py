"""Lambda: every 15 minutes, examine the agents that became ready for their next level."""

from loom.agents.exam_worker import exam_job
from loom.runtime.aws import runner  # noqa: F401 - every invocation examines (model_runner)
from loom.runtime.aws.entry import entry_point
from loom.runtime.aws.platform import with_platform

handler = entry_point("exams", with_platform(exam_job), correlation_id_path="")
