"""The SSOT of final bars: append-only stores (JSONL default, SQLite option) and the tail cache."""
