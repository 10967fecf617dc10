"""Typed, frozen models of every public payload; `contracts/public/*.json` is their SSOT."""
