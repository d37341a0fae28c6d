"""Lambda: batches of the SQS intake queue; answers which records to try again."""

from loom.runtime.aws.entry import entry_point
from loom.runtime.aws.intake import consume_intake
from loom.runtime.aws.platform import with_platform

handler = entry_point(
    "intake_consumer", with_platform(consume_intake), correlation_id_path="Records[0].messageId"
)
