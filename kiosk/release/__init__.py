"""Signed software releases: manifest, fetch and stage, root install, the start guard."""
