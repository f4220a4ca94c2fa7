"""Synthetic worlds shared by the tests and the benchmarks (small, seeded, with known truth)."""
