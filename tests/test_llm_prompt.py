"""Prompt assembly: template order, token ids as the official InternVideo2 builder makes them (but one BOS),
embedding-table parity with the model's own input embeddings, history, subtitles, validation.

Mistral-v0.3's tokenizer cannot be fetched offline, so the Mistral template is checked with a small
byte-level BPE tokenizer trained here (Metaspace like sentencepiece) that has the same special tokens at
the same ids (<unk>=0, <s>=1, </s>=2, [INST]=3, [/INST]=4) and, like Mistral's, adds <s> by default; plus
a tiny random Llama whose embedding table the builder must read. ChatML is checked with the packaged
SmolLM2-135M-Instruct.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model.llm import PromptBuilder, PromptError, PromptInputs, PromptTemplate, VideoSegment, validate_prompt_embeds
from model.llm.prompt import format_frame_times, load_input_embeddings
from model.timecode import format_time

MISTRAL_SPECIALS = ["<unk>", "<s>", "</s>", "[INST]", "[/INST]"]
VID = "<VidPlaceHolder>"  # the official builder's placeholder, split on below


@pytest.fixture(scope="module")
def mistral_like_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama folder with a Mistral-like tokenizer (same special ids, BOS added by default)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    corpus = [
        "The video contains 8 frames sampled at 0.5, 1.5, 2.5 seconds.",
        "This video's subtitles are listed below: hello there, the cat sits on the mat.",
        "<Video></Video> What happens in the video? Describe the scene. A man walks a dog in the park.",
        "Clip 1 [00:00-00:08]: someone opens a door. When does the dog bark? It barks at 00:05.",
    ] * 20
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=300, special_tokens=MISTRAL_SPECIALS))
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)]
    )
    assert [tok.token_to_id(s) for s in MISTRAL_SPECIALS] == [0, 1, 2, 3, 4]
    out = tmp_path_factory.mktemp("mistral_like")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    fast.save_pretrained(out)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=1,
        eos_token_id=2,
    )
    LlamaForCausalLM(config).save_pretrained(out, safe_serialization=True)
    return out


@pytest.fixture(scope="module")
def mistral(mistral_like_dir: Path) -> PromptBuilder:
    return PromptBuilder("mistral-internvideo2", mistral_like_dir)


@pytest.fixture(scope="module")
def mistral_model(mistral_like_dir: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(mistral_like_dir, dtype=torch.float32)


@pytest.fixture(scope="module")
def smol_dir() -> Path:
    from model.assets import smollm2_dir

    return smollm2_dir()


@pytest.fixture(scope="module")
def chatml(smol_dir: Path) -> PromptBuilder:
    return PromptBuilder("chatml", smol_dir)


def official_ids(tokenizer, conversation: str, n_embeds: list[int]) -> list[list[int] | int]:
    """Independent port of InternVideo2-Chat's `build_input_ids`: split on the placeholder, tokenise
    every piece with the tokenizer defaults, an embedding block of `n` rows between pieces."""
    pieces = conversation.split(VID)
    assert len(pieces) == len(n_embeds) + 1
    out: list[list[int] | int] = []
    for i, piece in enumerate(pieces):
        out.append(list(tokenizer(piece)["input_ids"]))
        if i < len(n_embeds):
            out.append(n_embeds[i])
    return out


def bos_once(official: list[list[int] | int]) -> list[list[int] | int]:
    """The official ids with one BOS: the BOS the official builder puts before every later run is dropped."""
    return [p[1:] if isinstance(p, list) and i and p[:1] == [1] else p for i, p in enumerate(official)]


def official_conversation(msg: str, history: list[tuple[str, str]], question: str, subtitles: str = "") -> str:
    """The conversation string of the official `chat()` (plus the evaluated subtitle block)."""
    conv = "[INST] "
    if subtitles:
        conv += f"This video's subtitles are listed below: {subtitles}\n"
    conv += "<Video>" + VID + "</Video>" + msg.rstrip() + "[/INST]"
    for q, a in history:
        conv += " [INST] " + q + " [/INST]" + a + "</s>"
    return conv + " [INST] " + question + " [/INST]"


def flatten(token_layout: list) -> list[int]:
    """Ids with -1 for every embedding row (for printing and pinning)."""
    ids: list[int] = []
    for part in token_layout:
        ids += [-1] * (part if isinstance(part, int) else part.shape[0]) if not isinstance(part, list) else part
    return ids


def test_mistral_template_matches_official_builder(mistral: PromptBuilder, mistral_model) -> None:
    times = [0.5, 1.5, 2.5, 3.5, 4.5, 5.5, 6.5, 7.5]
    clip = torch.randn(96, 64)
    history = [("What is the cat doing?", "It sits on the mat.")]
    inputs = PromptInputs(
        question="When does the dog bark?",
        segments=[VideoSegment(0.0, 8.0, times, clip)],
        history=history,
    )
    msg = " The video contains 8 frames sampled at 0.5, 1.5, 2.5, 3.5, 4.5, 5.5, 6.5, 7.5 seconds. "
    assert format_frame_times(times) == "0.5, 1.5, 2.5, 3.5, 4.5, 5.5, 6.5, 7.5"
    official = official_ids(mistral.tokenizer, official_conversation(msg, history, inputs.question), [96])
    expected = bos_once(official)
    assert expected != official  # the official builder does put a BOS after the video block
    got = mistral.token_layout(inputs)
    assert [p if isinstance(p, list) else p.shape[0] for p in got] == expected

    ids = flatten(got)
    print("mistral-internvideo2 ids (-1 = video embedding row):", ids)
    # Pinned structure: BOS + [INST] open the prompt, the only BOS; after the 96 embeddings [/INST], the past
    # turn closed by </s>, and the question.
    assert ids[:2] == [1, 3]
    assert ids[ids.index(-1) : ids.index(-1) + 96] == [-1] * 96 and ids.count(-1) == 96
    assert [i for i in ids if i in (1, 2, 3, 4)] == [1, 3, 4, 3, 4, 2, 3, 4]
    assert ids[-1] == 4

    # Embedding parity: text rows are the model's own input embeddings of those ids; video rows are the clip.
    embeds = mistral.build(inputs)
    ref_rows = []
    with torch.no_grad():
        for part in expected:
            ref_rows.append(
                mistral_model.get_input_embeddings()(torch.tensor(part)) if isinstance(part, list) else clip
            )
    torch.testing.assert_close(embeds, torch.cat(ref_rows), rtol=0, atol=0)


def test_mistral_subtitles_before_video_and_instructions_prefix(mistral: PromptBuilder) -> None:
    inputs = PromptInputs(
        question="What is said?",
        segments=[VideoSegment(0.0, 4.0, [0.5, 2.5], torch.zeros(96, 64))],
        subtitles="[00:01] hello there",
    )
    msg = " The video contains 2 frames sampled at 0.5, 2.5 seconds. "
    conv = official_conversation(msg, [], inputs.question, subtitles="[00:01] hello there")
    got = mistral.token_layout(inputs)
    assert [p if isinstance(p, list) else p.shape[0] for p in got] == bos_once(
        official_ids(mistral.tokenizer, conv, [96])
    )
    text = mistral.layout(inputs)[0]
    assert text == "[INST] This video's subtitles are listed below: [00:01] hello there\n<Video>"
    # Instructions go before [INST], as the official `instruction` argument does.
    with_instr = mistral.layout(PromptInputs(question="q", segments=inputs.segments, instructions="Be brief."))
    assert isinstance(with_instr[0], str) and with_instr[0].startswith("Be brief.[INST] <Video>")


def test_many_clips_get_time_ranges_and_own_blocks(mistral: PromptBuilder) -> None:
    blocks = [torch.full((96, 64), float(i)) for i in range(3)]
    segs = [VideoSegment(80.0 + 8 * i, 88.0 + 8 * i, [80.5 + 8 * i], blocks[i]) for i in range(3)]
    layout = mistral.layout(PromptInputs(question="q", segments=segs))
    texts = [p for p in layout if isinstance(p, str)]
    tensors = [p for p in layout if isinstance(p, torch.Tensor)]
    assert len(tensors) == 3 and all(torch.equal(a, b) for a, b in zip(tensors, blocks, strict=True))
    assert texts[0] == "[INST] Clip 1 [01:20-01:28]: <Video>"
    assert texts[1].startswith("</Video> The video contains 1 frames sampled at 80.5 seconds. \nClip 2 [01:28-01:36]: ")
    assert texts[3].startswith("</Video> The video contains 1 frames sampled at 96.5 seconds.[/INST]")


def test_chatml_lite_text_only_history_and_order(chatml: PromptBuilder, smol_dir: Path) -> None:
    inputs = PromptInputs(
        question="When is the door opened?",
        segments=[
            VideoSegment(0.0, 16.0, [], None, "[00:03] Someone says hello."),
            VideoSegment(16.0, 32.0, [], None, "on screen: EXIT"),
        ],
        subtitles="[00:03] hello\n[00:20] the door opens",
        history=[("Who is there?", "A man.")],
        instructions="Answer with [mm:ss] times.",
        duration=3725.0,
    )
    layout = chatml.layout(inputs)
    assert len(layout) == 1  # lite: no embedding blocks, one text run
    text = layout[0]
    assert text == (
        "<|im_start|>system\nAnswer with [mm:ss] times.<|im_end|>\n"
        "<|im_start|>user\nWho is there?<|im_end|>\n<|im_start|>assistant\nA man.<|im_end|>\n"
        "<|im_start|>user\n"
        "Clip 1 [0:00:00-0:00:16]: [00:03] Someone says hello.\n"  # a video over an hour: h:mm:ss everywhere
        "Clip 2 [0:00:16-0:00:32]: on screen: EXIT\n"
        "Subtitles of the video:\n[00:03] hello\n[00:20] the door opens\n"
        "Question: When is the door opened?<|im_end|>\n<|im_start|>assistant\n"
    )
    # SmolLM2's tokenizer adds no BOS; <|im_start|>/<|im_end|> are single special ids 1/2.
    ids = chatml.tokenize(text)
    assert ids[0] == 1 and ids.count(1) == 5 and ids.count(2) == 4
    assert chatml.count_tokens("hello there") == len(chatml.tokenizer("hello there")["input_ids"]) > 0

    # The embedding-table lookup equals the real model's get_input_embeddings() on the same ids.
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(smol_dir, dtype=torch.float32)
    with torch.no_grad():
        ref = model.get_input_embeddings()(torch.tensor(ids))
    embeds = chatml.build(inputs)
    assert embeds.shape == (len(ids), 576) and embeds.dtype == torch.float32
    torch.testing.assert_close(embeds, ref, rtol=0, atol=0)
    assert chatml.hidden_size == model.config.hidden_size == 576


def test_chatml_default_instructions_and_embeddings_block(chatml: PromptBuilder) -> None:
    clip = torch.randn(96, 576, dtype=torch.bfloat16)  # an encoder in bf16: cast to the table's dtype
    layout = chatml.layout(PromptInputs(question="What?", segments=[VideoSegment(2.0, 6.0, [2.5, 4.5], clip)]))
    assert isinstance(layout[0], str) and layout[0].startswith(
        "<|im_start|>system\nYou are a helpful assistant that answers questions about a video"
    )
    assert layout[1].dtype == torch.float32 and torch.equal(layout[1], clip.float())
    assert (
        layout[2]
        == " The clip contains 2 frames sampled at 2.5, 4.5 seconds.\nQuestion: What?<|im_end|>\n<|im_start|>assistant\n"
    )


def test_embedding_table_read_alone_from_sharded_folder(tmp_path: Path, mistral_like_dir: Path) -> None:
    import json

    from safetensors.torch import load_file, save_file

    state = load_file(mistral_like_dir / "model.safetensors")
    names = sorted(state)
    half = len(names) // 2
    save_file({k: state[k] for k in names[:half]}, tmp_path / "model-00001-of-00002.safetensors")
    save_file({k: state[k] for k in names[half:]}, tmp_path / "model-00002-of-00002.safetensors")
    weight_map = {k: f"model-0000{1 if i < half else 2}-of-00002.safetensors" for i, k in enumerate(names)}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    table = load_input_embeddings(tmp_path)
    assert torch.equal(table, state["model.embed_tokens.weight"])


@pytest.mark.parametrize(
    ("tensor", "words"),
    [
        (torch.randn(10, 32), "width 32"),
        (torch.full((10, 64), float("nan")), "NaN"),
        (torch.randn(1, 10, 64), "2-D"),
        (torch.randn(64), "2-D"),
        (torch.zeros(0, 64), "empty"),
        (torch.ones(10, 64, dtype=torch.long), "floating point"),
        (torch.randn(500, 64), "context window"),
        ([[0.0] * 64], "torch.Tensor"),
    ],
)
def test_validation_refuses_malformed_embeddings(tensor, words: str) -> None:
    with pytest.raises(PromptError, match=words):
        validate_prompt_embeds(tensor, hidden_size=64, max_model_len=512, max_tokens=16)


def test_build_errors_are_clear(mistral: PromptBuilder, chatml: PromptBuilder) -> None:
    with pytest.raises(PromptError, match=r"\[n, 64\]"):
        mistral.build(PromptInputs(question="q", segments=[VideoSegment(0, 1, [0.5], torch.randn(96, 4096))]))
    with pytest.raises(PromptError, match="NaN"):
        mistral.build(
            PromptInputs(question="q", segments=[VideoSegment(0, 1, [0.5], torch.full((4, 64), float("inf")))])
        )
    with pytest.raises(PromptError, match="context window"):  # 6 x 96 rows > 512 positions
        segs = [VideoSegment(i, i + 1, [i + 0.5], torch.zeros(96, 64)) for i in range(6)]
        mistral.build(PromptInputs(question="q", segments=segs))
    with pytest.raises(PromptError, match="context window"):
        mistral.build(PromptInputs(question="q", segments=[VideoSegment(0, 1, [0.5], torch.zeros(96, 64))]), 480)
    with pytest.raises(PromptError, match="empty"):
        chatml.build(PromptInputs(question="  "))
    with pytest.raises(PromptError, match=r"Unknown prompt template 'nope'.*chatml"):
        PromptTemplate.load("nope")


def test_template_files_are_complete_data() -> None:
    for name in ("chatml", "mistral-internvideo2"):
        template = PromptTemplate.load(name)
        assert template.name == name
    assert format_time(0) == "00:00" and format_time(89.9) == "01:29" and format_time(3600) == "1:00:00"


@pytest.mark.parametrize("name", ["chatml", "mistral"])
@pytest.mark.parametrize("duration", [95.0, 7300.0])
def test_segment_costs_add_up_to_the_built_prompt(request: pytest.FixtureRequest, name: str, duration: float) -> None:
    """What the planner budgets with: fixed parts + each segment's cost == the built prompt, within a token or two."""
    builder: PromptBuilder = request.getfixturevalue(name)
    start = 10.0 if duration < 3600 else 1800.0  # 00:10 or 0:30:00
    segs = [
        VideoSegment(
            start + 8 * i,
            start + 8 * i + 8,
            [start + 8 * i + k + 0.5 for k in range(4)],
            torch.zeros(96, builder.hidden_size),
        )
        for i in range(2)
    ]
    segs[1].text = "on screen: EXIT"
    segs.append(VideoSegment(start + 40, start + 56, [], None, f"[{format_time(start + 41, duration)}] the dog barks"))
    base = PromptInputs(
        question="When does the dog bark?",
        subtitles=f"[{format_time(start + 1, duration)}] hello there",
        history=[("Who is there?", "A man.")],
        duration=duration,
    )
    fixed = builder.build(base).shape[0]
    costs = [builder.segment_cost(s, duration) for s in segs]
    for n in (2, 3):
        built = builder.build(PromptInputs(**{**base.__dict__, "segments": segs[:n]})).shape[0]
        assert abs(fixed + sum(costs[:n]) - built) <= 2, (n, fixed, costs, built)
    assert costs[0] > 96 and costs[2] == builder.text_cost(
        builder.template.clip_separator
        + builder.template.clip_intro.format(
            index=1, start=format_time(start + 40, duration), end=format_time(start + 56, duration)
        )
        + builder.template.segment_text.format(text=segs[2].text)
    )
    # The intro uses the video's clock: h:mm:ss for a 2-hour video, costing more tokens than mm:ss.
    intro = builder.layout(PromptInputs(question="q", segments=segs[:2], duration=duration))[0]
    assert isinstance(intro, str) and ("Clip 1 [0:30:00-0:30:08]" in intro) == (duration > 3600)


