"""trtpipe: from a Hugging Face checkpoint to a latency-critical OpenAI-compatible endpoint."""

__version__ = "0.1.0"
