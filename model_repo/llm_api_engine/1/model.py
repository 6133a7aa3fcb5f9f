"""Triton Python-backend model for backend trtllm-pytorch (`<model>-engine`): tensorrt_llm.LLM behind
trtpipe's token-id tensor interface.

Thin on purpose, like model_repo/engine/1/model.py: tensors in (trtpipe.backend.tensors), the LlmApiLoop
(trtpipe.backend.llm_api) drives `LLM.generate_async`, responses out through each request's decoupled
sender. The LLM API arguments are the version's engine/llm_api_options.yaml (written at build time).
"""

import uuid
from pathlib import Path

import triton_python_backend_utils as pb_utils

from trtpipe.backend.llm_api import LlmApiLoop
from trtpipe.backend.tensors import BadRequest, decode_request
from trtpipe.backend.triton_io import TritonSender, read_inputs
from trtpipe.repo.model_config import ENGINE_INPUTS
from trtpipe.spec import ServingSpec
from trtpipe.trt.llm_api import resolve_llm_args

INPUT_NAMES = tuple(row[0] for row in ENGINE_INPUTS)


class TritonPythonModel:
    def initialize(self, args):
        import tensorrt_llm

        from trtpipe.trt.preflight import check_loaded_llm_api

        version_dir = Path(args["model_repository"]) / args["model_version"]
        spec = ServingSpec.read(version_dir / "spec.json")
        check_loaded_llm_api(tensorrt_llm.__version__)  # refuses a TensorRT-LLM older than the YAML needs
        self.llm = tensorrt_llm.LLM(**resolve_llm_args(version_dir / "engine"))
        self.loop = LlmApiLoop(self.llm, tensorrt_llm, stream_interval=spec.stream_interval)
        self.loop.start()

    def execute(self, requests):
        for request in requests:
            sender = TritonSender(request, pb_utils)
            tensors = read_inputs(request, INPUT_NAMES, pb_utils)
            stop = tensors.get("stop")
            if stop is not None and bool(stop.reshape(-1)[0]):
                self.loop.stop_request(request.request_id(), sender)
                continue
            try:
                # TensorRT-LLM compiles and enforces the guide itself (its guided_decoding_backend).
                engine_request, opts = decode_request(request.request_id() or uuid.uuid4().hex, tensors,
                                                      engine_enforces_guides=True)
            except BadRequest as e:
                sender.send(None, error=str(e), final=True)
                continue
            self.loop.submit(engine_request, opts, sender)
        return None

    def finalize(self):
        self.loop.shutdown()
        self.llm.shutdown()
