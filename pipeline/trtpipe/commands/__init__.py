"""The click commands, one module per command group; `trtpipe.cli` registers them on its group.

Each command parses its options, calls one library function and prints; no logic lives here.
"""
