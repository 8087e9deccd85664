"""One module per exercise topic; each offers ``generate(seed)`` and ``build(**params)``."""
