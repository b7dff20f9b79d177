"""senformer's version, in a module of its own so that any part of the package can read it without
importing the package's public surface (which imports the model and the weights loader)."""

__version__ = "0.1.0"
