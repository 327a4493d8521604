"""Real Whisper (packaged tiny.en and base, faster-whisper int8 on CPU) on espeak-ng speech at known offsets."""

from __future__ import annotations

import difflib
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from model.errors import ConfigError, ModelAccessError
from model.profiles import SpeechSpec
from model.speech import AudioInputError, Transcript, build_transcriber, to_vtt
from model.speech.convert import convert_ct2_to_openai, read_ct2_model
from model.speech.transcriber import resolve_faster_whisper_model

pytestmark = pytest.mark.slow

SR = 16000
LEAD_SILENCE = 5.5  # >= 5 s of silence before the first word
GAP = 1.0
SENTENCES = (
    "The red ball is on the table.",
    "My favorite fruit is a green apple.",
    "Seven boats sailed across the quiet lake.",
)
TOL = 0.5  # seconds


def _run(cmd: list[str]) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def sox_seconds(path: Path) -> float:
    return float(_run(["sox", "--i", "-D", str(path)]))


def decode_audio(path: Path) -> np.ndarray | None:
    """The app's decoder when model.media is there; PyAV directly until then (temporary)."""
    try:
        from model.media import load_audio
    except ImportError:
        import av

        with av.open(str(path)) as container:
            if not container.streams.audio:
                return None
            resampler = av.AudioResampler(format="flt", layout="mono", rate=SR)
            chunks = [f.to_ndarray().reshape(-1) for fr in container.decode(audio=0) for f in resampler.resample(fr)]
        return np.concatenate(chunks).astype(np.float32)
    return load_audio(str(path), sr=SR)


def speech_margins(wav: Path, stem: Path) -> tuple[float, float]:
    """Seconds of espeak's own silence before and after the speech in `wav` (sox `silence` trims, `sox --i -D`)."""
    head, both = stem.with_suffix(".head.wav"), stem.with_suffix(".both.wav")
    _run(["sox", str(wav), str(head), "silence", "1", "0.01", "-45d"])
    _run(["sox", str(head), str(both), "reverse", "silence", "1", "0.01", "-45d", "reverse"])
    total, after_head, speech = sox_seconds(wav), sox_seconds(head), sox_seconds(both)
    return total - after_head, after_head - speech


@dataclass
class SpeechVideo:
    path: Path
    spans: list[tuple[float, float]]  # where each sentence is heard in the video (s)
    duration: float


def _mux(out: Path, duration: float, audio: list[str] | None) -> Path:
    video = ["-f", "lavfi", "-i", f"testsrc=size=160x120:rate=10:duration={duration:.3f}"]
    audio_args = [*audio, "-c:a", "aac", "-b:a", "64k"] if audio else []
    encode = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-t", f"{duration:.3f}"]
    _run(["ffmpeg", "-y", "-loglevel", "error", *video, *audio_args, *encode, str(out)])
    return out


def make_speech_video(root: Path, sentences: tuple[str, ...], voice: str = "en-us") -> SpeechVideo:
    """ffmpeg + espeak-ng: LEAD_SILENCE, then the sentences with GAP between them, under a test pattern."""
    parts, spans, t = [], [], 0.0
    silence = root / "lead.wav"
    _run(["sox", "-R", "-n", "-r", str(SR), "-c", "1", "-b", "16", str(silence), "trim", "0", str(LEAD_SILENCE)])
    gap = root / "gap.wav"
    _run(["sox", "-R", "-n", "-r", str(SR), "-c", "1", "-b", "16", str(gap), "trim", "0", str(GAP)])
    parts.append(silence)
    t += sox_seconds(silence)
    for i, text in enumerate(sentences):
        raw, wav = root / f"s{i}_raw.wav", root / f"s{i}.wav"
        _run(["espeak-ng", "-v", voice, "-s", "150", "-w", str(raw), text])
        # -R: sox dithers when it resamples; repeatable mode seeds it, so every run hears the same audio.
        _run(["sox", "-R", str(raw), "-r", str(SR), "-c", "1", "-b", "16", str(wav)])
        length = sox_seconds(wav)
        lead, tail = speech_margins(wav, root / f"s{i}_trim")
        spans.append((t + lead, t + length - tail))
        parts += [wav, gap]
        t += length + sox_seconds(gap)
    track = root / "speech.wav"
    _run(["sox", "-R", *map(str, parts), str(track)])
    duration = sox_seconds(track)
    path = _mux(root / "speech.mp4", duration, ["-i", str(track)])
    return SpeechVideo(path=path, spans=spans, duration=duration)


def words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower().replace("favourite", "favorite"))


