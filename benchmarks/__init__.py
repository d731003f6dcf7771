"""The meanflow_sci benchmark suite (run with ``python -m benchmarks``)."""
