"""Deployments of published versions beyond one host: `trtpipe deploy dynamo` writes the NVIDIA Dynamo operator's
DynamoGraphDeployment (dynamo_graph.py) around Dynamo's own TensorRT-LLM worker (dynamo_worker.py says why that
worker) for a version a model repository holds or a build config names (source.py); sizing.py is what `trtpipe
plan` prints of it."""