# ----------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, SpeechVideo | Path]:
    root = tmp_path_factory.mktemp("speech_media")
    speech = make_speech_video(root, SENTENCES)
    silent = _mux(root / "silent_audio.mp4", 4.0, ["-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono"])
    mute = _mux(root / "no_audio.mp4", 3.0, None)
    (root / "de").mkdir()
    german = make_speech_video(root / "de", ("Guten Morgen. Heute scheint die Sonne und wir gehen in den Park.",), "de")
    return {"speech": speech, "silent": silent, "mute": mute, "german": german}


@pytest.fixture(scope="module")
def tiny_en():
    return build_transcriber(SpeechSpec(model="packaged:tiny.en", compute_type="auto"), "cpu")


@pytest.fixture(scope="module")
def base():
    return build_transcriber(SpeechSpec(model="packaged:base"), "cpu")


@pytest.fixture(scope="module")
def tiny_words(tiny_en, media) -> Transcript:
    audio = decode_audio(media["speech"].path)
    return tiny_en.transcribe(audio, word_timestamps=True)


# ----------------------------------------------------------------------------------------------- transcription


def sentence_word_times(t: Transcript) -> list[tuple[float, float]]:
    """(first word start, last word end) per expected sentence, aligning heard words to the script."""
    heard = [(words(w.word), w) for s in t.segments for w in (s.words or [])]
    heard_tokens = [(tok, w) for toks, w in heard for tok in toks]
    script = [(i, tok) for i, sentence in enumerate(SENTENCES) for tok in words(sentence)]
    matcher = difflib.SequenceMatcher(a=[tok for tok, _ in heard_tokens], b=[tok for _, tok in script], autojunk=False)
    times: dict[int, list[tuple[int, float, float]]] = {}
    for a, b, n in matcher.get_matching_blocks():
        for k in range(n):
            sentence, w = script[b + k][0], heard_tokens[a + k][1]
            times.setdefault(sentence, []).append((b + k, w.start, w.end))
    out = []
    for i, sentence in enumerate(SENTENCES):
        first = min(j for j, (s, _) in enumerate(script) if s == i)
        last = first + len(words(sentence)) - 1
        matched = {j: (ws, we) for j, ws, we in times.get(i, [])}
        assert first in matched and last in matched, (sentence, matched)
        out.append((matched[first][0], matched[last][1]))
    return out


def test_tiny_en_words_and_times(tiny_en, tiny_words, media):
    video: SpeechVideo = media["speech"]
    t = tiny_words
    assert t.language == "en"
    assert t.duration == pytest.approx(video.duration, abs=0.1)
    got, want = words(t.text), words(" ".join(SENTENCES))
    assert difflib.SequenceMatcher(a=got, b=want).ratio() >= 0.9, (got, want)
    # Each sentence is heard where it was placed: its first and last words within TOL of its real span.
    for (w0, w1), (s0, s1) in zip(sentence_word_times(t), video.spans, strict=True):
        assert abs(w0 - s0) <= TOL and abs(w1 - s1) <= TOL, ((w0, w1), (s0, s1))
    # Segments (Whisper may join sentences) start and end where some sentence starts and ends.
    assert t.segments[0].start >= LEAD_SILENCE - TOL
    for seg in t.segments:
        assert min(abs(seg.start - s0) for s0, _ in video.spans) <= TOL, seg
        assert min(abs(seg.end - s1) for _, s1 in video.spans) <= TOL, seg
    for a, b in zip(t.segments, t.segments[1:], strict=False):
        assert a.start <= a.end <= b.start + 1e-6
    # Without word timestamps: same segments, no words; progress goes 0 -> 1 without going back.
    seen: list[tuple[str, float]] = []
    plain = tiny_en.transcribe(decode_audio(video.path), progress=lambda stage, f: seen.append((stage, f)))
    assert [(s.start, s.end, s.text) for s in plain.segments] == [(s.start, s.end, s.text) for s in t.segments]
    assert all(s.words is None for s in plain.segments)
    fractions = [f for _, f in seen]
    assert {s for s, _ in seen} == {"transcribing"}
    assert fractions[0] == 0.0 and fractions[-1] == 1.0 and len(fractions) >= 2 + len(t.segments) - 1
    assert fractions == sorted(fractions)


