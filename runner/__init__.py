"""runner: a declarative, GitOps-style data-sync job runner."""

__version__ = "0.1.0"
