"""The sim broker (the demo default): seeded, calendar-aware ticks and their own 1m history."""
