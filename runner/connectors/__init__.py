"""Connectors: the plug-in boundary every kind of system implements, the registry of kinds,
and one module (or folder) per kind."""