MISTRAL_V03_SP = "mistral_instruct_tokenizer_240323.model.v3"  # Mistral-7B-v0.3's sentencepiece model


@pytest.fixture(scope="module")
def mistral_v03(tmp_path_factory: pytest.TempPathFactory) -> tuple[PromptBuilder, object]:
    """Mistral-7B-Instruct-v0.3's own tokenizer (mistral-common ships its sentencepiece model, offline) in a model
    folder with a random embedding table; and mistral-common's tokenizer of the same model, as the reference."""
    import json
    import shutil

    mistral_common = pytest.importorskip("mistral_common")
    from mistral_common.tokens.tokenizers.mistral import MistralTokenizer
    from safetensors.torch import save_file
    from transformers import AutoTokenizer, MistralConfig

    sp = Path(mistral_common.__file__).parent / "data" / MISTRAL_V03_SP
    src = tmp_path_factory.mktemp("mistral_v03_sp")
    shutil.copy(sp, src / "tokenizer.model")
    special = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
    config = {"tokenizer_class": "LlamaTokenizer", "add_bos_token": True, "legacy": False, **special}
    (src / "tokenizer_config.json").write_text(json.dumps(config))
    out = tmp_path_factory.mktemp("mistral_v03")
    AutoTokenizer.from_pretrained(src).save_pretrained(out)  # converted once to tokenizer.json, as on the hub
    MistralConfig(vocab_size=32768, hidden_size=64).save_pretrained(out)
    save_file({"model.embed_tokens.weight": torch.randn(32768, 64, generator=torch.Generator().manual_seed(0))},
              str(out / "model.safetensors"))  # fmt: skip
    return PromptBuilder("mistral-internvideo2", out), MistralTokenizer.from_file(str(sp)).instruct_tokenizer.tokenizer


