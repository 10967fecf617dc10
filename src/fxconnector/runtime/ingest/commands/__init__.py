"""Commands (commands_v1): warmup, backfill, tail_guard, republish_tail, rebuild_derived."""
