"""Who is calling: users (JWT), API keys (scoped), and what they may do."""
