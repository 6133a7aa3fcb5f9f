"""The reference engine behind Triton: the tensorrt_llm tensor interface and the one loop that owns it.

Pure Python and NumPy: the Triton adapter in model_repo/engine/1/model.py only passes tensors and a
response sender in, so this runs and is tested without Triton too.
"""
