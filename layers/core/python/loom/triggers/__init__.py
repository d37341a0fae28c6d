"""Triggers: what starts workflows by itself.

Deploying a workflow binds the trigger nodes of its live version (``deploy``): schedules
for TRIGGER.CRON, verified endpoints for TRIGGER.WEBHOOK, GITHUB and SLACK, an address for
TRIGGER.EMAIL. What arrives is verified and recorded (``receive``, ``schedules``) in the
transaction that starts its run under the workflow's concurrency policy (``intake``), or
else queues it (``queue``); a start that keeps failing lands in the dead letters, which
can be replayed.
"""
