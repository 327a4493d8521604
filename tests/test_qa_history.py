"""Long conversations stay inside a token budget; long questions are refused with a clear message.

The pure parts run on the hand-built memory of tests/test_qa_plan.py (no video decoding). The conversation test
uses the real chatml PromptBuilder and the real transformers engine on the packaged SmolLM2-135M: turn 80 of a
chat gets an answer, and its prompt is no longer than turn 20's.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from model.llm import PromptBuilder, PromptError, PromptInputs
from model.qa import (
    MAX_QUESTION_CHARS,
    AnswerConfig,
    Assistant,
    ChatSettings,
    GenerationSettings,
    QAModels,
    QuestionError,
    RetrievalSettings,
    check_question,
    parse_time_refs,
)
from model.qa.plan import plan_prompt, trim_history
from model.qa.search import QuestionVectors, said_windows, score_clips
from tests.test_qa_plan import memory, seg_cost, words_cost

LONG_ANSWER = "The baker slices the warm bread on the wooden table while the oven glows behind him. " * 3


def turns(n: int) -> list[tuple[str, str]]:
    return [(f"Question number {i} about the bakery scene?", f"Answer {i}. {LONG_ANSWER}") for i in range(n)]


def words_turn(question: str, answer: str) -> int:
    return words_cost(question) + words_cost(answer)


# ---------------------------------------------------------------------------------------------- pure
def test_trim_history_keeps_the_latest_unbroken_stretch() -> None:
    history = [("a", "x " * 10), ("b", "y " * 50), ("c", "z " * 10), ("d", "w " * 10)]
    assert trim_history(history, 1000, words_turn) == history
    assert trim_history(history, 30, words_turn) == history[2:]  # the oldest go first
    # "a" would fit, but nothing older than a turn that does not fit is kept
    assert trim_history(history, 40, words_turn) == history[2:]
    assert trim_history(history, 5, words_turn) == []
    assert trim_history([], 100, words_turn) == []


def test_plan_keeps_the_conversation_in_its_budget() -> None:
    m = memory()
    question = "What does the baker slice?"
    tq = parse_time_refs(question, m.duration)
    scores = score_clips(m, question, QuestionVectors())
    said = said_windows(m, question, QuestionVectors())
    history = turns(60)

    def plan(budget: int, history_budget: int | None = None):
        return plan_prompt(
            m, question, tq, scores, [], [], said, RetrievalSettings(), budget, seg_cost, words_cost,
            history=history, history_budget=history_budget, turn_cost=words_turn,
        )  # fmt: skip

    p = plan(400)  # default: half the context budget
    kept = p.inputs.history
    assert kept and kept[-1] == history[-1], "the latest turn is always the first kept"
    assert sum(words_turn(q, a) for q, a in kept) <= 200 < sum(words_turn(q, a) for q, a in history[-len(kept) - 1 :])
    assert p.history_dropped == 60 - len(kept) > 0
    assert plan(400, history_budget=0).inputs.history == []
    assert plan(400, history_budget=10**6).inputs.history == history


def test_question_length_is_checked_with_a_clear_message() -> None:
    assert check_question("  What happens at 0:30?  ") == "What happens at 0:30?"
    assert check_question("x" * MAX_QUESTION_CHARS) == "x" * MAX_QUESTION_CHARS
    for empty in ("", "   ", None):
        with pytest.raises(QuestionError, match="type a question"):
            check_question(empty)
    with pytest.raises(QuestionError, match=r"20,000 characters long; questions may have up to 2,000"):
        check_question("why?" * 5000)


# ---------------------------------------------------------------------------------------------- real models
@pytest.fixture(scope="module")
def smol_dir() -> Path:
    from model.assets import smollm2_dir

    return smollm2_dir()


@pytest.fixture(scope="module")
def builder(smol_dir: Path) -> PromptBuilder:
    return PromptBuilder("chatml", smol_dir)


@pytest.fixture(scope="module")
def assistant(smol_dir: Path, builder: PromptBuilder, tmp_path_factory: pytest.TempPathFactory) -> Assistant:
    import torch

    from model.llm.hf import TransformersEngine
    from model.memory import MemoryCache

    engine = TransformersEngine(smol_dir, dtype=torch.float32, max_model_len=2048)  # lite-like: a short window
    config = AnswerConfig(context_budget_tokens=600, max_new_tokens=8)
    return Assistant(QAModels(engine=engine, prompt_builder=builder), config, MemoryCache(tmp_path_factory.mktemp("c")))


@pytest.mark.slow
def test_turn_80_is_answered_and_costs_no_more_than_turn_20(assistant: Assistant, builder: PromptBuilder) -> None:
    m = memory()
    question = "What does the baker slice?"
    sizes = {}
    for n in (5, 20, 80):
        prepared = assistant.prepare(m, question, history=turns(n))
        sizes[n] = builder.build(prepared.inputs, 8, assistant.engine.max_model_len).shape[0]
        assert prepared.inputs.history[-1] == turns(n)[-1]
    assert sizes[5] < sizes[20] and sizes[80] <= sizes[20] < assistant.engine.max_model_len - 8, sizes
    settings = ChatSettings(GenerationSettings(max_tokens=8))
    answer = asyncio.run(assistant.answer(m, question, history=turns(80), settings=settings))
    assert answer.text and answer.timings["prompt_tokens"] == sizes[80]


@pytest.mark.slow
def test_an_overlong_question_is_refused_before_any_work(assistant: Assistant) -> None:
    with pytest.raises(QuestionError, match="20,000 characters"):
        assistant.prepare(memory(), "why?" * 5000)
    # Within the character cap but too many tokens for this model's budget (half of 600): refused too.
    with pytest.raises(QuestionError, match="tokens long"):
        assistant.prepare(memory(), "🎬" * 1500)


def test_over_budget_message_names_what_is_long(builder: PromptBuilder) -> None:
    chat = PromptInputs(question="What happens next?", history=turns(40))
    with pytest.raises(PromptError) as err:
        builder.build(chat, max_tokens=64, max_model_len=2048)
    text = str(err.value)
    assert "the conversation so far" in text and "Clear the chat" in text and "context window of 2048" in text
    assert "shorter part of the video" not in text
    long_question = PromptInputs(question="Why? " * 1500)
    with pytest.raises(PromptError, match="Ask a shorter question"):
        builder.build(long_question, max_tokens=64, max_model_len=2048)


@pytest.mark.slow
def test_every_answer_path_keeps_to_the_engines_window(assistant: Assistant, builder: PromptBuilder) -> None:
    """The engine's window (2048) is shorter than the model's: `generate`, which the single- and the cross-video
    answers share, refuses a prompt over it with the prompt builder's breakdown and advice (the engine's own check
    only says the prompt is too long)."""
    from model.llm import GenerationParams
    from model.qa.answer import Generation, generate

    assert builder.max_model_len > assistant.engine.max_model_len
    inputs = PromptInputs(question="What does the baker slice?", subtitles=LONG_ANSWER * 40)
    assert 2048 < builder.build(inputs, 8).shape[0] < builder.max_model_len

    async def run() -> None:
        stream = generate(
            assistant.engine, builder, inputs, [], GenerationParams(max_tokens=8), "w", (), Generation({})
        )
        async for _ in stream:
            pass

    with pytest.raises(PromptError, match=r"the video context \d+\).*window of 2048 tokens\. Ask for a shorter answer"):
        asyncio.run(run())
