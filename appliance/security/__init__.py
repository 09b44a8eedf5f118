"""Security of a tablet that leaves the lab: signed bundles, pinned keys, credentials kept
outside the project folder (docs/security.md)."""
