"""AWS adapters: the only place that talks to AWS (boto3 lives here and nowhere else)."""
