"""A local Hugging Face hub for tests: the few routes huggingface_hub calls to download a snapshot.

    GET  /api/models/{repo}/revision/{rev}[?blobs=true]   model info: commit sha, siblings (+ sizes, hashes)
    GET  /api/models/{repo}/tree/{rev}[?recursive=...]    the file listing snapshot_download uses
    HEAD /{repo}/resolve/{rev}/{file}                     X-Repo-Commit, ETag / X-Linked-Etag, sizes
    GET  /{repo}/resolve/{rev}/{file}                     the bytes, with `Range: bytes=N-` answered by 206

Files matching `lfs_patterns` are served as LFS files (the ETag is their sha256, as on huggingface.co),
the others as plain git blobs (the ETag is the git blob id). Every request is logged with its headers so a
test can prove what the client did. Faults are injected per file: serve corrupted bytes, close the connection
part-way through the body once, or answer one GET with an HTTP error. Listens on 127.0.0.1 only and answers
at most `max_requests` requests.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit


def git_blob_id(data: bytes) -> str:
    """What git (and the hub's `blobId`/`oid`) calls a file: sha1 of a `blob <size>\\0` header and the bytes."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Commit:
    sha: str
    files: dict[str, bytes]


@dataclass
class Repo:
    commits: dict[str, Commit] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)  # branch or tag -> commit sha


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names

    @property
    def filename(self) -> str | None:
        """The file of a /resolve/ request, else None."""
        _, sep, rest = self.path.partition("/resolve/")
        return rest.split("/", 1)[1] if sep else None


class HubServer:
    def __init__(self, lfs_patterns: tuple[str, ...] = ("*.safetensors", "*.bin", "*.pt", "*.pth"),
                 max_requests: int = 1000):
        self.lfs_patterns = lfs_patterns
        self.max_requests = max_requests
        self.repos: dict[str, Repo] = {}
        self.log: list[Request] = []
        self.required_token: str | None = None  # when set, requests without `Bearer <token>` get 401
        self._corrupt: set[tuple[str, str]] = set()
        self._drop_after: dict[tuple[str, str], int] = {}  # (repo, file) -> bytes to send before hanging up
        self._fail_next: dict[tuple[str, str], int] = {}  # (repo, file) -> HTTP status for its next GET
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> "HubServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)

    # --- repository contents -------------------------------------------------------------------------------

    def add_commit(self, repo_id: str, files: dict[str, bytes], refs: tuple[str, ...] = ("main",)) -> str:
        """Add a commit holding exactly `files`; point `refs` at it. Returns the commit sha."""
        h = hashlib.sha1(repo_id.encode())
        for name in sorted(files):
            h.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
        sha = h.hexdigest()
        repo = self.repos.setdefault(repo_id, Repo())
        repo.commits[sha] = Commit(sha, dict(files))
        for ref in refs:
            repo.refs[ref] = sha
        return sha

    def add_directory(self, repo_id: str, directory: Path, refs: tuple[str, ...] = ("main",)) -> str:
        files = {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}
        return self.add_commit(repo_id, files, refs)

    # --- faults ----------------------------------------------------------------------------------------------

    def corrupt(self, repo_id: str, filename: str) -> None:
        """Serve `filename` with one byte flipped, while the metadata keeps the true hashes."""
        self._corrupt.add((repo_id, filename))

    def drop_connection_once(self, repo_id: str, filename: str, after_bytes: int) -> None:
        """The next GET of `filename` sends `after_bytes` of the body and then closes the connection."""
        self._drop_after[(repo_id, filename)] = after_bytes

    def fail_next_get(self, repo_id: str, filename: str, status: int = 500) -> None:
        """The next GET of `filename` answers `status` (the HEAD before it still succeeds)."""
        self._fail_next[(repo_id, filename)] = status

    def requests_for(self, filename: str, method: str = "GET") -> list[Request]:
        return [r for r in self.log if r.method == method and r.filename == filename]

    # --- what the handler asks ---------------------------------------------------------------------------

    def _commit(self, repo_id: str, rev: str) -> Commit | None | str:
        repo = self.repos.get(repo_id)
        if repo is None:
            return "RepoNotFound"
        sha = repo.refs.get(rev, rev)
        return repo.commits.get(sha) or "RevisionNotFound"

    def _file_entry(self, name: str, data: bytes, api: str) -> dict:
        """One file as the model-info (`siblings`) or tree API describes it."""
        is_lfs = any(fnmatch.fnmatch(name, p) for p in self.lfs_patterns)
        sha256 = hashlib.sha256(data).hexdigest()
        pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {len(data)}\n".encode()
        blob_id = git_blob_id(pointer if is_lfs else data)
        if api == "siblings":
            entry = {"rfilename": name, "size": len(data), "blobId": blob_id}
            if is_lfs:
                entry["lfs"] = {"sha256": sha256, "size": len(data), "pointerSize": len(pointer)}
        else:
            entry = {"type": "file", "path": name, "size": len(data), "oid": blob_id}
            if is_lfs:
                entry["lfs"] = {"oid": sha256, "size": len(data), "pointerSize": len(pointer)}
        return entry


