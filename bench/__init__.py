"""Benchmark scripts and their committed results (bench/results/).

Each script runs from the repository root as a module, e.g. `.venv/bin/python -m bench.baseline --help`;
scripts share helpers as `from bench.machine_load import ...` and use trtpipe as the installed package.
Not to be confused with `trtpipe.bench`, the library behind `trtpipe bench`.
"""
