"""A small local stand-in for the Hugging Face Hub, for testing uploads and downloads without the network.

It implements the endpoints that `huggingface_hub` 2.x uses to create a repository, upload a folder (regular files
inline in the commit, large and binary files through the legacy git-LFS batch protocol), create a branch, and resolve
files for `from_pretrained` / `hf_hub_download`:

| method | path | used by |
|---|---|---|
| POST | `/api/repos/create` | `create_repo` |
| GET | `/api/whoami-v2` | `whoami` |
| GET | `/api/models/{repo}` and `/api/models/{repo}/revision/{rev}` | `model_info`, revision resolution |
| POST | `/api/models/{repo}/branch/{branch}` | `create_branch` |
| POST | `/api/models/{repo}/preupload/{rev}` | upload modes ("regular" / "lfs") |
| POST | `/api/validate-yaml` | model card metadata check |
| POST | `/{repo}.git/info/lfs/objects/batch` | LFS upload actions |
| PUT | `/lfs-upload/{sha256}` | LFS object upload (checked against its sha256) |
| POST | `/api/models/{repo}/commit/{rev}` | the commit itself (NDJSON) |
| GET | `/api/models/{repo}/tree/{rev}[/{path}]` | `list_repo_tree` / `list_repo_files` |
| HEAD, GET | `/{repo}/resolve/{rev}/{path}` | file metadata and download |

Xet storage is not implemented: run the clients with `HF_HUB_DISABLE_XET=1` (with `hf_xet` installed,
`huggingface_hub` otherwise uploads large files through a Xet CAS service; the token endpoint answers 501 with that
advice). Errors carry the `X-Error-Code` headers (`RepoNotFound`, `RevisionNotFound`, `EntryNotFound`) that
`huggingface_hub` turns into its typed exceptions.

```python
>>> with LocalHub(storage_dir, token="hf_local_test") as hub:
...     env = {"HF_ENDPOINT": hub.url, "HF_TOKEN": hub.token, "HF_HUB_DISABLE_XET": "1", "HF_HUB_OFFLINE": "0"}
...     subprocess.run([...], env={**os.environ, **env})  # HF_ENDPOINT must be set before huggingface_hub is imported
```

The server listens on 127.0.0.1 only, on a free port, in a background thread. Repositories live in memory, file
contents on disk under `storage_dir` (content-addressed by sha256). Only model repositories are served.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit


DEFAULT_USER = "unival-tester"
DEFAULT_BRANCH = "main"
#: Files stored through LFS, as the Hub's default `.gitattributes` does, plus every file above `LFS_THRESHOLD` bytes.
LFS_PATTERNS = ("*.safetensors", "*.bin", "*.pt", "*.pth", "*.ckpt", "*.h5", "*.msgpack", "*.onnx", "*.npy", "*.npz",
                "*.zip", "*.tar", "*.tar.gz", "*.gz", "*.pkl", "*.pickle", "*.model", "*.mp4", "*.wav")
LFS_THRESHOLD = 10 * 1024 * 1024
GITATTRIBUTES = "".join(f"{pattern} filter=lfs diff=lfs merge=lfs -text\n" for pattern in LFS_PATTERNS)
_REPO_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")


def git_blob_oid(content: bytes) -> str:
    """The git object id (sha1) of a blob with `content`."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@dataclass
class StoredFile:
    sha256: str
    size: int
    git_oid: str
    lfs: bool


@dataclass
class Commit:
    oid: str
    parent: str | None
    message: str
    files: dict[str, StoredFile]
    created_at: float = field(default_factory=time.time)


@dataclass
class Repository:
    repo_id: str
    private: bool
    branches: dict[str, str] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)

    def commit_of(self, revision: str) -> Commit | None:
        oid = self.branches.get(revision, revision)
        return self.commits.get(oid)


