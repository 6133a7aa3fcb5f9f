"""trtpipe on NVIDIA Dynamo: a worker that serves a published model to Dynamo's frontend and KV router.

Its own room, beside serve/: it may use engine/, repo/, spec and serve/process (to supervise processes), and
nothing below imports it. Only worker.py and the processes it starts import the `dynamo` package (the optional
`dynamo` extra); the rest is plain Python, tested without it.

    requests.py      Dynamo's token request dict -> EngineRequest; engine outputs -> Dynamo's response chunks
    engine_thread.py the thread that owns the reference engine: in-flight batching, aborts, KV events, load,
                     and the switch to a newly published (or rolled-back) version
    kv_events.py     the engine block pool's stored/removed events -> Dynamo's KvEventPublisher calls
    model_card.py    the directory Dynamo's frontend reads the tokenizer and context length from
    worker.py        the LLMEngine Dynamo's Worker drives (`python -m trtpipe.dynamo.worker`)
    stack.py         one host: Dynamo's frontend and N workers, supervised and drained (`trtpipe serve --dynamo`)
"""
