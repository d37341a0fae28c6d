"""Evaluation sets: English descriptions with the structure a good answer has."""
