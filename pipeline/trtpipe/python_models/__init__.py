"""What runs in Triton's Python backend behind each `<model>-engine`: the tensorrt_llm tensor interface, the
reference engine's EngineLoop (loop.py) and trtllm-pytorch's LlmApiLoop (llm_api.py).

Pure Python and NumPy: the Triton adapters in model_repo/*/1/model.py only pass tensors and a response
sender in, so this runs and is tested without Triton too.
"""
