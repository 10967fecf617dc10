"""The SMC layer's I/O (DESIGN §15): the live consumer that feeds the pure engine
(`fxconnector.smc`) with final bars from the public surface and publishes its hints, and the
read side the HTTP API and the push stream serve them from. Key names: `runtime.publish.keys`.
"""
