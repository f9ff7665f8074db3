"""firstwatch: the on-call engineer's first responder (synthetic monitoring and health checks)."""

__version__ = "0.1.0"
