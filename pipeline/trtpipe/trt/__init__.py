"""The GPU recipes: TensorRT-LLM command lines (recipes.py), the LLM API arguments and ModelOpt export of backend
trtllm-pytorch (llm_args.py), engine-directory checks (engine_dir.py) and machine preflight (preflight.py).
Nothing here imports TensorRT-LLM; it describes what to run and checks what was produced, so it is tested on
machines without a GPU. The tensorrtllm model configs and model set live with the other repository writers
(repo/tensorrtllm_configs.py, repo/model_set.py); the multi-GPU launch with the other launch code
(serve/process/trt_launch.py); the GPU table and capacity arithmetic at the bottom (hardware.py, capacity.py)."""
