"""Errors shared by the VLM loading code, the MoLE adapters and the engine."""


class VLMLoadError(RuntimeError):
    """A model or adapter could not be loaded; the message says which one and why."""
