"""The GPU path: TensorRT-LLM command recipes, engine-directory checks, the tensorrtllm backend's Triton
configs and the model set a publish writes, machine preflight and the multi-GPU launch. Nothing here
imports TensorRT-LLM; it describes what to run and checks what was produced, so it is tested on machines
without a GPU."""
