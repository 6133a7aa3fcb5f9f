"""Triton Python-backend model for backend trtllm-pytorch (`<model>-engine`): tensorrt_llm.LLM behind
trtpipe's token-id tensor interface.

Thin on purpose, like model_repo/engine/1/model.py: tensors in (trtpipe.python_models.tensors), the LlmApiLoop
(trtpipe.python_models.llm_api) drives `LLM.generate_async`, responses out through each request's decoupled
sender. The LLM API arguments are the version's engine/llm_api_options.yaml (written at build time), made into
`LLM(**args)` by TensorRT-LLM's own loader, as trtllm-serve does (trtpipe.trt.llm_args.load_llm_args).
"""

from pathlib import Path

import triton_python_backend_utils as pb_utils

from trtpipe.python_models.llm_api import LlmApiLoop
from trtpipe.python_models.tensors import decode_request
from trtpipe.python_models.triton_io import submit_requests
from trtpipe.spec import ServingSpec
from trtpipe.trt.llm_args import load_llm_args


class TritonPythonModel:
    def initialize(self, args):
        import tensorrt_llm

        from trtpipe.trt.preflight import check_loaded_llm_api

        version_dir = Path(args["model_repository"]) / args["model_version"]
        spec = ServingSpec.read(version_dir / "spec.json")
        check_loaded_llm_api(tensorrt_llm.__version__)  # refuses a TensorRT-LLM older than the YAML needs
        # Refuses arguments written for a TensorRT-LLM that spells them differently, before anything loads.
        self.llm = tensorrt_llm.LLM(**load_llm_args(tensorrt_llm, version_dir / "engine"))
        self.loop = LlmApiLoop(self.llm, tensorrt_llm, stream_interval=spec.stream_interval)
        self.loop.start()

    def execute(self, requests):
        # TensorRT-LLM compiles and enforces the guide itself (its guided_decoding_backend).
        submit_requests(requests, self.loop,
                        lambda rid, tensors: decode_request(rid, tensors, engine_enforces_guides=True), pb_utils)
        return None

    def finalize(self):
        self.loop.shutdown()
        self.llm.shutdown()
