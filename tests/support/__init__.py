"""Test support: fakes, fixture paths, hostile inputs, shared app setups."""
