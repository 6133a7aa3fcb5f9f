"""The build stages, in order. Publishing is not a cached stage: it writes a new repository version."""

from trtpipe.stages import compile, convert, fetch, quantize

STAGES = (fetch.STAGE, convert.STAGE, quantize.STAGE, compile.STAGE)
