"""Processes: Triton (the wheel's or the NGC image's, mpirun for TensorRT-LLM), the API servers, the drain.
Never on a request's path."""
