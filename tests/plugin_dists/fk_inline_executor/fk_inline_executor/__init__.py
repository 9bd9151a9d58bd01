"""A third-party executor plugin, as a user would publish one on PyPI."""

__version__ = "1.2.3"