def test_word_timestamps_monotonic_inside_segments(tiny_words, media):
    t = tiny_words
    all_words = [w for s in t.segments for w in (s.words or [])]
    assert len(all_words) >= len(words(" ".join(SENTENCES))) - 2
    for seg in t.segments:
        assert seg.words, seg
        for w in seg.words:
            assert seg.start - 1e-6 <= w.start <= w.end <= seg.end + 1e-6, (w, seg)
            assert 0.0 <= w.probability <= 1.0
            assert w.word == w.word.strip() and w.word
    starts = [w.start for w in all_words]
    assert starts == sorted(starts)
    # Word times locate words: "apple" is said inside the second sentence's span, "lake" in the third.
    by_word = {words(w.word)[0]: w for w in all_words if words(w.word)}
    for key, span in (("apple", media["speech"].spans[1]), ("lake", media["speech"].spans[2])):
        w = by_word[key]
        assert span[0] - TOL <= w.start and w.end <= span[1] + TOL, (w, span)


def test_transcript_dict_roundtrip(tiny_words):
    data = json.loads(json.dumps(tiny_words.to_dict()))
    back = Transcript.from_dict(data)
    assert back == tiny_words
    assert back.segments[0].words is not None and isinstance(back.segments[0].words[0].start, float)


def test_path_input_matches_array(tiny_en, media):
    pytest.importorskip("model.media", reason="model.media (load_audio) not written yet")
    from_path = tiny_en.transcribe(str(media["speech"].path))
    from_array = tiny_en.transcribe(decode_audio(media["speech"].path))
    assert from_path == from_array


def test_base_detects_language(base, media):
    english = base.transcribe(decode_audio(media["speech"].path))
    german = base.transcribe(decode_audio(media["german"].path))
    assert english.language == "en"
    assert german.language == "de"
    assert {"guten", "morgen", "park"} <= set(words(german.text))
    # base mishears espeak's "seven boats sailed" ("salmon boat sail"); the language is the point here.
    assert difflib.SequenceMatcher(a=words(english.text), b=words(" ".join(SENTENCES))).ratio() >= 0.8
    span = media["german"].spans[0]
    assert abs(german.segments[0].start - span[0]) <= TOL and abs(german.segments[-1].end - span[1]) <= TOL, (
        german.segments,
        span,
    )


def test_silence_and_no_audio_give_empty_transcripts(tiny_en, base, media):
    silent = decode_audio(media["silent"])
    assert silent is not None and silent.size > 0
    for model in (tiny_en, base):
        t = model.transcribe(silent)
        assert t.segments == [] and t.language is None and t.text == ""
        assert t.duration == pytest.approx(4.0, abs=0.1)
    # Faint noise is not digital silence: the VAD has to reject it (Whisper alone would hallucinate).
    noise = np.random.default_rng(0).normal(0, 1e-3, 5 * SR).astype(np.float32)
    assert tiny_en.transcribe(noise).segments == []
    assert decode_audio(media["mute"]) is None
    seen = []
    t = tiny_en.transcribe(None, progress=lambda s, f: seen.append(f))
    assert t == Transcript(segments=[], language=None, duration=0.0) and seen == [1.0]
    assert to_vtt(t).strip() == "WEBVTT"
    assert tiny_en.transcribe(np.zeros(0, np.float32)).segments == []


def test_bad_audio_is_a_clear_error(tiny_en):
    with pytest.raises(AudioInputError, match="mono"):
        tiny_en.transcribe(np.zeros((2, SR), np.float32))
    with pytest.raises(AudioInputError, match="float"):
        tiny_en.transcribe(np.zeros(SR, np.int16))
    with pytest.raises(AudioInputError, match="NaN"):
        tiny_en.transcribe(np.full(SR, np.nan, np.float32))


# ----------------------------------------------------------------------------------------------- model access


def _fake_hub_cache(root: Path, repo: str, files_from: Path) -> Path:
    """The Hugging Face cache layout (refs/main -> snapshots/<commit>/files) around the packaged files."""
    commit = "0" * 40
    repo_dir = root / f"models--{repo.replace('/', '--')}"
    snap = repo_dir / "snapshots" / commit
    snap.mkdir(parents=True)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(commit)
    for f in files_from.iterdir():
        os.symlink(f, snap / f.name)
    return snap


def test_hub_name_loads_from_hf_cache_offline(tmp_path, tiny_en, media, monkeypatch):
    import huggingface_hub.constants

    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    snap = _fake_hub_cache(tmp_path, "Systran/faster-whisper-tiny.en", Path(tiny_en.model_path))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    assert Path(resolve_faster_whisper_model("tiny.en")) == snap
    assert Path(resolve_faster_whisper_model("Systran/faster-whisper-tiny.en")) == snap
    hub = build_transcriber(SpeechSpec(model="tiny.en"), "cpu")
    assert Path(hub.model_path) == snap
    audio = decode_audio(media["speech"].path)
    assert hub.transcribe(audio) == tiny_en.transcribe(audio)


