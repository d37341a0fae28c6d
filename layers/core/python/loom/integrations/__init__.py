"""Clients of the services Loom acts on: Slack, GitHub, Notion, and mail over SMTP.

Nodes (``EXTERNAL_ACTION.*``) and notifications (human-in-the-loop) share them. Every
connection obeys the outbound policy (``loom.net``) with the caller's allowlist; tokens are
plain ``str`` arguments here, used for one call and never put in a message or a result.
"""
