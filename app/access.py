"""Who may fetch which file, and how often one may try a password.

- Per-session folders (`session_folder`) live inside Gradio's upload folder, so Gradio serves what a session
  makes (subtitles, chat exports, its copy of the upload) in place instead of copying it into a shared cache that
  outlives the session; they are removed when the session ends, and all of this server's are removed at exit.
- `UploadRegistry`: Gradio stores an upload once per content hash, so two sessions uploading the same bytes get
  the same file. Each session takes its own hard link to it as soon as the upload arrives (before queueing), so a
  session that ends removes only its own link and never a file another session still waits to process; Gradio's
  file itself goes once no session links it.
- `FileGuard` (an ASGI wrapper of Gradio's app): a session's files and its uploads are served only to the user
  who owns them (with sign-in); files of ended sessions are gone (404).
- `LoginLimiter`: the `auth` callable for Gradio: after a few wrong passwords for a user, every attempt for that
  user is refused until the lockout ends, the right password included.
"""

from __future__ import annotations

import atexit
import contextlib
import hmac
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

FILE_ROUTE = re.compile(r"^(?:/gradio_api)?/file=(?P<path>.+)$")
ORIGINAL_GRACE_S = 600.0  # an upload no session links is removed once this old (a new one may still be adopted)
_ROOT_NAME = "videochat-sessions"

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


# ---------------------------------------------------------------------------------------------- folders
def upload_folder() -> Path:
    """Gradio's upload/cache folder (files in it are served in place)."""
    from gradio.utils import get_upload_folder

    return Path(get_upload_folder()).resolve()


_root_lock = threading.Lock()
_root: Path | None = None


def sessions_root() -> Path:
    """This server's folder for per-session files (made once; removed at exit; dead servers' ones are swept)."""
    global _root
    with _root_lock:
        if _root is None or not _root.exists():
            base = upload_folder() / _ROOT_NAME
            base.mkdir(parents=True, exist_ok=True)
            sweep_dead_servers(base)
            _root = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=base))
            atexit.register(shutil.rmtree, _root, True)
        return _root


