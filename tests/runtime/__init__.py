"""Runtime tests: the engine, the test clock and runtime, the worker, crash recovery."""
