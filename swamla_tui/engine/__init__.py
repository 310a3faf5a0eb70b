"""Generation engine: caches, sampling, streaming and batching (no UI imports)."""
