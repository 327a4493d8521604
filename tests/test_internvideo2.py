"""InternVideo2: official-name checkpoints at tiny sizes through the real loaders, numerics against a naive
reference (tests/internvideo2_reference.py), LoRA merge and conversion (transformers, and vLLM when slow)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from model.errors import ModelAccessError
from model.internvideo2 import (
    CheckpointError,
    FramesError,
    build_chat_encoder,
    build_retrieval,
    convert_chat_checkpoint,
    merge_lora,
    preprocess_frames,
)
from model.internvideo2.convert import LM_PREFIX
from model.profiles import TINY, RetrievalSpec, VisionSpec
from model.sources import resolve_model_file
from tests import internvideo2_reference as ref

WIDTH, VIT_HEADS, MLP, PATCH = 64, 4, 256, 14
QF_HIDDEN, QF_HEADS, QF_LAYERS = 64, 4, 4  # cross-attention in layers 0 and 2
LLM_HIDDEN = 576
ATOL = 1e-5


def _r(gen: torch.Generator, *shape: int, scale: float | None = None) -> torch.Tensor:
    scale = shape[-1] ** -0.5 if scale is None else scale
    return torch.randn(*shape, generator=gen) * scale


def _linear(sd: dict, name: str, gen: torch.Generator, out: int, inp: int, bias: bool = True) -> None:
    sd[name + ".weight"] = _r(gen, out, inp)
    if bias:
        sd[name + ".bias"] = _r(gen, out, scale=0.1)


def _norm(sd: dict, name: str, gen: torch.Generator, dim: int, bias: bool = True) -> None:
    sd[name + ".weight"] = 1 + _r(gen, dim, scale=0.1)
    if bias:
        sd[name + ".bias"] = _r(gen, dim, scale=0.1)


def vit_state(gen: torch.Generator, blocks: int, t0: int, gamma_form: bool = False) -> dict[str, torch.Tensor]:
    """Vision encoder with the official names (`vision_encoder.*`)."""
    p, c, grid = "vision_encoder.", WIDTH, 224 // PATCH
    sd = {
        p + "cls_token": _r(gen, 1, 1, c, scale=0.5),
        p + "pos_embed": _r(gen, 1, 1 + t0 * grid * grid, c, scale=0.5),
        p + "img_pos_embed": _r(gen, 1, 1 + grid * grid, c, scale=0.5),
        p + "patch_embed.proj.weight": _r(gen, c, 3, 1, PATCH, PATCH, scale=(3 * PATCH * PATCH) ** -0.5),
        p + "patch_embed.proj.bias": _r(gen, c, scale=0.1),
    }
    for i in range(blocks):
        b = f"{p}blocks.{i}."
        _norm(sd, b + "norm1", gen, c, bias=False)
        _norm(sd, b + "norm2", gen, c, bias=False)
        _norm(sd, b + "attn.q_norm", gen, c, bias=False)
        _norm(sd, b + "attn.k_norm", gen, c, bias=False)
        _linear(sd, b + "attn.qkv", gen, 3 * c, c, bias=False)
        _linear(sd, b + "attn.proj", gen, c, c)
        _linear(sd, b + "mlp.fc1", gen, MLP, c)
        _linear(sd, b + "mlp.fc2", gen, c, MLP)
        for ls in ("ls1", "ls2"):
            sd[b + ls + (".gamma" if gamma_form else "")] = 0.3 + _r(gen, c, scale=0.1)
    return sd


def bert_layer_state(
    sd: dict, p: str, gen: torch.Generator, hidden: int, inter: int, cross_width: int | None, query_ffn: bool
) -> None:
    for kind, kv_width in (("attention", hidden), ("crossattention", cross_width)):
        if kv_width is None:
            continue
        _linear(sd, f"{p}{kind}.self.query", gen, hidden, hidden)
        _linear(sd, f"{p}{kind}.self.key", gen, hidden, kv_width)
        _linear(sd, f"{p}{kind}.self.value", gen, hidden, kv_width)
        _linear(sd, f"{p}{kind}.output.dense", gen, hidden, hidden)
        _norm(sd, f"{p}{kind}.output.LayerNorm", gen, hidden)
    ffns = (
        (("intermediate", "output"), ("intermediate_query", "output_query"))
        if query_ffn
        else (("intermediate", "output"),)
    )
    for inter_name, out_name in ffns:
        _linear(sd, f"{p}{inter_name}.dense", gen, inter, hidden)
        _linear(sd, f"{p}{out_name}.dense", gen, hidden, inter)
        _norm(sd, f"{p}{out_name}.LayerNorm", gen, hidden)


def chat_state(seed: int = 0, llm_hidden: int = LLM_HIDDEN) -> dict[str, torch.Tensor]:
    """Chat checkpoint minus the LLM: 3 stored ViT blocks of a 4-block ViT (as 39 of 40), pos table for 8 frames."""
    gen = torch.Generator().manual_seed(seed)
    sd = vit_state(gen, blocks=3, t0=8)
    p = "qformer.bert."
    sd[p + "embeddings.word_embeddings.weight"] = _r(gen, 128, QF_HIDDEN)
    sd[p + "embeddings.position_embeddings.weight"] = _r(gen, 64, QF_HIDDEN)
    sd[p + "embeddings.position_ids"] = torch.arange(64)[None]
    _norm(sd, p + "embeddings.LayerNorm", gen, QF_HIDDEN)
    for i in range(QF_LAYERS):
        bert_layer_state(sd, f"{p}encoder.layer.{i}.", gen, QF_HIDDEN, 128, WIDTH if i % 2 == 0 else None, True)
    sd["query_tokens"] = _r(gen, 1, 32, QF_HIDDEN, scale=1.0)
    sd["extra_query_tokens"] = _r(gen, 1, 64, QF_HIDDEN, scale=1.0)
    _norm(sd, "vision_layernorm", gen, WIDTH)
    _linear(sd, "project_up", gen, llm_hidden, QF_HIDDEN)
    _linear(sd, "project_down", gen, QF_HIDDEN, llm_hidden)
    return sd


LM = {"hidden": 128, "layers": 2, "heads": 2, "kv_heads": 1, "head_dim": 64, "inter": 256, "r": 4}


def lm_state(vocab: int, seed: int = 1) -> dict[str, torch.Tensor]:
    """Tiny Mistral wrapped by PEFT LoRA with the real `lm.base_model.model.*` names (LoRA on every Linear + lm_head)."""
    gen = torch.Generator().manual_seed(seed)
    h, r = LM["hidden"], LM["r"]
    p = LM_PREFIX
    sd: dict[str, torch.Tensor] = {p + "model.embed_tokens.weight": _r(gen, vocab, h, scale=1.0)}

    def lora_linear(name: str, out: int, inp: int) -> None:
        sd[name + ".weight"] = _r(gen, out, inp)
        sd[name + ".lora_A.default.weight"] = _r(gen, r, inp)
        sd[name + ".lora_B.default.weight"] = _r(gen, out, r, scale=0.05)

    q_out, kv_out = LM["heads"] * LM["head_dim"], LM["kv_heads"] * LM["head_dim"]
    for i in range(LM["layers"]):
        b = f"{p}model.layers.{i}."
        _norm(sd, b + "input_layernorm", gen, h, bias=False)
        _norm(sd, b + "post_attention_layernorm", gen, h, bias=False)
        lora_linear(b + "self_attn.q_proj", q_out, h)
        lora_linear(b + "self_attn.k_proj", kv_out, h)
        lora_linear(b + "self_attn.v_proj", kv_out, h)
        lora_linear(b + "self_attn.o_proj", h, q_out)
        lora_linear(b + "mlp.gate_proj", LM["inter"], h)
        lora_linear(b + "mlp.up_proj", LM["inter"], h)
        lora_linear(b + "mlp.down_proj", h, LM["inter"])
    _norm(sd, p + "model.norm", gen, h, bias=False)
    lora_linear(p + "lm_head", vocab, h)
    return sd


def write_sharded(sd: dict[str, torch.Tensor], folder: Path, shards: int = 2) -> Path:
    """Official-style shards + model.safetensors.index.json; keys dealt round-robin so LoRA A/B and bases split."""
    folder.mkdir(parents=True, exist_ok=True)
    names = sorted(sd)
    weight_map = {}
    for s in range(shards):
        fname = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        part = {k: sd[k].contiguous() for k in names[s::shards]}
        save_file(part, str(folder / fname), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(part, fname))
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return folder


def clip(seed: int, b: int, t: int, h: int = 224, w: int = 224) -> torch.Tensor:
    return torch.randn(b, t, 3, h, w, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def chat_ckpt(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    sd = chat_state()
    return write_sharded(sd, tmp_path_factory.mktemp("chat")), sd


@pytest.fixture(scope="module")
def chat_encoder(chat_ckpt):
    folder, _ = chat_ckpt
    return build_chat_encoder(VisionSpec(source=str(folder), preset="tiny", llm_hidden=LLM_HIDDEN, dtype="fp32"), "cpu")


# ---------------------------------------------------------------------------------------------- chat encoder


@pytest.mark.parametrize("frames", [1, 4, 8, 16])
def test_chat_encoder_matches_reference(chat_ckpt, chat_encoder, frames: int) -> None:
    _, sd = chat_ckpt
    b = 2 if frames <= 4 else 1
    x = clip(frames, b, frames)
    with torch.inference_mode():
        tokens = chat_encoder.vision_encoder(x)
        out = chat_encoder.encode(x)
    want_tokens = ref.vit(sd, x, VIT_HEADS, num_blocks=3)
    assert tokens.shape == (b, 1 + frames * 256, WIDTH)
    torch.testing.assert_close(tokens.double(), want_tokens, atol=ATOL, rtol=ATOL)
    want = ref.bridge(sd, want_tokens, QF_HEADS, QF_LAYERS)
    assert out.shape == (b, 96, LLM_HIDDEN) and out.dtype == torch.float32
    torch.testing.assert_close(out.double(), want, atol=ATOL, rtol=ATOL)


def test_interpolated_resolution_matches_reference(chat_ckpt, chat_encoder) -> None:
    """A 168x196 input (12x14 grid) and 6 frames: table resampled linearly in time, bicubically in space."""
    _, sd = chat_ckpt
    x = clip(7, 1, 6, 168, 196)
    with torch.inference_mode():
        tokens = chat_encoder.vision_encoder(x)
        table_a = chat_encoder.vision_encoder.position_table(6, 12, 14)
        table_b = chat_encoder.vision_encoder.position_table(6, 12, 14)
    assert table_a is table_b  # cached per (T, H, W)
    torch.testing.assert_close(
        table_a.double(), ref.resample_table(sd["vision_encoder.pos_embed"], 8, 6, 12, 14), atol=ATOL, rtol=ATOL
    )
    torch.testing.assert_close(tokens.double(), ref.vit(sd, x, VIT_HEADS, 3), atol=ATOL, rtol=ATOL)


def test_chat_encoder_structure(chat_encoder) -> None:
    assert len(chat_encoder.vision_encoder.blocks) == 3  # depth 4, cut before the last block
    assert chat_encoder.bridge.qformer.config.cross_attention_frequency == 2
    assert [layer.has_cross_attention for layer in chat_encoder.bridge.qformer.encoder.layer] == [
        True,
        False,
        True,
        False,
    ]
    assert not any(n.startswith("lm") for n, _ in chat_encoder.named_parameters())


def test_uint8_batch_matches_single_clips(chat_encoder) -> None:
    frames = np.random.default_rng(0).integers(0, 256, (3, 4, 120, 160, 3), dtype=np.uint8)
    chat_encoder.batch_size = 2
    both = chat_encoder.encode(frames)
    one = chat_encoder.encode(frames[2:3])
    chat_encoder.batch_size = 8
    assert both.shape == (3, 96, LLM_HIDDEN)
    torch.testing.assert_close(both[2:3], one, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(both[0], both[1])


def test_preprocess_resizes_center_crops_and_normalises() -> None:
    frames = np.zeros((1, 2, 240, 320, 3), dtype=np.uint8)
    frames[..., 0], frames[..., 1], frames[..., 2] = 255, 128, 0
    frames[:, :, :, :40] = 0  # left band is cropped away by the center crop (320 * 224/240 = 299 -> 37 px each side)
    x = preprocess_frames(frames)
    assert x.shape == (1, 2, 3, 224, 224)
    want = torch.tensor([(1 - 0.485) / 0.229, (128 / 255 - 0.456) / 0.224, (0 - 0.406) / 0.225])
    torch.testing.assert_close(x[0, 0, :, 100, 100], want.float(), atol=1e-4, rtol=1e-4)
    with pytest.raises(FramesError):
        preprocess_frames(np.zeros((2, 224, 224, 3), dtype=np.uint8))
    with pytest.raises(FramesError):
        preprocess_frames(np.zeros((1, 1, 224, 224, 3), dtype=np.float32))


def test_missing_weights_are_named(tmp_path: Path) -> None:
    sd = chat_state()
    del (
        sd["vision_encoder.blocks.1.attn.proj.weight"],
        sd["project_up.bias"],
        sd["qformer.bert.encoder.layer.2.crossattention.self.key.bias"],
    )
    write_sharded(sd, tmp_path / "ckpt", shards=1)
    with pytest.raises(CheckpointError) as err:
        build_chat_encoder(VisionSpec(source=str(tmp_path / "ckpt"), preset="tiny", llm_hidden=LLM_HIDDEN), "cpu")
    msg = str(err.value)
    for name in (
        "vision_encoder.blocks.1.attn.proj.weight",
        "bridge.project_up.bias",
        "crossattention.attention.key.bias",
    ):
        assert name in msg


def test_random_source_is_deterministic() -> None:
    a = build_chat_encoder(TINY.vision, "cpu")
    b = build_chat_encoder(TINY.vision, "cpu")
    x = clip(3, 1, 4)
    torch.testing.assert_close(a.encode(x), b.encode(x))
    assert a.encode(x).shape == (1, 96, TINY.vision.llm_hidden)


def test_offline_hub_id_gives_access_error() -> None:
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    with pytest.raises(ModelAccessError, match="cache"):
        resolve_model_file("OpenGVLab/InternVideo2-Chat-8B", "model.safetensors.index.json")


# ---------------------------------------------------------------------------------------------- stage-2 retrieval

TEXT_HIDDEN, TEXT_HEADS, TEXT_LAYERS = 32, 2, 2  # + 1 fusion layer in the checkpoint


def stage2_state(seed: int = 5) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    sd = vit_state(gen, blocks=4, t0=4, gamma_form=True)
    cp = "vision_encoder.clip_projector."
    for n in ("norm1_q", "norm1_k", "norm1_v"):
        _norm(sd, cp + n, gen, WIDTH)
    for n in ("q", "k", "v"):
        _linear(sd, cp + "cross_attn." + n, gen, WIDTH, WIDTH, bias=False)
        sd[cp + f"cross_attn.{n}_bias"] = _r(gen, WIDTH, scale=0.1)
    _linear(sd, cp + "cross_attn.proj", gen, 48, WIDTH)
    sd["vision_encoder.clip_pos_embed"] = _r(gen, 1, 1 + 4 * 256, 16)  # distillation extras, unused
    _linear(sd, "vision_encoder.clip_decoder.0.head", gen, 16, WIDTH)
    _linear(sd, "vision_proj", gen, 32, 48)
    p = "text_encoder.bert."
    sd[p + "embeddings.word_embeddings.weight"] = _r(gen, 256, TEXT_HIDDEN, scale=1.0)
    sd[p + "embeddings.position_embeddings.weight"] = _r(gen, 64, TEXT_HIDDEN, scale=0.5)
    sd[p + "embeddings.token_type_embeddings.weight"] = _r(gen, 2, TEXT_HIDDEN, scale=0.5)
    sd[p + "embeddings.position_ids"] = torch.arange(64)[None]
    _norm(sd, p + "embeddings.LayerNorm", gen, TEXT_HIDDEN)
    for i in range(TEXT_LAYERS + 1):
        bert_layer_state(sd, f"{p}encoder.layer.{i}.", gen, TEXT_HIDDEN, 64, WIDTH if i >= TEXT_LAYERS else None, False)
    _linear(sd, "text_encoder.cls.predictions.transform.dense", gen, TEXT_HIDDEN, TEXT_HIDDEN)
    _linear(sd, "text_proj", gen, 32, TEXT_HIDDEN)
    _linear(sd, "itm_head", gen, 2, TEXT_HIDDEN)
    sd["temp"] = torch.tensor(0.07)
    return sd


@pytest.fixture(scope="module")
def stage2(tmp_path_factory: pytest.TempPathFactory):
    sd = stage2_state()
    path = tmp_path_factory.mktemp("stage2") / "InternVideo2-stage2_tiny.pt"
    torch.save({"model": sd, "epoch": 3}, path)
    return path, sd, build_retrieval(RetrievalSpec(source=str(path), preset="tiny", dtype="fp32"), "cpu")


@pytest.mark.parametrize("frames", [1, 4])
def test_retrieval_video_matches_reference(stage2, frames: int) -> None:
    _, sd, model = stage2
    x = clip(11 + frames, 2, frames)
    with torch.inference_mode():
        got = model.forward_video(x)
    tokens = ref.vit(sd, x, VIT_HEADS, num_blocks=4)
    want = ref.l2norm(ref.linear(sd, "vision_proj", ref.attention_pool(sd, tokens, heads=4)))
    assert got.shape == (2, 32)
    torch.testing.assert_close(got.double(), want, atol=ATOL, rtol=ATOL)


def test_retrieval_text_matches_reference(stage2) -> None:
    _, sd, model = stage2
    texts = ["a dog", "What is the red car running on the street?"]
    got = model.encode_text(texts)
    tok = model.tokenizer(texts, padding="longest", return_tensors="pt")
    assert tok["attention_mask"].sum(1).tolist()[0] != tok["attention_mask"].sum(1).tolist()[1]  # padding exercised
    cls = ref.bert_text(sd, tok["input_ids"], tok["attention_mask"], TEXT_HEADS, TEXT_LAYERS)
    want = ref.l2norm(ref.linear(sd, "text_proj", cls))
    torch.testing.assert_close(got.double(), want, atol=ATOL, rtol=ATOL)
    assert len(model.text_encoder.encoder.layer) == TEXT_LAYERS  # fusion layer not built
    sim = model.similarity(model.encode_video(np.zeros((3, 4, 64, 64, 3), np.uint8)), got)
    assert sim.shape == (3, 2) and float(sim.abs().max()) <= 1.0 + 1e-5
    long = model.encode_text(["word " * 200])  # truncated to max_text_len, no position overflow
    assert long.shape == (1, 32)


def test_stage2_module_wrapper_and_bare_layerscale(tmp_path: Path, stage2) -> None:
    _, sd, model = stage2
    bare = {k.replace(".ls1.gamma", ".ls1").replace(".ls2.gamma", ".ls2"): v for k, v in sd.items()}
    path = tmp_path / "s2.pt"
    torch.save({"module": bare}, path)
    other = build_retrieval(RetrievalSpec(source=str(tmp_path), preset="tiny", dtype="fp32"), "cpu")
    x = clip(2, 1, 4)
    with torch.inference_mode():
        torch.testing.assert_close(other.forward_video(x), model.forward_video(x))


def test_stage2_missing_projection_fails_loudly(tmp_path: Path) -> None:
    sd = stage2_state()
    del sd["vision_proj.weight"], sd["text_proj.bias"]
    torch.save({"model": sd}, tmp_path / "broken.pt")
    with pytest.raises(CheckpointError) as err:
        build_retrieval(RetrievalSpec(source=str(tmp_path / "broken.pt"), preset="tiny"), "cpu")
    assert "vision_proj.weight" in str(err.value) and "text_proj.bias" in str(err.value)


# ---------------------------------------------------------------------------------------------- LoRA + conversion


def test_merge_lora_equals_lora_forward() -> None:
    """Merged weight reproduces PEFT's LoRA forward: x W^T + (alpha/r) * x A^T B^T."""
    gen = torch.Generator().manual_seed(0)
    w, a, b, x = _r(gen, 24, 40), _r(gen, 16, 40), _r(gen, 24, 16), _r(gen, 5, 40, scale=1.0)
    merged = merge_lora(w, a, b, alpha=32, r=16)
    torch.testing.assert_close(x @ merged.T, x @ w.T + 2.0 * (x @ a.T) @ b.T, atol=1e-5, rtol=1e-5)


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory):
    from transformers import AutoTokenizer

    from model.assets import smollm2_dir

    tok_dir = smollm2_dir()
    vocab = len(AutoTokenizer.from_pretrained(tok_dir))
    src = tmp_path_factory.mktemp("chat_full")
    sd = {**chat_state(llm_hidden=LM["hidden"]), **lm_state(vocab)}
    write_sharded(sd, src, shards=3)
    for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (tok_dir / f).exists():
            (src / f).write_bytes((tok_dir / f).read_bytes())
    (src / "config.json").write_text(json.dumps({"model_config": {"llm": {"lora_r": LM["r"], "lora_alpha": 8}}}))
    out = tmp_path_factory.mktemp("converted")
    convert_chat_checkpoint(
        src, out, progress=False, preset="tiny", llm_config={"head_dim": LM["head_dim"]}, max_shard_bytes=4 << 20
    )
    return src, sd, out


