"""Execution, the I/O part: the durable journal and the broker gateways around the pure core in
`fxconnector.execution` (DESIGN §16)."""
