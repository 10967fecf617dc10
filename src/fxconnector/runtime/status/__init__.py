"""Status (status_v2) and health: one field per fact, bounded in size, loud about problems."""
