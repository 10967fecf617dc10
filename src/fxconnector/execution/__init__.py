"""Execution and risk (DESIGN §16), the pure part: intents in, decisions, events and gateway
commands out (`core.ExecCore`). No I/O, no clock, no asyncio: the runtime part
(`fxconnector.runtime.execution`) owns the journal, the gateways and time. See docs/execution.md.
"""
