"""Shared uploads and per-session folders (issue 14.4): real files and real hard links in Gradio's upload folder.

Gradio keeps one file per uploaded content; two sessions uploading the same bytes used to share it, and the end of
one session deleted it under the other's queued upload. Each session now links the upload the moment it arrives.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

from app.access import UploadRegistry, sessions_root, sweep_dead_servers, upload_folder
from app.state import SessionState, delete_session, uploads

ROOT = Path(__file__).resolve().parents[1]


def gradio_upload(tmp: Path, data: bytes, name: str = "video.mp4") -> Path:
    """A file where Gradio keeps an upload: <upload folder>/<content hash>/<name>."""
    d = upload_folder() / hashlib.sha256(data + str(tmp).encode()).hexdigest()
    d.mkdir(parents=True, exist_ok=True)
    path = d / name
    path.write_bytes(data)
    return path


def test_a_closed_session_leaves_another_sessions_queued_upload_alone(tmp_path: Path) -> None:
    """Two sessions upload the same bytes (Gradio keeps one file); A's ends while B's ingest is still queued."""
    reg = UploadRegistry(grace_s=0.0)
    original = gradio_upload(tmp_path, b"same bytes" * 1000)
    a_link = reg.adopt("session-a", original, "ann")  # on arrival, before the queue
    b_link = reg.adopt("session-b", original, "bob")
    assert a_link != b_link and a_link.read_bytes() == b_link.read_bytes() == original.read_bytes()
    assert os.stat(a_link).st_ino == os.stat(original).st_ino, "a hard link, not a copy"
    reg.end_session("session-a")  # the tab closed
    assert not a_link.exists()
    assert b_link.read_bytes() == b"same bytes" * 1000, "B's queued ingest still has its file"
    assert original.exists(), "Gradio's file stays while a session links it"
    assert reg.users(original) == {"session-b"}
    reg.end_session("session-b")
    assert not b_link.exists() and not original.exists(), "the last session's end removes Gradio's file too"
    assert not original.parent.exists()


def test_an_upload_nobody_links_yet_is_kept_for_a_grace_period(tmp_path: Path) -> None:
    reg = UploadRegistry(grace_s=600.0)
    original = gradio_upload(tmp_path, b"fresh")
    reg.adopt("a", original)
    reg.end_session("a")
    assert original.exists(), "an upload that just arrived may still be adopted by a queued session"
    assert reg.sweep(now=time.time() + 601) == [original.resolve()] and not original.exists()


def test_new_video_drops_only_that_sessions_link(tmp_path: Path) -> None:
    reg = UploadRegistry(grace_s=0.0)
    original = gradio_upload(tmp_path, b"x" * 10)
    a = reg.adopt("a", original)
    b = reg.adopt("b", original)
    reg.drop("a", a)
    assert not a.exists() and b.exists() and original.exists()
    assert reg.adopt("a", original).exists(), "the same bytes again: a new link"


def test_session_state_files_live_in_its_own_guarded_folder() -> None:
    st = SessionState()
    st.session_hash = "hash-1"  # type: ignore[attr-defined]
    st.user = "ann"  # type: ignore[attr-defined]
    d = st.dir()
    assert d.parent == sessions_root() and str(d).startswith(str(upload_folder())), "Gradio serves it in place"
    (d / "chat.md").write_text("questions")
    assert uploads.owners(d / "chat.md") == {"ann"}
    delete_session(st)
    assert not d.exists() and uploads.owners(d / "chat.md") is None


def test_session_roots_go_at_exit_and_dead_servers_roots_are_swept(tmp_path: Path) -> None:
    code = "from app.access import session_folder; print(session_folder('s'), flush=True)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    folder = Path(out.stdout.strip())
    assert folder.name.startswith("s-") and not folder.parent.exists(), "removed when the server exits"
    base = tmp_path / "videochat-sessions"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (base / f"{dead.pid}-abc" / "s-1").mkdir(parents=True)  # a killed server's sessions
    (base / f"{os.getpid()}-def").mkdir()
    assert sweep_dead_servers(base) == [f"{dead.pid}-abc"] and (base / f"{os.getpid()}-def").exists()
