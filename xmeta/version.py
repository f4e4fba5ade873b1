"""The xmeta version, kept in one place so configs can record and check it."""

__version__ = "0.1.0"