def _handler_for(hub: HubServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # keep test output quiet; `hub.log` is the record
            pass

        def do_HEAD(self) -> None:
            self._handle(send_body=False)

        def do_GET(self) -> None:
            self._handle(send_body=True)

        def _handle(self, send_body: bool) -> None:
            with hub._lock:
                hub.log.append(Request(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
                too_many = len(hub.log) > hub.max_requests
            if too_many:
                return self._error(503, "TooManyRequests", "the test hub's request budget is spent")
            if hub.required_token and self.headers.get("Authorization") != f"Bearer {hub.required_token}":
                return self._error(401, "RepoNotFound", "Invalid username or password.")
            url = urlsplit(self.path)
            path = unquote(url.path)
            query = parse_qs(url.query)
            if path.startswith("/api/models/"):
                repo_id, _, rest = path[len("/api/models/"):].partition("/")
                name, _, rest = rest.partition("/")
                kind, _, rev = rest.partition("/")
                return self._api(f"{repo_id}/{name}", kind, rev, query)
            parts = path.lstrip("/").split("/", 4)
            if len(parts) == 5 and parts[2] == "resolve":
                return self._resolve(f"{parts[0]}/{parts[1]}", parts[3], parts[4], send_body)
            return self._error(404, None, f"no route for {path}")

        def _api(self, repo_id: str, kind: str, rev: str, query: dict) -> None:
            commit = hub._commit(repo_id, rev.split("/", 1)[0])
            if isinstance(commit, str):
                return self._error(404, commit, f"{commit}: {repo_id}@{rev}")
            if kind == "revision":
                body = {"id": repo_id, "modelId": repo_id, "sha": commit.sha, "private": False,
                        "siblings": [hub._file_entry(n, d, "siblings") if query.get("blobs") == ["True"]
                                     or query.get("blobs") == ["true"] else {"rfilename": n}
                                     for n, d in sorted(commit.files.items())]}
            elif kind == "tree":
                body = [hub._file_entry(n, d, "tree") for n, d in sorted(commit.files.items())]
            else:
                return self._error(404, None, f"no api route {kind}")
            self._send(200, {"Content-Type": "application/json"}, json.dumps(body).encode())

        def _resolve(self, repo_id: str, rev: str, filename: str, send_body: bool) -> None:
            commit = hub._commit(repo_id, rev)
            if isinstance(commit, str):
                return self._error(404, commit, f"{commit}: {repo_id}@{rev}")
            if filename not in commit.files:
                return self._error(404, "EntryNotFound", f"{filename} not in {repo_id}@{rev}",
                                   {"X-Repo-Commit": commit.sha})
            status = hub._fail_next.pop((repo_id, filename), None) if send_body else None
            if status:
                return self._error(status, None, "injected failure")
            data = commit.files[filename]
            entry = hub._file_entry(filename, data, "tree")
            headers = {"X-Repo-Commit": commit.sha, "ETag": f'"{entry["oid"]}"', "Accept-Ranges": "bytes",
                       "Content-Type": "application/octet-stream"}
            if "lfs" in entry:
                # As huggingface.co: the ETag of the linked LFS object is its sha256.
                headers.update({"X-Linked-Etag": f'"{entry["lfs"]["oid"]}"', "X-Linked-Size": str(len(data))})
            if (repo_id, filename) in hub._corrupt:
                data = bytes([data[0] ^ 0xFF]) + data[1:]
            start = _range_start(self.headers.get("Range"))
            status = 200
            if start:
                status = 206
                headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
            body = data[start:]
            drop_after = hub._drop_after.pop((repo_id, filename), None) if send_body else None
            self._send(status, headers, body if send_body else b"", content_length=len(body),
                       drop_after=drop_after)

        def _error(self, status: int, code: str | None, message: str, extra: dict | None = None) -> None:
            headers = {"Content-Type": "application/json", "X-Error-Message": message, **(extra or {})}
            if code:
                headers["X-Error-Code"] = code
            self._send(status, headers, json.dumps({"error": message}).encode())

        def _send(self, status: int, headers: dict, body: bytes, content_length: int | None = None,
                  drop_after: int | None = None) -> None:
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body) if content_length is None else content_length))
            self.end_headers()
            if drop_after is not None:
                # Promise the whole body, deliver part of it, hang up: what a dropped connection looks like.
                self.wfile.write(body[:drop_after])
                self.wfile.flush()
                self.close_connection = True
                return
            if self.command != "HEAD":
                self.wfile.write(body)

    return Handler


def _range_start(header: str | None) -> int:
    """The N of `bytes=N-` (the only form huggingface_hub sends to resume); 0 when absent."""
    if not header or not header.startswith("bytes="):
        return 0
    first = header[len("bytes="):].split(",")[0]
    return int(first.split("-")[0] or 0)
