"""The workflow builder: plain English in, a valid workflow out, refined by conversation.

``sessions`` is the service the API and the CLI call; ``drafting`` asks the model for a
definition constrained by a JSON Schema and repairs it with the validator's problems;
``gaps`` marks what the workspace lacks; ``dry_run`` runs a draft with recorders in place
of side effects; ``explain`` reads a failed run and proposes a fix as a draft diff.
"""
