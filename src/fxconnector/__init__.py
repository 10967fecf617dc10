"""fxconnector: FX broker feeds turned into one trustworthy surface of OHLCV bars."""

__version__ = "0.1.0"
