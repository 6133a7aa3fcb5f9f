"""Tell a running Triton (explicit model control) that a model's live version changed.

`trtpipe serve` records the server it started in `<repo>/.trtpipe-server.json` (Triton only treats
directories as models, so the file is invisible to it). Publish and rollback read that record and ask
Triton to reload the model through its repository API; Triton finishes in-flight requests on the old
version before unloading it. With no server running there is nothing to do: the next start loads the
live version.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

RECORD = ".trtpipe-server.json"
SETTLE_S = 60.0  # longest wait for a draining earlier load of the version being loaded
# Triton answers a load once the model is ready. tritonclient's default (60 s) is shorter than loading a large
# engine on a GPU, or the tiny one on a loaded 2-core CI box; past it the load still goes on in Triton.
LOAD_TIMEOUT_S = 600.0


def record_server(repo: Path, http_url: str, pid: int) -> None:
    path = Path(repo) / RECORD
    tmp = path.with_name(f"{RECORD}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps({"http_url": http_url, "pid": pid}) + "\n")
    os.replace(tmp, path)


def clear_server_record(repo: Path, pid: int) -> None:
    path = Path(repo) / RECORD
    try:
        if json.loads(path.read_text()).get("pid") == pid:
            path.unlink()
    except (OSError, ValueError):
        pass


def running_server(repo: Path) -> str | None:
    try:
        record = json.loads((Path(repo) / RECORD).read_text())
        os.kill(int(record["pid"]), 0)
    except (OSError, ValueError, KeyError, ProcessLookupError):
        return None
    return record["http_url"]


def _wait_unloaded(client, name: str, version: int, timeout_s: float) -> bool:
    """Wait until Triton no longer reports `version` of `name` UNLOADING; False if it still does after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while any(m.get("name") == name and m.get("version") == str(version) and m.get("state") == "UNLOADING"
              for m in client.get_model_repository_index()):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def reload_models(repo: Path, model_names: list[str], version: int | None = None,
                  settle_s: float = SETTLE_S) -> list[str]:
    """Reload each model on the recorded server (to `version`, its config's live version, when given: an earlier
    load of it still unloading is waited for first); returns the names reloaded (none if no server runs)."""
    url = running_server(repo)
    if url is None:
        return []
    from http.client import HTTPException

    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    from trtpipe.errors import PublishError

    client = httpclient.InferenceServerClient(url.removeprefix("http://"), network_timeout=LOAD_TIMEOUT_S)
    try:
        for name in model_names:
            if version is not None:
                # Past the bound the load goes ahead all the same: the new live version matters more.
                _wait_unloaded(client, name, version, settle_s)
            client.load_model(name)
    except InferenceServerException as e:
        raise PublishError(f"Triton at {url} refused to load the new live version: {e}", where="publish",
                           fix="read Triton's log; `trtpipe rollback` restores the previous version") from None
    except (OSError, HTTPException) as e:
        # tritonclient.http passes socket errors through: refused or reset (Triton exited, e.g. it crashed while
        # swapping versions), or no answer in LOAD_TIMEOUT_S (a hung server).
        state = "is still running" if running_server(repo) else "has exited"
        raise PublishError(f"Triton at {url} did not answer the reload ({type(e).__name__}: {e}); its process "
                           f"{state}", where="publish",
                           fix="read Triton's log; the new version is live on disk and loads when Triton "
                               "(re)starts, or `trtpipe rollback` restores the previous one") from None
    finally:
        client.close()
    return model_names
