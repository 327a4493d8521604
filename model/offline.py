"""No outbound connection unless the user asks for one (`--share`, `--llm-url`, a hub model to download).

Libraries the app uses phone home by default: onnxruntime (RapidOCR) sends 1DS telemetry to
mobile.events.data.microsoft.com from `InferenceSession` on, vLLM reports usage stats and "connects" a UDP
socket to 8.8.8.8 to learn its own address, Gradio sends analytics, huggingface_hub sends telemetry and asks
the hub for updates of cached models. `no_phoning_home()` switches all of that off through the environment
(it must run before those libraries start; a value the user set is kept), and `hub_offline_if_local(profile)`
sets HF_HUB_OFFLINE when every model of the profile is local or packaged (not when one must be downloaded).
"""

from __future__ import annotations

import os
from pathlib import Path

from model.profiles import Profile

QUIET_ENV = {
    "ORT_DISABLE_TELEMETRY": "1",  # onnxruntime >= 1.2x: its 1DS telemetry (disable_telemetry_events() is too late)
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",  # vLLM, and other tools that honour it
    "VLLM_HOST_IP": "127.0.0.1",  # one machine: no UDP connect to 8.8.8.8 to find "our" address
    "GRADIO_ANALYTICS_ENABLED": "False",
    "HF_HUB_DISABLE_TELEMETRY": "1",
}
LOCAL_SOURCES = ("packaged:", "random")


def no_phoning_home() -> None:
    """Telemetry, analytics and usage stats off for this process and its children (user-set values win)."""
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)


def _is_local(source: str | None) -> bool:
    if source is None:
        return True
    return source.startswith(LOCAL_SOURCES) or Path(source).expanduser().exists()


def hub_sources(profile: Profile) -> list[str]:
    """The profile's model sources that come from the Hugging Face hub (nothing local or packaged)."""
    sources: list[str | None] = [
        profile.text_embedder,
        None if profile.speech is None else profile.speech.model,  # a Whisper size name downloads from the hub
        None if profile.vision is None else profile.vision.source,
        None if profile.retrieval is None else profile.retrieval.source,
    ]
    if profile.llm.source != "converted":  # "converted" is made from the vision source
        sources.append(profile.llm.source)
    return [s for s in sources if s is not None and not _is_local(s)]


def hub_offline_if_local(profile: Profile) -> bool:
    """HF_HUB_OFFLINE=1 when no model of `profile` needs the hub (True when set; a user's value is kept)."""
    if hub_sources(profile):
        return False
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return True
