"""The visual tagger on real photos (scikit-image), and lite's sight end to end on a video assembled from them:
ingest tags the frames, the memory keeps them, "when does the cat appear" finds the cat's stretch, and an asked
moment's prompt says what that frame shows. Real models throughout (the packaged SSD-MobileNet-v2 and
EfficientNet-Lite3, MiniLM, RapidOCR); the LLM is the small packaged SmolLM2 (prepare never runs it)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from model.errors import ModelAccessError
from model.vision import TaggerConfig, VisualTagger
from model.vision.labels import imagenet_names
from tools.bench.tags import skimage_photo
from tools.eval_visual import SMALL, VisualQuestion, answer_right, make_visual_video, model_text

CATS = {names[0] for names in imagenet_names()[281:286]}


@pytest.fixture(scope="module")
def tagger() -> VisualTagger:
    return VisualTagger.load()


@pytest.mark.parametrize(
    ("photo", "thing", "scenes"),
    [
        ("chelsea.png", "cat", CATS),
        ("motorcycle_left.png", "motorcycle", {"moped", "motor scooter"}),
        ("coffee.png", "cup", {"espresso", "cup", "coffee mug"}),
        ("astronaut.png", "person", None),
    ],
)
def test_tagger_sees_what_the_photo_shows(tagger: VisualTagger, photo: str, thing: str, scenes) -> None:
    image = skimage_photo(photo)  # short side 224, as ingest decodes frames
    tags = tagger.tag(image)
    objects = [t for t in tags if t.source == "object"]
    assert objects and objects[0].label == thing and objects[0].score >= 0.5, tags
    assert objects[0].box is not None and all(0.0 <= v <= 1.0 for v in objects[0].box)
    if scenes is not None:
        assert any(t.source == "scene" and t.label in scenes for t in tags), tags
    assert [t.source for t in tags] == sorted((t.source for t in tags), key=lambda s: s != "object"), "objects first"


def test_lite0_classifier_option_also_works() -> None:
    lite0 = VisualTagger.load(TaggerConfig(classifier="efficientnet-lite0"))
    scenes = lite0.classify(skimage_photo("chelsea.png"))
    assert scenes and scenes[0].label in CATS, scenes
    assert VisualTagger.load(TaggerConfig(classifier="none")).classify(skimage_photo("chelsea.png")) == []


def test_missing_model_files_and_bad_input_fail_loudly(tmp_path: Path, tagger: VisualTagger) -> None:
    with pytest.raises(ModelAccessError, match=r"frozen_inference_graph\.pb"):
        VisualTagger.load(TaggerConfig(models_dir=str(tmp_path)))
    with pytest.raises(ModelAccessError, match="Unknown classifier"):
        VisualTagger.load(TaggerConfig(classifier="resnet"))
    with pytest.raises(ValueError, match="uint8"):
        tagger.tag(np.zeros((10, 10), np.float32))
    assert tagger.identity() != TaggerConfig(classifier="efficientnet-lite0").identity(), "the key follows the model"


def test_ocr_reads_no_text_into_a_photos_texture() -> None:
    import cv2

    from model.vision import OCRReader

    ocr = OCRReader.load()
    for photo in ("chelsea.png", "coffee.png", "astronaut.png"):  # fur read as "福", a cup rim as "O" before
        assert ocr.read(skimage_photo(photo)) == [], photo
    sign = np.full((120, 320, 3), 255, np.uint8)
    cv2.putText(sign, "HARBOR", (20, 80), cv2.FONT_HERSHEY_SIMPLEX, 2.0, (0, 0, 0), 4)
    assert [t for t, _ in ocr.read(sign)] == ["HARBOR"], "real words still read"


def test_eval_scoring_reads_the_models_own_words() -> None:
    when = VisualQuestion("when", "When does the cat appear?", 60.0, 74.0, [])
    assert answer_right(when, "The cat appears at [01:02].") and not answer_right(when, "At [00:50].")
    at = VisualQuestion("at", "What is on the table at 0:40?", 32.0, 46.0, ["cup", "coffee"])
    assert answer_right(at, "A cup of coffee [00:40].") and not answer_right(at, "A cat.")
    yes = VisualQuestion("yesno", "Is there a cat?", 60.0, 74.0, ["yes"])
    assert answer_right(yes, "Yes, at [01:00].") and not answer_right(yes, "No cat is seen, yes.")
    assert model_text("A cup.\n\nMoments that match: [00:32] seen: cup") == "A cup."


# ---------------------------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def photos_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """46 s, 320x180 at 5 fps: astronaut 0-10, coffee 10-22, cat 22-36, motorcycle 36-46 (no audio)."""
    return make_visual_video(tmp_path_factory.mktemp("visual") / "photos.mp4", SMALL, size=(320, 180), fps=5)


@pytest.fixture(scope="module")
def lite_sight(tmp_path_factory: pytest.TempPathFactory):
    """The lite profile's ingest models (tagger, MiniLM, OCR, Whisper) with the small SmolLM2 as its LLM."""
    from model.profiles import LITE, TINY
    from model.runtime import Runtime

    rt = Runtime.load(LITE.replace(llm=TINY.llm))
    assistant = rt.assistant(cache_dir=tmp_path_factory.mktemp("memcache"))
    yield rt, assistant
    asyncio.run(rt.close())


