"""Publishing: the Redis surface, the HTTP API and the push stream read what the pipeline emits."""