class HubError(Exception):
    def __init__(self, status: int, message: str, error_code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.error_code = status, message, error_code


class LocalHub:
    """
    A local hub server (see the module docstring). Use it as a context manager, or call `start()` and `stop()`.

    Args:
        storage_dir (`str` or `Path`): where file contents are stored.
        token (`str`, *optional*, defaults to `"hf_local_test_token"`): the only token accepted; writes need it, and so
            do reads of private repositories.
        user (`str`, *optional*, defaults to `"unival-tester"`): the token's user, the namespace of repositories
            created without one.
        request_timeout (`float`, *optional*, defaults to 30): socket timeout of each connection, in seconds.
    """

    def __init__(self, storage_dir, token: str = "hf_local_test_token", user: str = DEFAULT_USER,
                 request_timeout: float = 30.0):
        self.storage_dir = Path(storage_dir)
        self.objects_dir = self.storage_dir / "objects"
        self.objects_dir.mkdir(parents=True, exist_ok=True)
        self.token = token
        self.user = user
        self.request_timeout = request_timeout
        self.repos: dict[str, Repository] = {}
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -----------------------------------------------------------------------------------------------------------------
    # life cycle
    # -----------------------------------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the hub is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "LocalHub":
        if self._server is not None:
            return self
        handler = type("LocalHubHandler", (_Handler,), {"hub": self, "timeout": self.request_timeout})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name="local-hub", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> "LocalHub":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # -----------------------------------------------------------------------------------------------------------------
    # storage
    # -----------------------------------------------------------------------------------------------------------------
    def _object_path(self, sha256: str) -> Path:
        return self.objects_dir / sha256

    def store_object(self, content: bytes) -> str:
        sha256 = hashlib.sha256(content).hexdigest()
        path = self._object_path(sha256)
        if not path.exists():
            temporary = path.with_suffix(".incomplete")
            temporary.write_bytes(content)
            temporary.replace(path)
        return sha256

    def has_object(self, sha256: str) -> bool:
        return bool(re.fullmatch(r"[0-9a-f]{64}", sha256)) and self._object_path(sha256).exists()

    def read_object(self, sha256: str) -> bytes:
        return self._object_path(sha256).read_bytes()

    def read_file(self, repo_id: str, path: str, revision: str = DEFAULT_BRANCH) -> bytes:
        """The content of `path` at `revision` of `repo_id` (for tests)."""
        with self.lock:
            stored = self._commit(self._repo(repo_id), revision).files.get(path)
        if stored is None:
            raise FileNotFoundError(f"{path} is not in {repo_id}@{revision}")
        return self.read_object(stored.sha256)

    def list_files(self, repo_id: str, revision: str = DEFAULT_BRANCH) -> list[str]:
        with self.lock:
            return sorted(self._commit(self._repo(repo_id), revision).files)

    def _stored_file(self, path: str, content: bytes) -> StoredFile:
        lfs = len(content) > LFS_THRESHOLD or any(fnmatch.fnmatch(path, p) for p in LFS_PATTERNS)
        return StoredFile(self.store_object(content), len(content), git_blob_oid(content), lfs)

    @staticmethod
    def _new_commit_oid(repo_id: str, parent: str | None, message: str, files: dict[str, StoredFile]) -> str:
        digest = hashlib.sha1(json.dumps([repo_id, parent, message, time.time_ns(),
                                          sorted((p, f.sha256) for p, f in files.items())]).encode())
        return digest.hexdigest()

    # -----------------------------------------------------------------------------------------------------------------
    # repository operations (called with the lock held)
    # -----------------------------------------------------------------------------------------------------------------
    def _repo(self, repo_id: str, token: str | None = None) -> Repository:
        repo = self.repos.get(repo_id)
        if repo is None or (repo.private and token != self.token):
            raise HubError(404, f"Repository {repo_id} not found", "RepoNotFound")
        return repo

    @staticmethod
    def _commit(repo: Repository, revision: str) -> Commit:
        commit = repo.commit_of(revision)
        if commit is None:
            raise HubError(404, f"Revision {revision} not found in {repo.repo_id}", "RevisionNotFound")
        return commit

    def create_repo(self, name: str, organization: str | None, private: bool) -> tuple[Repository, bool]:
        namespace = organization or self.user
        if not _REPO_NAME.match(name) or not _REPO_NAME.match(namespace):
            raise HubError(400, f"invalid repository name {namespace}/{name}")
        repo_id = f"{namespace}/{name}"
        if repo_id in self.repos:
            return self.repos[repo_id], False
        repo = Repository(repo_id, private)
        files = {".gitattributes": self._stored_file(".gitattributes", GITATTRIBUTES.encode())}
        oid = self._new_commit_oid(repo_id, None, "initial commit", files)
        repo.commits[oid] = Commit(oid, None, "initial commit", files)
        repo.branches[DEFAULT_BRANCH] = oid
        self.repos[repo_id] = repo
        return repo, True

    def apply_commit(self, repo: Repository, revision: str, lines: list[dict]) -> Commit:
        if revision not in repo.branches:
            raise HubError(404, f"Branch {revision} not found in {repo.repo_id}", "RevisionNotFound")
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "the commit payload must start with a header line")
        header = lines[0]["value"]
        parent = repo.commits[repo.branches[revision]]
        if header.get("parentCommit") not in (None, parent.oid):
            raise HubError(412, f"parent commit {header['parentCommit']} is not the head of {revision}")
        files = dict(parent.files)
        for line in lines[1:]:
            key, value = line.get("key"), line.get("value") or {}
            path = value.get("path", "")
            if not path or path.startswith("/") or ".." in path.split("/"):
                raise HubError(400, f"invalid path {path!r}")
            if key == "file":
                if value.get("encoding") != "base64":
                    raise HubError(400, f"unsupported encoding {value.get('encoding')!r}")
                content = base64.b64decode(value["content"])
                stored = self._stored_file(path, content)
                files[path] = StoredFile(stored.sha256, stored.size, stored.git_oid, False)
            elif key == "lfsFile":
                oid = value.get("oid", "")
                if value.get("algo", "sha256") != "sha256" or not self.has_object(oid):
                    raise HubError(400, f"LFS object {oid} of {path} was not uploaded")
                content = self.read_object(oid)
                files[path] = StoredFile(oid, len(content), git_blob_oid(content), True)
            elif key == "deletedFile":
                if path not in files:
                    raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
                del files[path]
            elif key == "deletedFolder":
                prefix = path.rstrip("/") + "/"
                files = {p: f for p, f in files.items() if not p.startswith(prefix)}
            else:
                raise HubError(400, f"unsupported commit operation {key!r}")
        message = header.get("summary") or "commit"
        oid = self._new_commit_oid(repo.repo_id, parent.oid, message, files)
        commit = Commit(oid, parent.oid, message, files)
        repo.commits[oid] = commit
        repo.branches[revision] = oid
        return commit

    def repo_info(self, repo: Repository, commit: Commit) -> dict:
        namespace = repo.repo_id.split("/")[0]
        return {
            "id": repo.repo_id,
            "_id": hashlib.sha1(repo.repo_id.encode()).hexdigest()[:24],
            "modelId": repo.repo_id,
            "author": namespace,
            "sha": commit.oid,
            "private": repo.private,
            "gated": False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "library_name": "transformers",
            "lastModified": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(commit.created_at)),
            "siblings": [{"rfilename": path} for path in sorted(commit.files)],
        }


