"""The engine client: Triton's gRPC stream API as trtpipe uses it. It imports nothing else from trtpipe.

    calls.py        EngineCall (the tensorrt_llm inputs) -> TokenDelta... then Final; EngineError and kin
    client.py       TritonEngineClient: one ModelStreamInfer call per engine request, cancelled with it
    replicas.py     ReplicaPool: least-outstanding choice, fail-over before the first token, health checks
    speculation.py  draft-target rounds (Speculator) and the per-model on/off controller (AdaptiveSpeculation)
"""

from trtpipe.serve.engine_client.calls import (DRAFT_COUNTERS, OUTPUT_IDS, OUTPUT_KV_REUSED, OUTPUT_LOG_PROBS,
                                               OUTPUT_PROMPT, OUTPUT_TOP, EngineCall, EngineError, EngineRejected,
                                               EngineUnavailable, EngineUnreachable, Final, TokenDelta)
from trtpipe.serve.engine_client.client import CHANNEL_OPTIONS, TritonEngineClient, stream_infer_callable

__all__ = ["CHANNEL_OPTIONS", "DRAFT_COUNTERS", "OUTPUT_IDS", "OUTPUT_KV_REUSED", "OUTPUT_LOG_PROBS", "OUTPUT_PROMPT",
           "OUTPUT_TOP", "EngineCall", "EngineError", "EngineRejected", "EngineUnavailable", "EngineUnreachable",
           "Final", "TokenDelta", "TritonEngineClient", "stream_infer_callable"]
