"""Broker adapters behind one port (`port.BrokerPort`): sim, replay, fxcm, oanda."""
