"""Pre-trade risk: the limits (`limits.py`) and the decision on one intent (`validator.py`)."""