@pytest.mark.slow
def test_lite_ingest_tags_the_assembled_video_and_finds_the_cat(lite_sight, photos_video: Path) -> None:
    rt, assistant = lite_sight
    assert rt.tagger is not None and "tagger" in rt.model_ids()
    memory = assistant.ingest(photos_video)
    assert memory.timings["tags_s"] > 0
    seen = [(label, t) for c in memory.clips for label, t in zip(c.tags, c.tag_times, strict=True)]
    first = {}
    for label, t in seen:
        first.setdefault(label, t)
    assert abs(first["cat"] - 22.0) <= 5.0 and abs(first["cup"] - 10.0) <= 5.0, seen
    assert abs(first["motorcycle"] - 36.0) <= 5.0 and first["person"] <= 5.0, seen

    for question, onset, label in [
        ("When does the cat appear?", 22.0, "cat"),
        ("When do we see a motorbike?", 36.0, "motorcycle"),
    ]:
        scores = assistant.score_clips(memory, question)
        moments = assistant.find_moments(memory, question, scores)
        assert moments and abs(moments[0].start - onset) <= 5.0, (question, moments)
        assert moments[0].reason.startswith("seen: ")
        prepared = assistant.prepare(memory, question)
        assert prepared.moments[0].start == moments[0].start
        seen_lines = [s.text.split("Seen: ", 1)[1] for s in prepared.inputs.segments if "Seen: " in s.text]
        assert any(label in line for line in seen_lines), prepared.inputs

    at = assistant.prepare(memory, "What is on the table at 0:15?")
    dense = [s.text for s in at.inputs.segments if "Seen at [00:15]" in s.text]
    assert dense and "cup" in dense[0], [s.text for s in at.inputs.segments]
    cost = assistant.prompt_builder.segment_cost(at.inputs.segments[0], memory.duration)
    assert 0 < cost < 120, "a clip's tag line stays short"

    again = rt.assistant(cache=assistant.cache).ingest(photos_video)
    assert again.from_cache and [c.meta() for c in again.clips] == [c.meta() for c in memory.clips]
    untagged = rt.profile.replace(visual_tags=False)
    import dataclasses

    other = dataclasses.replace(rt, profile=untagged, tagger=None).assistant(cache=assistant.cache)
    assert other.key_for(photos_video, other.sampling_for()) != assistant.key_for(
        photos_video, assistant.sampling_for()
    ), "a memory made without tags is another memory"