def test_mistral_v03_prompt_ids_have_one_bos(mistral_v03: tuple[PromptBuilder, object]) -> None:
    builder, reference = mistral_v03
    for text in ("What happens in the video?", "</Video> The video contains 2 frames", "naïve café 漢字\nok"):
        assert builder.tokenize(text) == reference.encode(text, bos=False, eos=False)  # type: ignore[attr-defined]
    inputs = PromptInputs(question="What happens?", segments=[VideoSegment(0.0, 4.0, [0.5, 2.5], torch.zeros(4, 64))])
    layout = builder.token_layout(inputs)
    assert [p if isinstance(p, list) else p.shape[0] for p in layout] == [
        [1, 3, 1291, 12529, 29535],  # <s> [INST] ▁< Video >
        4,
        [2635, 12529, 29535, 1183, 4566, 6644, 29473, 29518, 16574, 5313, 10435, 1206, 29473, 29502, 29491, 29550,
         29493, 29473, 29518, 29491, 29550, 7999, 29491, 4, 29473, 3, 2592, 7649, 29572, 29473, 4],  # no <s> here
    ]  # fmt: skip
    ids = flatten(layout)
    assert ids.count(1) == 1 and ids[0] == 1 == builder.tokenizer.bos_token_id
    embeds = builder.build(inputs)
    assert embeds.shape == (len(ids), 64)
    text_rows = [i for i, t in enumerate(ids) if t >= 0]
    assert torch.equal(embeds[text_rows], builder.embed_table[[t for t in ids if t >= 0]])


def test_token_ids_outside_the_embedding_table_are_a_prompt_error(
    mistral_like_dir: Path, tmp_path: Path, mistral: PromptBuilder
) -> None:
    """A tokenizer with a token its model lacks (an added special token, a mismatched folder) is refused clearly."""
    import shutil

    from transformers import AutoTokenizer

    folder = tmp_path / "extra_token"
    shutil.copytree(mistral_like_dir, folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.add_tokens(["<frame_marker>"], special_tokens=True)
    tokenizer.save_pretrained(folder)
    builder = PromptBuilder("mistral-internvideo2", folder)
    rows = builder.embed_table.shape[0]
    assert builder.tokenize("<frame_marker>") == [rows]  # one past the table's last row
    with pytest.raises(PromptError, match=rf"token ids \[{rows}\].*\({rows} rows\)"):
        builder.build(PromptInputs(question="What is <frame_marker>?"))
    with pytest.raises(PromptError, match=r"token ids \[-1\]"):
        mistral.embed_ids([5, -1])
    assert builder.build(PromptInputs(question="What happens?")).shape[1] == 64  # ordinary text still builds
