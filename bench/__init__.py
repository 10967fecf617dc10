"""Benchmarks (`make bench`): throughput as ratios against baselines run in the same process."""
