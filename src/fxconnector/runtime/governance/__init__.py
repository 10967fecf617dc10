"""Rails and metrics that keep the connector honest."""
