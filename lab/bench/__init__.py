"""The lab's benchmarks (scripts/bench-*): figures measured side by side in one run, never asserted."""
