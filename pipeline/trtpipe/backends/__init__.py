"""One object per backend (reference, trt-engine, trtllm-pytorch): what differs between them, and only that.

See base.py for the interface and backend_registry.py for the list of backends and what each accepts.
"""

from trtpipe.backend_registry import backend_names, get_backend

__all__ = ["backend_names", "get_backend"]
