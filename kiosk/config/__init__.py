"""Configuration: layered TOML (shipped `defaults.toml`, the site file, central IT's signed layer),
its schema, signed layers, their store and the live applier."""