def sweep_dead_servers(base: Path) -> list[str]:
    """Remove session roots left by servers that are gone (killed, crashed)."""
    removed = []
    for d in base.iterdir() if base.exists() else []:
        pid = d.name.split("-", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
            continue  # still running
        except ProcessLookupError:
            pass
        except OSError:
            continue
        shutil.rmtree(d, ignore_errors=True)
        removed.append(d.name)
    return removed


def session_folder(session_id: str) -> Path:
    """A new private folder for one session, inside this server's sessions root."""
    return Path(tempfile.mkdtemp(prefix=f"{session_id}-", dir=sessions_root()))


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
    except ValueError:
        return False
    return True


# ---------------------------------------------------------------------------------------------- uploads
@dataclass
class _Link:
    original: Path
    link: Path


@dataclass
class _Session:
    owner: str | None = None
    folder: Path | None = None  # its links to uploads
    links: dict[Path, _Link] = field(default_factory=dict)  # original -> this session's link
    attached: set[Path] = field(default_factory=set)  # its other folders (subtitles, exports)


class UploadRegistry:
    """Each session's own links to Gradio's shared upload files, and who owns what (for `FileGuard`)."""

    def __init__(self, grace_s: float = ORIGINAL_GRACE_S) -> None:
        self._lock = threading.Lock()
        self._sessions: dict[str, _Session] = {}
        self._originals: dict[Path, float] = {}  # Gradio's upload files we have linked: path -> first seen
        self._timer: threading.Timer | None = None
        self.grace_s = grace_s

    def adopt(self, session: str, original: str | Path, owner: str | None = None) -> Path:
        """This session's own link to the upload `original` (made once; a copy where links are not possible)."""
        original = Path(original).resolve()
        with self._lock:
            s = self._sessions.setdefault(session, _Session())
            s.owner = owner if owner is not None else s.owner
            known = s.links.get(original)
            if known is not None and known.link.exists():
                return known.link
            if s.folder is None or not s.folder.exists():
                s.folder = session_folder(_safe(session))
            target = Path(tempfile.mkdtemp(dir=s.folder)) / original.name
            try:
                os.link(original, target)
            except FileNotFoundError:
                raise  # the upload is gone (the caller says so in words)
            except OSError:  # another file system: a copy
                shutil.copy2(original, target)
            s.links[original] = _Link(original, target)
            self._originals.setdefault(original, time.time())
            return target

    def link_of(self, session: str, original: str | Path) -> Path | None:
        with self._lock:
            s = self._sessions.get(session)
            found = s.links.get(Path(original).resolve()) if s else None
            return found.link if found else None

    def drop(self, session: str, link: str | Path | None) -> None:
        """The session stopped using one upload (new video): its link goes."""
        if link is None:
            return
        link = Path(link)
        with self._lock:
            s = self._sessions.get(session)
            if s is None:
                return
            for original, known in list(s.links.items()):
                if known.link == link:
                    del s.links[original]
                    shutil.rmtree(known.link.parent, ignore_errors=True)
        self.sweep()

    def attach(self, session: str, folder: Path, owner: str | None = None) -> None:
        """Another folder of the session (its outputs): guarded like its uploads, removed when it ends."""
        with self._lock:
            s = self._sessions.setdefault(session, _Session())
            s.owner = owner if owner is not None else s.owner
            s.attached.add(folder.resolve())

    def detach(self, session: str, folder: Path) -> None:
        with self._lock:
            s = self._sessions.get(session)
            if s is not None:
                s.attached.discard(folder.resolve())

    def end_session(self, session: str) -> None:
        """The session ended: its folders and links go, then uploads nobody links any more."""
        with self._lock:
            s = self._sessions.pop(session, None)
        if s is not None:
            for folder in [s.folder, *s.attached]:
                if folder is not None:
                    shutil.rmtree(folder, ignore_errors=True)
        self.sweep()

    def sweep(self, now: float | None = None) -> list[Path]:
        """Remove Gradio's upload files that no session links and that are older than the grace period (those
        still within it are swept again when it ends)."""
        now = time.time() if now is None else now
        removed = []
        with self._lock:
            linked = {o for s in self._sessions.values() for o in s.links}
            waiting = [seen for o, seen in self._originals.items() if o not in linked and now - seen < self.grace_s]
            if waiting and (self._timer is None or not self._timer.is_alive()):
                self._timer = threading.Timer(min(waiting) + self.grace_s - now + 1.0, self.sweep)
                self._timer.daemon = True
                self._timer.start()
            for original, seen in list(self._originals.items()):
                if original in linked or now - seen < self.grace_s:
                    continue
                with contextlib.suppress(FileNotFoundError):
                    original.unlink()
                if _is_hash_dir(original.parent):
                    shutil.rmtree(original.parent, ignore_errors=True)
                del self._originals[original]
                removed.append(original)
        return removed

    # -- who owns what ---------------------------------------------------------------------------
    def owners(self, path: Path) -> set[str | None] | None:
        """The owners of `path` (a session's file or a linked upload), or None when it is not ours to guard."""
        path = path.resolve()
        with self._lock:
            found: set[str | None] = set()
            for s in self._sessions.values():
                folders = [f for f in (s.folder, *s.attached) if f is not None]
                if path in s.links or any(_inside(path, f) for f in folders):
                    found.add(s.owner)
            if found:
                return found
            if path in self._originals:
                return set()  # an upload whose sessions have all ended: nobody's any more
        return None

    def users(self, original: str | Path) -> set[str]:
        with self._lock:
            o = Path(original).resolve()
            return {sid for sid, s in self._sessions.items() if o in s.links}


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:40] or "session"


