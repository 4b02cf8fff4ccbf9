"""The runtime (layer D): registry, engine (one transaction per handler), event bus."""
