"""The directory (login server): a thin HTTP adapter over DirectoryService."""
