"""Use cases, one module per concern. Collaborators are passed in at construction."""
