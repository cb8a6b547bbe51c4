"""portwright's benchmarks (issue #8): ``python -m bench [--quick]``; see run.py."""
