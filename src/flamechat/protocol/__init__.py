"""Wire protocol: models, versions, error codes. Pure: no I/O, no framework."""
