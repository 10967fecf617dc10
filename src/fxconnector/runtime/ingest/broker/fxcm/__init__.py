"""The FXCM broker: ForexConnect (Python 3.7 only) in a bridge subprocess behind the BrokerPort.

`adapter.FxcmBroker` is the port; `bridge.py` is the program it runs under `broker.fxcm.python`,
started, read and stopped by `bridge_process.py` with the environment of `bridge_env.py`;
`protocol.py` is the JSON-lines protocol between them (docs/fxcm_bridge_protocol.md).
"""
