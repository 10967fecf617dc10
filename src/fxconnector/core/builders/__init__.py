"""Bar builders: live (per tick), vectorised (numpy, replay/backfill) and derived (from final 1m).

All three share one definition of a bar (`spec.py`) and agree exactly on the same input.
"""
