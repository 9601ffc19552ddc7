"""kami's benchmarks: one module per benchmark, run by ``python -m bench``, merged into results.json."""
