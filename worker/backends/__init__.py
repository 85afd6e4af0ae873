"""Model backends, one module per intent; see registry.py for how they are found."""
