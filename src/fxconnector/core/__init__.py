"""The pure core: bucket geometry, calendar, contracts, builders.

Rules: no I/O, no clock reads, no asyncio, no Redis, no broker SDK. Time comes in as an argument
(epoch milliseconds, UTC); data comes in as values. An import-linter contract enforces this.
"""
