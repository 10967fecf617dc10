"""The OANDA v20 broker: pricing stream ticks and M1 candles (`client.OandaBroker`)."""