def test_converted_llm_has_merged_bf16_weights(converted) -> None:
    from safetensors import safe_open

    _, sd, out = converted
    index = json.loads((out / "llm" / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1  # sharded
    assert not any("lora" in k or k.startswith("lm.") for k in index["weight_map"])
    cfg = json.loads((out / "llm" / "config.json").read_text())
    assert cfg["model_type"] == "mistral" and cfg["hidden_size"] == LM["hidden"] and cfg["num_key_value_heads"] == 1
    for name in ("lm_head.weight", "model.layers.1.mlp.down_proj.weight", "model.layers.0.self_attn.k_proj.weight"):
        with safe_open(str(out / "llm" / index["weight_map"][name]), "pt") as f:
            got = f.get_tensor(name)
        base = LM_PREFIX + name.removesuffix(".weight")
        want = (
            sd[base + ".weight"]
            + (8 / LM["r"]) * sd[base + ".lora_B.default.weight"] @ sd[base + ".lora_A.default.weight"]
        )
        assert got.dtype == torch.bfloat16
        torch.testing.assert_close(got, want.to(torch.bfloat16))
    with safe_open(str(out / "llm" / index["weight_map"]["model.norm.weight"]), "pt") as f:
        torch.testing.assert_close(f.get_tensor("model.norm.weight"), sd[LM_PREFIX + "model.norm.weight"].bfloat16())


def test_converted_config_has_legacy_keys_for_transformers_4(converted) -> None:
    """transformers 5 writes only `rope_parameters` and `dtype`; a transformers-4 server (older vLLM) reads
    `rope_theta` and `torch_dtype` and would silently fall back to rope_theta 10000."""
    from transformers import AutoConfig, MistralConfig

    _, _, out = converted
    raw = json.loads((out / "llm" / "config.json").read_text())
    assert raw["rope_theta"] == 1e6 and raw["torch_dtype"] == "bfloat16"  # what transformers 4 reads
    assert raw["rope_parameters"]["rope_theta"] == 1e6 and raw["dtype"] == "bfloat16"  # what transformers 5 reads
    cfg = AutoConfig.from_pretrained(out / "llm")
    assert isinstance(cfg, MistralConfig)
    assert cfg.rope_parameters["rope_theta"] == 1e6 and cfg.dtype == torch.bfloat16
    assert cfg.hidden_size == LM["hidden"]


def test_converted_vision_folder_loads_and_matches(converted) -> None:
    src, _, out = converted
    spec = VisionSpec(source=str(out), preset="tiny", llm_hidden=LM["hidden"], dtype="fp32")
    from_conv = build_chat_encoder(spec, "cpu")
    from_src = build_chat_encoder(
        VisionSpec(source=str(src), preset="tiny", llm_hidden=LM["hidden"], dtype="fp32"), "cpu"
    )
    x = clip(9, 1, 4)
    torch.testing.assert_close(from_conv.encode(x), from_src.encode(x))


GREEDY_SCRIPT = """
import json, sys
if __name__ == "__main__":
    from vllm import LLM, SamplingParams
    llm = LLM(model=sys.argv[1], dtype="float32", enforce_eager=True, max_model_len=256, seed=0)
    out = llm.generate([sys.argv[2]], SamplingParams(temperature=0.0, max_tokens=8, ignore_eos=True))
    print("TOKENS=" + json.dumps(list(out[0].outputs[0].token_ids)))
"""


@pytest.mark.slow
def test_converted_llm_same_greedy_tokens_in_transformers_and_vllm(converted, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, _, out = converted
    llm_dir = out / "llm"
    prompt = "The video shows a dog running"
    tok = AutoTokenizer.from_pretrained(llm_dir)
    model = AutoModelForCausalLM.from_pretrained(llm_dir, dtype=torch.float32)
    ids = tok(prompt, return_tensors="pt")
    gen = model.generate(**ids, max_new_tokens=8, min_new_tokens=8, do_sample=False)
    hf_tokens = gen[0, ids["input_ids"].shape[1] :].tolist()

    script = tmp_path / "greedy.py"
    script.write_text(textwrap.dedent(GREEDY_SCRIPT))
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, str(script), str(llm_dir), prompt], capture_output=True, text=True, env=env, timeout=600
    )
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("TOKENS=")), None)
    assert line is not None, proc.stderr[-3000:]
    assert json.loads(line.removeprefix("TOKENS=")) == hf_tokens


@pytest.mark.slow
def test_compiled_blocks_match_eager_reference(chat_ckpt) -> None:
    """The GPU profile compiles the ViT blocks; the compiled encoder still computes the official function."""
    folder, sd = chat_ckpt
    encoder = build_chat_encoder(
        VisionSpec(source=str(folder), preset="tiny", llm_hidden=LLM_HIDDEN, dtype="fp32"), "cpu"
    )
    encoder.vision_encoder.compile_blocks(dynamic=False)
    x = clip(11, 1, 4)
    with torch.inference_mode():
        tokens = encoder.vision_encoder(x)
    torch.testing.assert_close(tokens.double(), ref.vit(sd, x, VIT_HEADS, num_blocks=3), atol=1e-4, rtol=1e-4)
    eager = build_chat_encoder(
        VisionSpec(source=str(folder), preset="tiny", llm_hidden=LLM_HIDDEN, dtype="fp32"), "cpu"
    )
    assert sorted(encoder.state_dict()) == sorted(eager.state_dict()), "compiling keeps the checkpoint names"
