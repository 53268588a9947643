"""Measuring and reporting: step benchmarks and FLOP counts (tables and plots join here)."""
from mimbench.analysis.benchmark import (StepBenchmark, algorithm_flops, benchmark_algorithm, count_flops,
                                         matmul_gflops)

__all__ = ['StepBenchmark', 'algorithm_flops', 'benchmark_algorithm', 'count_flops', 'matmul_gflops']
