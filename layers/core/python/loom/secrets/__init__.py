"""The credentials vault: typed credentials, sealed with AES-256-GCM envelope encryption.

Plaintext exists only in memory, between ``resolve`` and the node that uses it; rows hold
ciphertext, and API replies and logs hold names, types and field names only.
"""