def test_missing_models_are_model_access_errors(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty_hub"))
    with pytest.raises(ModelAccessError, match="large-v3-turbo"):
        build_transcriber(SpeechSpec(model="large-v3-turbo"), "cpu")
    with pytest.raises(ModelAccessError, match=r"model\.bin"):
        build_transcriber(SpeechSpec(model=str(tmp_path)), "cpu")
    with pytest.raises(ConfigError, match="Unknown Whisper model"):
        build_transcriber(SpeechSpec(model="not-a-size"), "cpu")
    with pytest.raises(ConfigError, match="backend"):
        build_transcriber(SpeechSpec(backend="whisper.cpp"), "cpu")
    # openai-whisper: its own checkpoints are not cached here, nor is faster-whisper's copy, and we are offline.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    with pytest.raises(ModelAccessError, match="offline"):
        build_transcriber(SpeechSpec(backend="openai-whisper", model="tiny.en"), "cpu")
    with pytest.raises(ModelAccessError, match=r"model\.bin"):
        build_transcriber(SpeechSpec(backend="openai-whisper", model=str(tmp_path)), "cpu")
    not_a_checkpoint = tmp_path / "broken.pt"
    not_a_checkpoint.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelAccessError, match="Could not load"):
        build_transcriber(SpeechSpec(backend="openai-whisper", model=str(not_a_checkpoint)), "cpu")
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "model.bin").write_bytes(b"not a model")
    with pytest.raises(ModelAccessError, match="Could not load"):
        build_transcriber(SpeechSpec(model=str(corrupt)), "cpu")


# ----------------------------------------------------------------------------------------------- openai-whisper


@pytest.fixture(scope="module")
def openai_tiny_en(tmp_path_factory):
    """openai-whisper on the packaged tiny.en, converted from CTranslate2 into a private data dir."""
    home = tmp_path_factory.mktemp("videochat_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VIDEOCHAT_HOME", str(home))
        model = build_transcriber(SpeechSpec(backend="openai-whisper", model="packaged:tiny.en"), "cpu")
    assert Path(model.model_path).is_relative_to(home) and model.model_path.endswith(".pt")
    assert model.beam_size == 5
    return model


def test_ct2_conversion_is_lossless(tiny_en, tmp_path):
    import torch

    ct2 = read_ct2_model(Path(tiny_en.model_path) / "model.bin")
    ckpt = torch.load(convert_ct2_to_openai(tiny_en.model_path, tmp_path / "t.pt"), weights_only=True)
    assert ckpt["dims"] == {"n_mels": 80, "n_audio_ctx": 1500, "n_audio_state": 384, "n_audio_head": 6,
                            "n_audio_layer": 4, "n_vocab": 51864, "n_text_ctx": 448, "n_text_state": 384,
                            "n_text_head": 6, "n_text_layer": 4}  # fmt: skip
    config = json.loads((Path(tiny_en.model_path) / "config.json").read_text())
    assert ckpt["alignment_heads"] == config["alignment_heads"]
    sd = ckpt["model_state_dict"]
    fused = ct2["decoder/layer_2/self_attention/linear_0/weight"]
    assert fused.dtype == np.float16 and fused.shape == (3 * 384, 384)
    for i, part in enumerate(("query", "key", "value")):
        assert np.array_equal(sd[f"decoder.blocks.2.attn.{part}.weight"].numpy(), fused[i * 384 : (i + 1) * 384])
    assert "decoder.blocks.2.attn.key.bias" not in sd
    kv = ct2["decoder/layer_3/attention/linear_1/bias"]
    assert np.array_equal(sd["decoder.blocks.3.cross_attn.value.bias"].numpy(), kv[384:])
    assert np.array_equal(sd["encoder.ln_post.weight"].numpy(), ct2["encoder/layer_norm/gamma"])
    # Every CTranslate2 weight is used once, except the key biases (zeros: openai-whisper's key has no bias);
    # the output projection is an alias of the (tied) embeddings.
    assert ct2["decoder/projection/weight"] is ct2["decoder/embeddings/weight"]
    weights = {k: v for k, v in ct2.items() if v.dtype == np.float16 and k != "decoder/projection/weight"}
    key_biases = (4 + 4 + 4) * 384  # encoder self-attention, decoder self- and cross-attention
    assert sum(v.numel() for v in sd.values()) + key_biases == sum(v.size for v in weights.values())


