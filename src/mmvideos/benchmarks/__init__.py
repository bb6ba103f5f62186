"""mmvideos.benchmarks."""
