"""Governed agents: versioned specs, maturity levels that limit what an agent may do,
episodes with feedback, long-term recall, and graduation exams."""
