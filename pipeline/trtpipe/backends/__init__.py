"""One object per backend (reference, trt-engine, trtllm-pytorch): what differs between them, and only that.

See base.py for the interface and trtpipe/backend_registry.py for the list of backends, what each accepts, and
`get_backend(name)`, through which everything else reaches them (nothing imports this package by name, so the
packages below it, which ask the registry, never form a cycle with it).
"""
