"""embedlab: choose, adapt, shrink, serve and watch text embedding models on your own data."""

__version__ = "0.1.0"
