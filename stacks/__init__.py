"""CDK stacks: one per concern (network, data, api, engine, triggers, observability)."""