class _Handler(BaseHTTPRequestHandler):
    hub: LocalHub
    server_version = "LocalHub/1.0"

    def log_message(self, format, *args):  # keep test output quiet
        pass

    # -----------------------------------------------------------------------------------------------------------------
    # plumbing
    # -----------------------------------------------------------------------------------------------------------------
    def _token(self) -> str | None:
        authorization = self.headers.get("Authorization", "")
        return authorization[7:].strip() if authorization.lower().startswith("bearer ") else None

    def _require_token(self) -> None:
        token = self._token()
        if token is None:
            raise HubError(401, "a token is required")
        if token != self.hub.token:
            raise HubError(401, "Invalid credentials in Authorization header")

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _json_body(self) -> dict:
        try:
            return json.loads(self._body() or b"{}")
        except json.JSONDecodeError as error:
            raise HubError(400, f"invalid JSON body: {error}") from None

    def _send(self, status: int, body: bytes = b"", content_type: str = "application/json", headers=None,
              head: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if not head and body:
            self.wfile.write(body)

    def _send_json(self, status: int, payload, headers=None) -> None:
        self._send(status, json.dumps(payload).encode(), headers=headers)

    def _send_error(self, error: HubError, head: bool = False) -> None:
        headers = {"X-Error-Message": error.message}
        if error.error_code:
            headers["X-Error-Code"] = error.error_code
        self._send(error.status, json.dumps({"error": error.message}).encode(), headers=headers, head=head)

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        path, query = url.path, parse_qs(url.query)
        with self.hub.lock:
            self.hub.requests.append((method, self.path))
        head = method == "HEAD"
        try:
            for pattern, handler_name, methods in _ROUTES:
                match = pattern.fullmatch(path)
                if match and method in methods:
                    groups = {name: unquote(value) for name, value in match.groupdict().items() if value is not None}
                    getattr(self, handler_name)(method, query, **groups)
                    return
            raise HubError(404, f"no route for {method} {path} on this local hub")
        except HubError as error:
            self._send_error(error, head=head)
        except Exception as error:  # report instead of dropping the connection
            self._send_error(HubError(500, f"{type(error).__name__}: {error}"), head=head)

    def do_GET(self):
        self._dispatch("GET")

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    # -----------------------------------------------------------------------------------------------------------------
    # endpoints
    # -----------------------------------------------------------------------------------------------------------------
    def whoami(self, method, query):
        self._require_token()
        self._send_json(200, {"type": "user", "name": self.hub.user, "fullname": self.hub.user, "orgs": [],
                              "auth": {"type": "access_token", "accessToken": {"role": "write"}}})

    def create_repo(self, method, query):
        self._require_token()
        payload = self._json_body()
        if payload.get("type", "model") not in (None, "model"):
            raise HubError(400, "this local hub serves model repositories only")
        private = payload.get("visibility") == "private" or bool(payload.get("private"))
        with self.hub.lock:
            repo, created = self.hub.create_repo(payload.get("name", ""), payload.get("organization"), private)
        body = {"url": f"{self.hub.url}/{repo.repo_id}", "name": repo.repo_id, "id": repo.repo_id}
        if created:
            self._send_json(200, body)
        else:
            self._send_json(409, {**body, "error": "You already created this model repo"},
                            headers={"X-Error-Message": "You already created this model repo"})

    def model_info(self, method, query, repo_id, revision=DEFAULT_BRANCH):
        with self.hub.lock:
            repo = self.hub._repo(repo_id, self._token())
            info = self.hub.repo_info(repo, self.hub._commit(repo, revision))
        self._send_json(200, info)

    def create_branch(self, method, query, repo_id, branch):
        self._require_token()
        payload = self._json_body()
        with self.hub.lock:
            repo = self.hub._repo(repo_id, self._token())
            if branch in repo.branches:
                raise HubError(409, f"Reference {branch} already exists")
            start = payload.get("startingPoint") or DEFAULT_BRANCH
            repo.branches[branch] = self.hub._commit(repo, start).oid
        self._send_json(200, {})

    def preupload(self, method, query, repo_id, revision):
        self._require_token()
        payload = self._json_body()
        with self.hub.lock:
            repo = self.hub._repo(repo_id, self._token())
            commit = repo.commit_of(revision)
            existing = commit.files if commit is not None else {}
        files = []
        for item in payload.get("files", []):
            path, size = item["path"], int(item["size"])
            lfs = size > LFS_THRESHOLD or any(fnmatch.fnmatch(path, p) for p in LFS_PATTERNS)
            stored = existing.get(path)
            # The oid the client compares with its own to skip unchanged files: sha256 for LFS, git sha1 otherwise.
            oid = None if stored is None else (stored.sha256 if lfs else stored.git_oid)
            files.append({"path": path, "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False,
                          "oid": oid})
        self._send_json(200, {"files": files, "commitOid": commit.oid if commit is not None else None})

    def validate_yaml(self, method, query):
        self._json_body()
        self._send_json(200, {"errors": [], "warnings": []})

    def lfs_batch(self, method, query, repo_id):
        self._require_token()
        payload = self._json_body()
        with self.hub.lock:
            self.hub._repo(repo_id, self._token())
        if payload.get("operation") != "upload":
            raise HubError(400, "this local hub supports LFS uploads only (downloads go through /resolve)")
        objects = []
        for item in payload.get("objects", []):
            oid, size = item["oid"], int(item["size"])
            entry = {"oid": oid, "size": size, "authenticated": True}
            if not self.hub.has_object(oid):
                entry["actions"] = {"upload": {"href": f"{self.hub.url}/lfs-upload/{oid}", "header": {}}}
            objects.append(entry)
        self._send_json(200, {"transfer": "basic", "objects": objects},
                        headers={"Content-Type": "application/vnd.git-lfs+json"})

    def lfs_upload(self, method, query, oid):
        content = self._body()
        if hashlib.sha256(content).hexdigest() != oid:
            raise HubError(400, f"the uploaded content does not match its sha256 {oid}")
        self.hub.store_object(content)
        self._send(200)

    def xet_token(self, method, query, **_):
        raise HubError(501, "this local hub does not implement Xet storage: set HF_HUB_DISABLE_XET=1")

    def commit(self, method, query, repo_id, revision):
        self._require_token()
        if query.get("create_pr"):
            raise HubError(400, "this local hub does not implement pull requests")
        lines = [json.loads(line) for line in self._body().splitlines() if line.strip()]
        with self.hub.lock:
            repo = self.hub._repo(repo_id, self._token())
            commit = self.hub.apply_commit(repo, revision, lines)
        self._send_json(200, {"commitUrl": f"{self.hub.url}/{repo_id}/commit/{commit.oid}", "commitOid": commit.oid,
                              "pullRequestUrl": None, "success": True})

    def tree(self, method, query, repo_id, revision, path=""):
        with self.hub.lock:
            repo = self.hub._repo(repo_id, self._token())
            files = self.hub._commit(repo, revision).files
        prefix = path.strip("/") + "/" if path.strip("/") else ""
        recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
        entries, folders = [], set()
        for name, stored in sorted(files.items()):
            if not name.startswith(prefix):
                continue
            rest = name[len(prefix):]
            if "/" in rest and not recursive:
                folders.add(prefix + rest.split("/")[0])
                continue
            if recursive:
                parts = rest.split("/")[:-1]
                folders.update(prefix + "/".join(parts[: i + 1]) for i in range(len(parts)))
            entry = {"type": "file", "oid": stored.git_oid, "size": stored.size, "path": name}
            if stored.lfs:
                entry["lfs"] = {"oid": stored.sha256, "size": stored.size, "pointerSize": 134}
            entries.append(entry)
        entries += [{"type": "directory", "oid": "0" * 40, "size": 0, "path": folder} for folder in sorted(folders)]
        if prefix and not entries:
            raise HubError(404, f"{path} not found", "EntryNotFound")
        self._send_json(200, entries)

    def resolve(self, method, query, repo_id, revision, path):
        with self.hub.lock:
            repo = self.hub._repo(repo_id, self._token())
            commit = self.hub._commit(repo, revision)
            stored = commit.files.get(path)
        if stored is None:
            raise HubError(404, f"Entry {path} not found in {repo_id}", "EntryNotFound")
        headers = {"X-Repo-Commit": commit.oid, "ETag": f'"{stored.git_oid}"', "Accept-Ranges": "none"}
        if stored.lfs:
            headers.update({"X-Linked-Etag": f'"{stored.sha256}"', "X-Linked-Size": str(stored.size)})
        body = self.hub.read_object(stored.sha256)
        self._send(200, body, content_type="application/octet-stream", headers=headers, head=method == "HEAD")


_REPO = r"(?P<repo_id>[^/]+/[^/]+)"
_ROUTES = [
    (re.compile(r"/api/whoami-v2"), "whoami", ("GET",)),
    (re.compile(r"/api/repos/create"), "create_repo", ("POST",)),
    (re.compile(r"/api/validate-yaml"), "validate_yaml", ("POST",)),
    (re.compile(rf"/api/models/{_REPO}"), "model_info", ("GET",)),
    (re.compile(rf"/api/models/{_REPO}/revision/(?P<revision>.+)"), "model_info", ("GET",)),
    (re.compile(rf"/api/models/{_REPO}/branch/(?P<branch>.+)"), "create_branch", ("POST",)),
    (re.compile(rf"/api/models/{_REPO}/preupload/(?P<revision>.+)"), "preupload", ("POST",)),
    (re.compile(rf"/api/models/{_REPO}/commit/(?P<revision>.+)"), "commit", ("POST",)),
    (re.compile(rf"/api/models/{_REPO}/xet-(?:write|read)-token/.*"), "xet_token", ("GET",)),
    (re.compile(rf"/api/models/{_REPO}/tree/(?P<revision>[^/]+)(?:/(?P<path>.*))?"), "tree", ("GET",)),
    (re.compile(rf"/{_REPO}\.git/info/lfs/objects/batch"), "lfs_batch", ("POST",)),
    (re.compile(r"/lfs-upload/(?P<oid>[0-9a-f]{64})"), "lfs_upload", ("PUT",)),
    (re.compile(rf"/{_REPO}/resolve/(?P<revision>[^/]+)/(?P<path>.+)"), "resolve", ("GET", "HEAD")),
]


__all__ = ["LocalHub", "git_blob_oid"]