def _is_hash_dir(d: Path) -> bool:
    """Gradio's per-upload folder (named by the content hash), once empty."""
    try:
        return re.fullmatch(r"[0-9a-f]{40,64}", d.name) is not None and not any(d.iterdir())
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------- file guard
class FileGuard:
    """Wraps Gradio's ASGI app: `/gradio_api/file=PATH` for a path inside a session folder or a linked upload is
    answered only for the user who owns it (sign-in on) and only while the session lives (404 otherwise)."""

    def __init__(self, app: ASGIApp, gradio_app: Any, registry: UploadRegistry) -> None:
        self.app = app
        self.gradio_app = gradio_app
        self.registry = registry

    def user_of(self, scope: Scope) -> str | None:
        from starlette.requests import HTTPConnection

        conn = HTTPConnection(scope)
        cookie_id = getattr(self.gradio_app, "cookie_id", "")
        token = conn.cookies.get(f"access-token-{cookie_id}") or conn.cookies.get(f"access-token-unsecure-{cookie_id}")
        tokens: dict[str, str] = getattr(self.gradio_app, "tokens", {}) or {}
        return tokens.get(token) if token else None

    def allowed(self, path: Path, user: str | None) -> bool:
        owners = self.registry.owners(path)
        if owners is None and _inside(path.resolve(), sessions_root().parent):
            return False  # in a session folder nobody holds: an ended session's file
        if owners is None:
            return True  # not a session's file: Gradio's own rules apply
        if getattr(self.gradio_app, "auth", None) is None:
            return bool(owners)  # no sign-in: any live session's file, by its unguessable path
        return user is not None and user in owners

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") == "http":
            m = FILE_ROUTE.match(scope.get("path", ""))
            if m is not None and not self.allowed(Path(m.group("path")), self.user_of(scope)):
                from starlette.responses import PlainTextResponse

                await PlainTextResponse("File not found.", status_code=404)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def install_file_guard(gradio_app: Any, registry: UploadRegistry) -> bool:
    """Wrap `gradio_app`'s middleware stack with a FileGuard (once; True when it was installed now)."""
    if gradio_app is None or getattr(gradio_app, "_videochat_file_guard", False):
        return False
    stack = gradio_app.middleware_stack
    if stack is None:
        stack = gradio_app.build_middleware_stack()
    gradio_app.middleware_stack = FileGuard(stack, gradio_app, registry)
    gradio_app._videochat_file_guard = True
    return True


# ---------------------------------------------------------------------------------------------- sign-in
class LoginLimiter(list[tuple[str, str]]):
    """Gradio `auth` callable (and still the list of user:password pairs, for code that reads them): checks them; after `max_failures` wrong passwords for a user within
    `window_s`, that user is locked out for `lockout_s` (doubling with each lockout, up to `max_lockout_s`): every
    attempt is refused, the right password included."""

    def __init__(
        self,
        pairs: list[tuple[str, str]],
        max_failures: int = 5,
        window_s: float = 600.0,
        lockout_s: float = 60.0,
        max_lockout_s: float = 3600.0,
    ) -> None:
        super().__init__(pairs)
        self.passwords = dict(pairs)
        self.max_failures = max_failures
        self.window_s = window_s
        self.lockout_s = lockout_s
        self.max_lockout_s = max_lockout_s
        self._failures: dict[str, list[float]] = {}
        self._locked_until: dict[str, float] = {}
        self._lockouts: dict[str, int] = {}
        self._lock = threading.Lock()

    def locked(self, user: str, now: float | None = None) -> float:
        """Seconds `user` stays locked out (0 when not)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            return max(0.0, self._locked_until.get(user, 0.0) - now)

    def check(self, user: str, password: str, now: float | None = None) -> bool:
        """The decision alone (no delay): True for the right password of a user who is not locked out."""
        now = time.monotonic() if now is None else now
        with self._lock:
            if self._locked_until.get(user, 0.0) > now:
                return False
            want = self.passwords.get(user)
            ok = want is not None and hmac.compare_digest(want.encode(), password.encode())
            if ok:
                self._failures.pop(user, None)
                self._lockouts.pop(user, None)
                return True
            recent = [t for t in self._failures.get(user, []) if now - t < self.window_s] + [now]
            self._failures[user] = recent
            if len(recent) >= self.max_failures:
                n = self._lockouts.get(user, 0)
                seconds = min(self.max_lockout_s, self.lockout_s * 2**n)
                self._locked_until[user] = now + seconds
                self._lockouts[user] = n + 1
                self._failures[user] = []
                log.warning("sign-in for %r locked for %.0f s after %d wrong passwords", user, seconds, len(recent))
            return False

    def __call__(self, user: str, password: str) -> bool:
        # Synchronous on purpose: Gradio awaits only what inspect.iscoroutinefunction() recognises, and a callable
        # object's async __call__ is not; its coroutine would be truthy, i.e. every password accepted.
        return self.check(user, password)
