"""The composition root: a profile's specs -> loaded models (converting checkpoints once when needed) -> the
pipeline's parts. Loaded once per process and shared by every session; nothing downstream imports it except the
CLI and the app, and the pipeline receives its models through `model.protocols`, never this object."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from model.profiles import Profile

if TYPE_CHECKING:
    from model.internvideo2 import InternVideo2ChatEncoder, InternVideo2Retrieval
    from model.llm import Engine, PromptBuilder
    from model.llm.memory_plan import MemoryPlan
    from model.memory import MemoryCache
    from model.memory.stream import StreamConfig
    from model.profiles import LLMSpec, VisionSpec
    from model.qa import Assistant
    from model.speech import Transcriber
    from model.text import TextEmbedder
    from model.vision import OCRReader, VisualTagger

LLM_FILES = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.tiktoken"]  # what serving needs

log = logging.getLogger(__name__)

Progress = Callable[[str, float], None]


def resolve_llm_dir(spec: LLMSpec, vision: VisionSpec | None = None) -> Path:
    """The LLM's local transformers folder: converted once from the vision checkpoint, or resolved from its source."""
    from model.errors import ConfigError
    from model.sources import resolve_model_dir

    if spec.source == "converted":
        if vision is None:
            raise ConfigError('LLM source "converted" needs a vision source to convert from')
        from model.internvideo2 import ensure_converted

        return Path(ensure_converted(vision))
    path = resolve_model_dir(spec.source, allow_patterns=LLM_FILES, what="LLM")
    if path.is_dir() and not (path / "config.json").is_file():
        raise ConfigError(f"{path} is not a model folder (no config.json)")
    return path


def pick_device(profile: Profile) -> str:
    """The profile's device when available; CUDA profiles fall back to CPU with a warning."""
    if profile.device == "cuda":
        import torch

        if torch.cuda.is_available():
            return "cuda"
        log.warning("Profile %s wants CUDA but none is available; running on CPU (slow)", profile.name)
    return "cpu"


def size_llm_memory(
    spec: LLMSpec, llm_dir: Path, device: str, llm_url: str | None = None
) -> tuple[LLMSpec, MemoryPlan | None]:
    """Right before the LLM starts on CUDA: hand torch's cached blocks back to the driver and, for in-process
    vLLM, size its share from what is really free now (model/llm/memory_plan.py). The plan is printed."""
    if not device.startswith("cuda") or llm_url or (spec.engine not in ("auto", "vllm")):
        return spec, None
    import dataclasses
    import gc
    import sys

    import torch

    from model.llm.engine import resolve_max_model_len, vllm_available

    gc.collect()
    torch.cuda.empty_cache()  # what loading the other models left reserved: vLLM counts only truly free memory
    if spec.engine == "auto" and not vllm_available():
        return spec, None
    from model.llm.memory_plan import llm_memory, plan_vllm_memory
    from model.llm.prompt import read_llm_config
    from model.llm.quantization import resolve_vllm_quantization
    from model.sources import resolve_dtype

    free, total = torch.cuda.mem_get_info()
    quantization = resolve_vllm_quantization(spec.quantization, llm_dir, device)
    need = llm_memory(read_llm_config(llm_dir), quantization, resolve_dtype(spec.dtype, device).itemsize)
    plan = plan_vllm_memory(
        total, free, need, resolve_max_model_len(spec, llm_dir), cap_utilization=spec.gpu_memory_utilization
    )
    print(plan.summary(), file=sys.stderr)
    return dataclasses.replace(spec, gpu_memory_utilization=plan.gpu_memory_utilization), plan


