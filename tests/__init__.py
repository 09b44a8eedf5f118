"""Test package: makes `tests/export` import as `tests.export`, never shadowing `export`."""
