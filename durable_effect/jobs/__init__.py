"""Job semantics (layer B): Continuous, Debounce, Task and their shared instance API."""
