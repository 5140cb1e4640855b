"""Fast unit tests: the engine's rules checked with in-memory fakes and a manual clock, no servers."""
