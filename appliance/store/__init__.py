"""The project store: SQLite (WAL, synchronous=FULL) plus content-addressed images."""

from appliance.store.project import ImageRecord, LabelVersion, Project

__all__ = ["ImageRecord", "LabelVersion", "Project"]
