"""Order gateways: one Protocol (`port.OrderGateway`), one module per broker."""
