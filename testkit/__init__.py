"""Support code shared by the tests and the benchmarks (not shipped with the appliance).

`bench/` imports this package, never `tests/`, so a benchmark does not depend on pytest's
fixtures or on the test tree's layout.
"""
