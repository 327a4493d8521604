"""Prompt assembly: text pieces and embedding blocks -> one validated `[seq, hidden]` tensor.

Templates are data (prompts/<name>.json). Text is embedded with the LLM's own input-embedding table,
read alone from the model folder's safetensors, so the LLM is never loaded twice. Tokenisation follows
the InternVideo2 chat builder (every text run between two embedding blocks is tokenised on its own), except
that the special tokens a tokenizer puts before a text (Mistral's BOS) come once, at the very start: the
official builder's BOS before every run puts "start of a new sequence" in the middle of the prompt.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from model.llm.errors import PromptError
from model.timecode import format_time

PROMPTS_DIR = Path(__file__).resolve().parents[2] / "prompts"

TEMPLATE_KEYS = (
    "layout",
    "prefix",
    "default_instructions",
    "context_open",
    "duration",
    "subtitles",
    "clip_intro",
    "video_open",
    "video_close",
    "frame_times",
    "segment_text",
    "clip_separator",
    "rstrip_context",
    "context_close",
    "history_turn",
    "question",
)
LAYOUT_SECTIONS = ("prefix", "context", "history", "question")
EMBED_KEY_SUFFIXES = ("embed_tokens.weight", "tok_embeddings.weight", "wte.weight", "word_embeddings.weight")


@dataclass
class VideoSegment:
    """One clip of the video: its time range, frame times, and either embeddings or text (lite) or both."""

    start: float
    end: float
    frame_times: list[float] = field(default_factory=list)
    embeddings: torch.Tensor | None = None  # [n, hidden]
    text: str = ""
    video: str = ""  # the video's name, in a prompt about several videos ("Clip 2 [a.mp4 00:08-00:16]: ")


@dataclass
class PromptInputs:
    question: str
    segments: list[VideoSegment] = field(default_factory=list)
    subtitles: str = ""
    history: list[tuple[str, str]] = field(default_factory=list)
    instructions: str = ""
    duration: float = 0.0


@dataclass(frozen=True)
class PromptTemplate:
    """A chat format as data; see prompts/*.json for the fields."""

    name: str
    layout: tuple[str, ...]
    prefix: str
    default_instructions: str
    context_open: str
    duration: str
    subtitles: str
    clip_intro: str
    video_open: str
    video_close: str
    frame_times: str
    segment_text: str
    clip_separator: str
    rstrip_context: bool
    context_close: str
    history_turn: str
    question: str
    subtitles_after_clips: bool = False  # small models answer from what is nearest the question

    @classmethod
    def load(cls, name_or_path: str | Path) -> PromptTemplate:
        path = Path(name_or_path)
        if not path.suffix:
            path = PROMPTS_DIR / f"{name_or_path}.json"
        if not path.is_file():
            known = ", ".join(sorted(p.stem for p in PROMPTS_DIR.glob("*.json")))
            raise PromptError(f"Unknown prompt template {str(name_or_path)!r}; known templates: {known}")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise PromptError(f"Prompt template {path} is not valid JSON: {err}") from err
        missing = [k for k in TEMPLATE_KEYS if k not in data]
        if missing:
            raise PromptError(f"Prompt template {path} lacks the fields: {', '.join(missing)}")
        layout = tuple(data["layout"])
        if sorted(layout) != sorted(LAYOUT_SECTIONS):
            raise PromptError(f"Prompt template {path}: layout must order exactly {LAYOUT_SECTIONS}, got {layout}")
        values: dict[str, Any] = {k: data[k] for k in TEMPLATE_KEYS}
        values["layout"] = layout
        values["rstrip_context"] = bool(data["rstrip_context"])
        values["subtitles_after_clips"] = bool(data.get("subtitles_after_clips", False))
        return cls(name=data.get("name", path.stem), **values)


def format_frame_times(times: list[float]) -> str:
    """Frame times as training wrote them: seconds rounded to 0.1, comma-separated."""
    return ", ".join(f"{t:.1f}" for t in times)


def validate_prompt_embeds(
    embeds: Any,
    hidden_size: int,
    max_model_len: int | None = None,
    max_tokens: int = 0,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Refuse any tensor an engine could choke on; return it (cast to `dtype` when given).

    A wrong shape or a NaN can take down a shared engine for every user, so this runs before submitting.
    """
    if not isinstance(embeds, torch.Tensor):
        raise PromptError(f"Prompt embeddings must be a torch.Tensor, got {type(embeds).__name__}")
    if embeds.ndim != 2:
        raise PromptError(f"Prompt embeddings must be 2-D [tokens, {hidden_size}], got shape {tuple(embeds.shape)}")
    if embeds.shape[0] == 0:
        raise PromptError("The prompt is empty (0 tokens)")
    if embeds.shape[1] != hidden_size:
        raise PromptError(
            f"Prompt embeddings have width {embeds.shape[1]}, but the language model's hidden size is {hidden_size}"
        )
    if not embeds.is_floating_point():
        raise PromptError(f"Prompt embeddings must be floating point, got {embeds.dtype}")
    if not bool(torch.isfinite(embeds).all()):
        raise PromptError("Prompt embeddings contain NaN or infinite values")
    if max_model_len is not None and embeds.shape[0] + max_tokens > max_model_len:
        raise PromptError(
            f"The prompt has {embeds.shape[0]} tokens; with {max_tokens} tokens to generate it exceeds the "
            f"model's context window of {max_model_len} tokens."
        )
    return embeds.to(dtype) if dtype is not None and embeds.dtype != dtype else embeds


def read_llm_config(model_dir: Path) -> dict[str, Any]:
    """The text model's config.json entries (nested `text_config` flattened in)."""
    path = Path(model_dir) / "config.json"
    if not path.is_file():
        raise PromptError(f"{model_dir} is not a model folder (no config.json)")
    cfg = json.loads(path.read_text())
    text_cfg = cfg.get("text_config") or cfg.get("llm_config") or {}
    return {**cfg, **text_cfg}


def hidden_size_of(model_dir: Path) -> int:
    cfg = read_llm_config(model_dir)
    for key in ("hidden_size", "n_embd", "d_model"):
        if key in cfg:
            return int(cfg[key])
    raise PromptError(f"Cannot tell the hidden size of the model in {model_dir}")


def context_window_of(model_dir: Path) -> int:
    cfg = read_llm_config(model_dir)
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        if key in cfg:
            return int(cfg[key])
    return 4096


def load_input_embeddings(model_dir: Path) -> torch.Tensor:
    """Only the input-embedding table `[vocab, hidden]`, read lazily from the safetensors (sharded or not)."""
    from model.sources import SafetensorsSet

    weights = SafetensorsSet.from_folder(Path(model_dir))
    try:
        for suffix in EMBED_KEY_SUFFIXES:
            # Prefer the language model's table in multimodal checkpoints.
            hits = sorted((k for k in weights.weight_map if k.endswith(suffix)), key=lambda k: ("language" not in k, k))
            if hits:
                return weights.get(hits[0])
    finally:
        weights.close()
    raise PromptError(f"No input-embedding table ({' / '.join(EMBED_KEY_SUFFIXES)}) in {model_dir}")


class PromptBuilder:
    """Builds the `[seq, hidden]` prompt tensor for one template and one LLM folder."""

    def __init__(
        self,
        template_name: str | Path,
        model_dir: str | Path,
        max_model_len: int | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        from transformers import AutoTokenizer

        self.model_dir = Path(model_dir)
        self.template = PromptTemplate.load(template_name)
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.model_dir))
        self.hidden_size = hidden_size_of(self.model_dir)
        self.max_model_len = int(max_model_len or context_window_of(self.model_dir))
        table = load_input_embeddings(self.model_dir)  # [vocab, hidden]
        if table.ndim != 2 or table.shape[1] != self.hidden_size:
            raise PromptError(f"Embedding table {tuple(table.shape)} does not match hidden size {self.hidden_size}")
        self.embed_table = table.to(dtype) if dtype is not None else table
        self.dtype = self.embed_table.dtype
        self._text_cost = functools.lru_cache(maxsize=8192)(self.count_tokens)
        self.lead_ids = self._leading_specials()  # what starts the prompt (Mistral: [BOS]; SmolLM2: none)

    # -- text -------------------------------------------------------------------------------------
    def count_tokens(self, text: str) -> int:
        """Tokens `text` takes inside a prompt (no special tokens added)."""
        return len(self.tokenize(text))

    def tokenize(self, text: str) -> list[int]:
        """The ids of one text run, without the tokenizer's special tokens (see `lead_ids`)."""
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _leading_specials(self) -> list[int]:
        """The special tokens the tokenizer puts before a text by default (any it appends, such as EOS, are not
        wanted at the end of a prompt)."""
        probe = "a"
        plain = self.tokenize(probe)
        full = list(self.tokenizer(probe)["input_ids"])
        starts = [i for i in range(len(full) - len(plain) + 1) if full[i : i + len(plain)] == plain]
        return full[: starts[0]] if starts else []

    # -- layout -----------------------------------------------------------------------------------
    def layout(self, inputs: PromptInputs) -> list[str | torch.Tensor]:
        """The prompt as alternating text runs and embedding blocks `[n, hidden]`, in order."""
        t = self.template
        parts: list[str | torch.Tensor] = []

        def text(s: str) -> None:
            if not s:
                return
            if parts and isinstance(parts[-1], str):
                parts[-1] += s
            else:
                parts.append(s)

        for section in t.layout:
            if section == "prefix":
                instructions = inputs.instructions or t.default_instructions
                if instructions or "{instructions}" not in t.prefix:
                    text(t.prefix.format(instructions=instructions))
            elif section == "history":
                for question, answer in inputs.history:
                    text(t.history_turn.format(question=question, answer=answer))
            elif section == "question":
                text(t.question.format(question=inputs.question))
            elif section == "context":
                self._context(inputs, parts, text)
        return parts

    def _context(self, inputs: PromptInputs, parts: list[str | torch.Tensor], text: Any) -> None:
        t = self.template
        text(t.context_open)
        if t.duration and inputs.duration > 0:
            text(t.duration.format(duration=format_time(inputs.duration, inputs.duration)))
        if inputs.subtitles.strip() and not t.subtitles_after_clips:
            text(t.subtitles.format(subtitles=inputs.subtitles.strip()))
        many = len(inputs.segments) > 1
        for i, seg in enumerate(inputs.segments):
            if i:
                text(t.clip_separator)
            if many or seg.embeddings is None or seg.video:
                text(self._clip_intro(seg, i + 1, inputs.duration))
            if seg.embeddings is not None:
                text(t.video_open)
                parts.append(self._check_block(seg.embeddings, i))
                text(t.video_close + self._frame_times(seg))
            text(self._segment_text(seg))
        if inputs.subtitles.strip() and t.subtitles_after_clips:
            text(t.subtitles.format(subtitles=inputs.subtitles.strip()))
        if t.rstrip_context and parts and isinstance(parts[-1], str):
            # The official builder sends `msg.rstrip()` before "[/INST]".
            parts[-1] = parts[-1].rstrip()
            if not parts[-1]:
                parts.pop()
        text(t.context_close)

    def _clip_intro(self, seg: VideoSegment, index: int, duration: float) -> str:
        start = format_time(seg.start, duration)
        return self.template.clip_intro.format(
            index=index, start=f"{seg.video} {start}" if seg.video else start, end=format_time(seg.end, duration)
        )

    def _frame_times(self, seg: VideoSegment) -> str:
        if not seg.frame_times:
            return ""
        return self.template.frame_times.format(n=len(seg.frame_times), times=format_frame_times(seg.frame_times))

    def _segment_text(self, seg: VideoSegment) -> str:
        return self.template.segment_text.format(text=seg.text.strip()) if seg.text.strip() else ""

    # -- token budget -----------------------------------------------------------------------------
    def text_cost(self, text: str) -> int:
        """Tokens `text` takes inside a text run of the prompt (no special tokens); cached."""
        return self._text_cost(text)

    def history_cost(self, question: str, answer: str) -> int:
        """Tokens one earlier turn of the conversation adds to the prompt under this template."""
        return self.text_cost(self.template.history_turn.format(question=question, answer=answer))

    def segment_cost(self, segment: VideoSegment, duration: float) -> int:
        """Tokens `segment` adds to the prompt under this template, as one clip among several: its separator and
        time-range intro, the embedding rows with the video tags and the frame-times sentence, and its text.

        Counted on the template's own wording. Text pieces are counted alone, so where a tokenizer merges across
        a piece's edge the prompt differs by a token or so; a lone clip with embeddings has no intro, so for it
        this is an upper bound.
        """
        t = self.template
        before = t.clip_separator + self._clip_intro(segment, 1, duration)
        if segment.embeddings is None:
            return self.text_cost(before + self._segment_text(segment))
        rows = int(segment.embeddings.shape[0])
        after = t.video_close + self._frame_times(segment) + self._segment_text(segment)
        # The block splits the text run: each side is tokenised on its own.
        return self.text_cost(before + t.video_open) + rows + self.text_cost(after)

    def _check_block(self, block: Any, index: int) -> torch.Tensor:
        if not isinstance(block, torch.Tensor) or block.ndim != 2 or block.shape[1] != self.hidden_size:
            shape = tuple(block.shape) if isinstance(block, torch.Tensor) else type(block).__name__
            raise PromptError(
                f"Clip {index + 1}: video embeddings must be [n, {self.hidden_size}] (the LLM's hidden size), got {shape}"
            )
        if not block.is_floating_point() or not bool(torch.isfinite(block).all()):
            raise PromptError(f"Clip {index + 1}: video embeddings contain NaN/infinite or non-float values")
        return block.detach().to(device="cpu", dtype=self.dtype)

    def token_layout(self, inputs: PromptInputs) -> list[list[int] | torch.Tensor]:
        """`layout` with every text run tokenised (ids) and embedding blocks kept; `lead_ids` open the prompt."""
        parts: list[list[int] | torch.Tensor] = [
            self.tokenize(p) if isinstance(p, str) else p for p in self.layout(inputs)
        ]
        if self.lead_ids:
            first = parts[0] if parts else None
            if isinstance(first, list):
                parts[0] = self.lead_ids + first
            else:
                parts.insert(0, list(self.lead_ids))
        return parts

    def embed_ids(self, ids: list[int]) -> torch.Tensor:
        """Rows of the LLM's own input-embedding table: `[len(ids), hidden]`."""
        index = torch.as_tensor(ids, dtype=torch.long)
        rows = self.embed_table.shape[0]
        if index.numel() and (int(index.min()) < 0 or int(index.max()) >= rows):
            bad = sorted({i for i in ids if not 0 <= i < rows})
            raise PromptError(
                f"The tokenizer gave token ids {bad[:5]} that the language model's embedding table ({rows} rows) "
                f"does not have: the tokenizer in {self.model_dir} does not match its model"
            )
        return self.embed_table[index]

    def build(self, inputs: PromptInputs, max_tokens: int = 0, max_model_len: int | None = None) -> torch.Tensor:
        """The whole prompt `[seq, hidden]`, validated for the engine (width, dtype, finite, length); `max_model_len`:
        the engine's window when it is shorter than the model's."""
        if not inputs.question.strip():
            raise PromptError("The question is empty")
        blocks = [self.embed_ids(p) if isinstance(p, list) else p for p in self.token_layout(inputs) if len(p)]
        embeds = torch.cat(blocks, dim=0)  # [seq, hidden]
        window = min(self.max_model_len, max_model_len or self.max_model_len)
        if embeds.shape[0] + max_tokens > window:
            raise self._too_long(inputs, int(embeds.shape[0]), max_tokens, window)
        return validate_prompt_embeds(embeds, self.hidden_size, window, max_tokens, self.dtype)

    def _too_long(self, inputs: PromptInputs, total: int, max_tokens: int, window: int) -> PromptError:
        """Which part of the prompt is long, and what the user can do about it."""
        history = sum(self.history_cost(q, a) for q, a in inputs.history)
        question = self.text_cost(inputs.question)
        context = max(0, total - history - question)
        parts = {"the conversation so far": history, "the question": question, "the video context": context}
        advice = {
            "the conversation so far": "Clear the chat to start a new conversation.",
            "the question": "Ask a shorter question.",
            "the video context": "Ask for a shorter answer (max new tokens), or ask about a shorter part of the video.",
        }
        biggest = max(parts, key=lambda k: parts[k])
        breakdown = ", ".join(f"{k} {v}" for k, v in parts.items())
        return PromptError(
            f"The prompt has {total} tokens ({breakdown}); with {max_tokens} tokens to generate it exceeds the "
            f"model's context window of {window} tokens. {advice[biggest]}"
        )
