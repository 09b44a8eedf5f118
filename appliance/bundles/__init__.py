"""Bundles: the documented zip archives that carry training jobs and models (docs/bundles.md)."""
