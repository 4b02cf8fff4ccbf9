"""durable_effect."""