@dataclass
class Runtime:
    profile: Profile
    device: str
    engine: Engine
    prompt_builder: PromptBuilder
    llm_dir: Path
    encoder: InternVideo2ChatEncoder | None = None
    retrieval: InternVideo2Retrieval | None = None
    transcriber: Transcriber | None = None
    text_embedder: TextEmbedder | None = None
    ocr: OCRReader | None = None
    tagger: VisualTagger | None = None
    llm_url: str | None = None
    load_seconds: dict[str, float] = field(default_factory=dict)
    memory_plan: MemoryPlan | None = None  # vLLM's share of the GPU, sized at start

    @classmethod
    def load(cls, profile: Profile, llm_url: str | None = None, progress: Progress | None = None) -> Runtime:
        """Load every model the profile names, in the order a user waits for them least."""
        from model.llm import PromptBuilder, create_engine

        device = pick_device(profile)
        timings: dict[str, float] = {}
        steps: list[tuple[str, Callable[[], Any]]] = []
        parts: dict[str, Any] = {}

        if profile.vision is not None:

            def load_encoder() -> Any:
                from model.internvideo2 import build_chat_encoder

                encoder = build_chat_encoder(profile.vision, device)
                if profile.vision.compile and device == "cuda":
                    # fused element-wise work, same numerics; one static batch shape, compiled now (not mid-upload)
                    encoder.compile_for_inference()
                return encoder

            steps.append(("encoder", load_encoder))
        if profile.retrieval is not None:

            def load_retrieval() -> Any:
                from model.internvideo2 import build_retrieval

                return build_retrieval(profile.retrieval, device)

            steps.append(("retrieval", load_retrieval))
        if profile.speech is not None:

            def load_transcriber() -> Any:
                from model.speech import build_transcriber

                return build_transcriber(profile.speech, device)

            steps.append(("transcriber", load_transcriber))
        if profile.text_embedder is not None:

            def load_text_embedder() -> Any:
                from model.text import TextEmbedder

                return TextEmbedder.load(profile.text_embedder)

            steps.append(("text_embedder", load_text_embedder))
        if profile.ocr:

            def load_ocr() -> Any:
                from model.vision import OCRReader

                return OCRReader.load()

            steps.append(("ocr", load_ocr))
        if profile.visual_tags:

            def load_tagger() -> Any:
                from model.vision import VisualTagger

                return VisualTagger.load()

            steps.append(("tagger", load_tagger))

        def load_llm_dir() -> Any:
            return resolve_llm_dir(profile.llm, profile.vision)

        steps.append(("llm_dir", load_llm_dir))

        total = len(steps) + 2
        for i, (name, step) in enumerate(steps):
            if progress:
                progress(f"loading {name}", i / total)
            start = time.perf_counter()
            parts[name] = step()
            timings[name] = time.perf_counter() - start
            log.info("loaded %s in %.1f s", name, timings[name])

        llm_dir = Path(parts.pop("llm_dir"))
        if progress:
            progress("loading prompt builder", (total - 2) / total)
        start = time.perf_counter()
        prompt_builder = PromptBuilder(profile.llm.template, llm_dir)
        timings["prompt_builder"] = time.perf_counter() - start
        if progress:
            progress("starting LLM engine", (total - 1) / total)
        start = time.perf_counter()
        llm_spec, memory_plan = size_llm_memory(profile.llm, llm_dir, device, llm_url)
        engine = create_engine(llm_spec, llm_dir, device, llm_url=llm_url)
        timings["engine"] = time.perf_counter() - start
        if progress:
            progress("ready", 1.0)
        return cls(
            profile=profile,
            device=device,
            engine=engine,
            prompt_builder=prompt_builder,
            llm_dir=llm_dir,
            llm_url=llm_url,
            load_seconds=timings,
            memory_plan=memory_plan,
            **parts,
        )

    @property
    def engine_name(self) -> str:
        return type(self.engine).__name__

    def model_ids(self) -> dict[str, Any]:
        """Which models make this profile's memories (part of every memory's cache key)."""
        p = self.profile
        return {
            "speech": None if p.speech is None else asdict(p.speech),
            "vision": None if p.vision is None else {k: v for k, v in asdict(p.vision).items() if k != "compile"},
            "retrieval": None if p.retrieval is None else asdict(p.retrieval),
            "text_embedder": p.text_embedder,
            **({"tagger": self._tagger_identity()} if p.visual_tags else {}),  # absent: old keys stay valid
        }

    def _tagger_identity(self) -> dict[str, Any]:
        from model.vision import TaggerConfig

        return self.tagger.identity() if self.tagger is not None else TaggerConfig().identity()

    def assistant(
        self, cache: MemoryCache | None = None, cache_dir: str | Path | None = None, stream: StreamConfig | None = None
    ) -> Assistant:
        """The question pipeline over these models (one per process; sessions share it); `stream`: how ingest
        chunks a video (default: `StreamConfig()`)."""
        from model.memory import IngestConfig
        from model.qa import AnswerConfig, Assistant, QAModels

        p = self.profile
        models = QAModels(
            transcriber=self.transcriber,
            encoder=self.encoder,
            retrieval=self.retrieval,
            text_embedder=self.text_embedder,
            ocr=self.ocr,
            tagger=self.tagger,
            engine=self.engine,
            prompt_builder=self.prompt_builder,
        )
        config = AnswerConfig(
            context_budget_tokens=p.context_budget_tokens,
            max_new_tokens=p.max_new_tokens,
            temperature=p.temperature,
            repetition_penalty=p.repetition_penalty,
            frequency_penalty=p.frequency_penalty,
            stop=p.stop,
            ingest=IngestConfig(profile=p.name, sampling=p.sampling, model_ids=self.model_ids()),
            **({} if stream is None else {"stream": stream}),
        )
        return Assistant(models, config, cache=cache, cache_dir=cache_dir)

    def describe(self) -> str:
        """One line for the UI and logs: profile, device, engine, speech backend (and why, after a fallback)."""
        line = f"profile {self.profile.name} · {self.device} · {self.engine_name}"
        t = self.transcriber
        if t is not None:
            line += f" · {t.backend} on {t.device}"
            if t.fallback_reason:
                line += f" (fallback: {t.fallback_reason})"
        return line

    async def close(self) -> None:
        await self.engine.close()
