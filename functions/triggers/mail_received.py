"""Lambda: an SES receipt rule's message (stored in S3 first); starts the runs of the
EMAIL triggers it is addressed to."""

from loom.runtime.aws.entry import entry_point
from loom.runtime.aws.mail import receive_ses
from loom.runtime.aws.platform import with_platform

handler = entry_point(
    "mail_received", with_platform(receive_ses), correlation_id_path="Records[0].ses.mail.messageId"
)