def _ct2_file(path: Path, variables: dict[str, np.ndarray]) -> Path:
    """A model.bin in CTranslate2's binary format (version 6), as its Python writer lays it out."""
    import struct

    type_ids = {"float32": 0, "int8": 1, "int16": 2, "int32": 3, "float16": 4}

    def string(text: str) -> bytes:
        return struct.pack("H", len(text) + 1) + text.encode() + b"\0"

    out = struct.pack("I", 6) + string("WhisperSpec") + struct.pack("I", 3) + struct.pack("I", len(variables))
    for name, value in variables.items():
        out += string(name) + struct.pack("B", value.ndim) + b"".join(struct.pack("I", d) for d in value.shape)
        out += struct.pack("B", type_ids[value.dtype.name]) + struct.pack("I", value.nbytes) + value.tobytes()
    path.mkdir(parents=True, exist_ok=True)
    (path / "model.bin").write_bytes(out + struct.pack("I", 0))
    return path


def test_quantized_or_truncated_ct2_models_are_clear_errors(tmp_path):
    quantized = _ct2_file(tmp_path / "q", {
        "encoder/conv1/weight": np.ones((4, 80, 3), np.int8),
        "encoder/layer_0/ffn/linear_0/weight": np.ones((4, 4), np.int8),
        "decoder/layer_0/ffn/linear_0/weight": np.ones((4, 4), np.int8),
    })  # fmt: skip
    assert read_ct2_model(quantized / "model.bin")["encoder/conv1/weight"].shape == (4, 80, 3)
    with pytest.raises(ModelAccessError, match="quantized"):
        convert_ct2_to_openai(quantized, tmp_path / "q.pt")
    for cut in (10, 30):  # inside the last variable's data; inside its header
        truncated = tmp_path / f"t{cut}"
        truncated.mkdir()
        (truncated / "model.bin").write_bytes((quantized / "model.bin").read_bytes()[:-cut])
        with pytest.raises(ModelAccessError, match="truncated"):
            build_transcriber(SpeechSpec(backend="openai-whisper", model=str(truncated)), "cpu")


def test_openai_whisper_backend_words_and_times(openai_tiny_en, media):
    video: SpeechVideo = media["speech"]
    seen: list[float] = []
    t = openai_tiny_en.transcribe(decode_audio(video.path), word_timestamps=True, progress=lambda s, f: seen.append(f))
    assert t.language == "en" and seen[0] == 0.0 and seen[-1] == 1.0
    assert seen == sorted(seen) and len(set(seen)) >= 2 + len(video.spans) - 1, seen  # at least one step per window
    assert seen[-2] >= 0.95, seen  # the steps count the speech that is decoded, not the skipped silence
    assert t.duration == pytest.approx(video.duration, abs=0.1)
    assert difflib.SequenceMatcher(a=words(t.text), b=words(" ".join(SENTENCES))).ratio() >= 0.9, t.text
    for (w0, w1), (s0, s1) in zip(sentence_word_times(t), video.spans, strict=True):
        assert abs(w0 - s0) <= TOL and abs(w1 - s1) <= TOL, ((w0, w1), (s0, s1))
    for seg in t.segments:
        assert seg.words and all(seg.start - 1e-6 <= w.start <= w.end <= seg.end + 1e-6 for w in seg.words)
        assert min(abs(seg.start - s0) for s0, _ in video.spans) <= TOL, seg
        assert min(abs(seg.end - s1) for _, s1 in video.spans) <= TOL, seg
    assert openai_tiny_en.transcribe(decode_audio(media["silent"])).segments == []


def test_openai_whisper_converts_faster_whisper_hub_cache_offline(tmp_path, tiny_en, openai_tiny_en, monkeypatch):
    import huggingface_hub.constants

    _fake_hub_cache(tmp_path / "hub", "Systran/faster-whisper-tiny.en", Path(tiny_en.model_path))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))  # openai-whisper's own cache: empty
    monkeypatch.setenv("VIDEOCHAT_HOME", str(tmp_path / "home"))
    hub = build_transcriber(SpeechSpec(backend="openai-whisper", model="tiny.en"), "cpu")
    assert Path(hub.model_path).is_relative_to(tmp_path / "home")
    for a, b in zip(hub.model.state_dict().values(), openai_tiny_en.model.state_dict().values(), strict=True):
        assert np.array_equal(a.numpy(), b.numpy())


def test_ffmpeg_tools_present():
    for tool in ("ffmpeg", "sox", "espeak-ng"):
        assert shutil.which(tool), tool
