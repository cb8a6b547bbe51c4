"""portwright: turn a blueprint (YAML) into a standalone FastAPI + anyio service."""

__version__ = "0.1.0"
