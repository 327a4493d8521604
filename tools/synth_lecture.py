"""Long "lecture" videos with known chapters: one slide per topic (its own colour and title), continuous espeak-ng
speech about that topic, topics changing at known times. Ground truth for chapters, streaming ingest and the
`bench ingest` hour (ffmpeg + espeak-ng, offline).

A slide stays still while its topic is spoken (as in a talk), so frames only change at a topic change: the
OCR gate has what real slide videos give it. `clock=True` burns the usual clock in as well (every frame changes).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np

from tools.synth import (
    FONT,
    SpokenSentence,
    SynthVideo,
    _esc,
    _ffmpeg,
    _read_wav,
    _write_wav,
    clock_filter,
    speak,
)

# (slide title, background colour, sentences about it). Each topic has its own words, so its text embeddings
# differ from its neighbours'; sentences repeat when a topic runs longer than they last.
TOPICS: list[tuple[str, str, list[str]]] = [
    (
        "Baking Bread",
        "0x8B4513",
        [
            "Today we bake a simple loaf of bread at home.",
            "Mix the flour, the water, the salt and the yeast in a large bowl.",
            "Knead the dough for ten minutes until it feels smooth and soft.",
            "Let the dough rise in a warm place for about one hour.",
            "Shape the loaf and put it into a hot oven.",
            "The crust turns golden brown after forty minutes of baking.",
            "Let the bread cool before you cut the first slice.",
        ],
    ),
    (
        "Planets",
        "0x000080",
        [
            "The solar system has eight planets that circle the sun.",
            "Mercury is the smallest planet and the closest to the sun.",
            "Jupiter is a giant made of gas with a great red storm.",
            "Saturn is famous for its bright rings of ice and rock.",
            "Mars is a cold red desert with huge volcanoes.",
            "Telescopes let astronomers watch the planets move across the night sky.",
            "A year on Neptune lasts longer than one hundred and sixty Earth years.",
        ],
    ),
    (
        "Football Rules",
        "0x006400",
        [
            "A football match has two teams of eleven players.",
            "The goalkeeper is the only player allowed to touch the ball with the hands.",
            "A goal counts when the whole ball crosses the line.",
            "The referee shows a yellow card for a serious foul.",
            "Each half of the match lasts forty five minutes.",
            "A penalty kick is taken from eleven meters in front of the goal.",
            "The offside rule stops attackers from waiting behind the defenders.",
        ],
    ),
    (
        "Piano Practice",
        "0x4B0082",
        [
            "Sit straight at the piano and keep your wrists relaxed.",
            "Play the scale of C major slowly with both hands.",
            "Use a metronome to keep a steady beat while you practice.",
            "Learn a new piece one short phrase at a time.",
            "The pedal makes the notes ring on after you lift your fingers.",
            "Practice the difficult bars more often than the easy ones.",
            "Twenty minutes of practice every day beats three hours once a week.",
        ],
    ),
    (
        "Bicycle Repair",
        "0x2F4F4F",
        [
            "A flat tire is the most common bicycle repair.",
            "Take the wheel off and lever the tire away from the rim.",
            "Find the hole in the inner tube by listening for air.",
            "Glue a patch over the hole and wait until it dries.",
            "Oil the chain so that it runs quietly and does not rust.",
            "Check that the brakes grip the rim firmly before you ride.",
            "Pump the tires to the pressure written on their side.",
        ],
    ),
    (
        "Ocean Life",
        "0x008B8B",
        [
            "The ocean covers most of the surface of our planet.",
            "Whales are mammals that breathe air through a blowhole.",
            "Coral reefs are built by tiny animals over thousands of years.",
            "Octopuses can change their colour to hide from predators.",
            "Deep sea fish make their own light in the dark water.",
            "Sharks have several rows of sharp teeth that keep growing back.",
            "Sea turtles return to the same beach to lay their eggs.",
        ],
    ),
    (
        "Saving Money",
        "0x556B2F",
        [
            "A budget shows where your money goes every month.",
            "Write down every expense for a few weeks.",
            "Put a part of each salary into a savings account.",
            "Compare prices before you buy anything expensive.",
            "Interest makes savings grow slowly over many years.",
            "Pay off credit card debt before you start investing.",
            "An emergency fund covers three months of living costs.",
        ],
    ),
    (
        "Mountain Hiking",
        "0x800000",
        [
            "Plan your mountain hike and check the weather forecast.",
            "Wear strong boots and bring a warm jacket.",
            "Carry enough water and some food for the trail.",
            "Walk slowly on the steep path to save your energy.",
            "The view from the summit shows the valley far below.",
            "Tell someone where you are going before you leave.",
            "Turn back early when clouds and thunder come closer.",
        ],
    ),
    (
        "Growing Tomatoes",
        "0xB22222",
        [
            "Tomatoes grow best in a sunny and sheltered spot.",
            "Plant the seedlings deep so that strong roots form.",
            "Water the tomato plants at the base in the morning.",
            "Tie the stems to a stick as the plants grow taller.",
            "Pinch out the side shoots to get bigger fruit.",
            "The tomatoes are ripe when they turn red and soft.",
            "Keep some seeds from the best fruit for next year.",
        ],
    ),
    (
        "Computer Networks",
        "0x191970",
        [
            "A computer network connects machines so they can share data.",
            "Every device on the internet has an address.",
            "A router forwards packets towards their destination.",
            "Wireless networks send data through radio waves.",
            "A firewall blocks traffic that is not allowed.",
            "Fibre cables carry light pulses across the oceans.",
            "Encryption keeps messages private on their way.",
        ],
    ),
    (
        "Birds in Winter",
        "0x708090",
        [
            "Many birds fly south before the winter begins.",
            "Robins and sparrows stay and search for seeds in the snow.",
            "A bird feeder with sunflower seeds helps them through the cold.",
            "Birds fluff up their feathers to keep warm.",
            "Owls hunt mice at night in the quiet winter fields.",
            "Fresh water is hard for birds to find when ponds freeze.",
            "Geese fly in a long line shaped like the letter V.",
        ],
    ),
    (
        "Coffee Brewing",
        "0x3E2723",
        [
            "Good coffee starts with freshly roasted beans.",
            "Grind the beans just before you brew them.",
            "The water should be hot but not boiling.",
            "A French press needs four minutes of steeping.",
            "Espresso is pressed through fine coffee under high pressure.",
            "Milk foam turns an espresso into a cappuccino.",
            "Store the beans in a closed jar away from light.",
        ],
    ),
]


def lecture_plan(duration: float, scene_s: float) -> list[tuple[float, float, int]]:
    """(start, end, topic index) for scenes of `scene_s` seconds filling `duration` (topics cycle)."""
    out = []
    t, i = 0.0, 0
    while t < duration - 1e-6:
        end = min(duration, t + scene_s)
        out.append((t, end, i % len(TOPICS)))
        t, i = end, i + 1
    return out


def make_lecture_video(
    path: str | Path,
    duration: float = 3600.0,
    scene_s: float = 300.0,
    size: tuple[int, int] = (320, 240),
    fps: int = 5,
    pause_s: float = 0.6,
    clock: bool = False,
    voice: str = "en-us",
) -> SynthVideo:
    """Slides with continuous speech; `scenes` holds (start, end, title) and `sentences` where each is said."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    plan = lecture_plan(duration, scene_s)
    work = Path(tempfile.mkdtemp(prefix="lecture-", dir=path.parent))
    try:
        said: dict[str, np.ndarray] = {}
        sr = 22050
        for _t0, _t1, k in plan:
            for text in TOPICS[k][2]:
                if text not in said:
                    samples, sr = _read_wav(speak(text, work / f"s{len(said)}.wav", voice=voice))
                    voiced = np.flatnonzero(np.abs(samples) > 0.01)
                    said[text] = samples[voiced[0] : voiced[-1] + 1] if len(voiced) else samples
        track = np.zeros(round(duration * sr), dtype=np.float32)
        spoken: list[SpokenSentence] = []
        for t0, t1, k in plan:
            t, j = t0 + 1.0, 0  # speech starts a second into each slide
            sentences = TOPICS[k][2]
            while True:
                text = sentences[j % len(sentences)]
                samples = said[text]
                if t + len(samples) / sr > t1 - 0.5:
                    break
                at = round(t * sr)
                track[at : at + len(samples)] += samples
                spoken.append(SpokenSentence(at / sr, (at + len(samples)) / sr, text))
                t += len(samples) / sr + pause_s
                j += 1
        wav = work / "speech.wav"
        _write_wav(wav, track, sr)
        w, h = size
        filters = []
        for t0, t1, k in plan:
            title, colour, _ = TOPICS[k]
            on = f"enable='between(t,{t0:.3f},{t1 - 0.001:.3f})'"
            filters.append(f"drawbox=x=0:y=0:w=iw:h=ih:color={colour}:t=fill:{on}")
            filters.append(
                f"drawtext=fontfile={FONT}:text='{_esc(title)}':x=(w-text_w)/2:y=(h-text_h)/2"
                f":fontsize={max(16, h // 8)}:fontcolor=white:{on}"
            )
        if clock:
            filters.append(clock_filter(h))
        script = work / "filters.txt"
        script.write_text(",".join(filters))
        _ffmpeg(
            "-f", "lavfi", "-i", f"color=c=black:size={w}x{h}:rate={fps}:duration={duration}",
            "-i", str(wav), "-filter_script:v", str(script), "-t", f"{duration}",
            "-c:v", "libx264", "-preset", "ultrafast", "-tune", "stillimage", "-pix_fmt", "yuv420p",
            "-g", str(fps * 10), "-c:a", "aac", "-b:a", "48k", "-ar", "16000", "-ac", "1", str(path),
        )  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)
    scenes = [(t0, t1, TOPICS[k][0]) for t0, t1, k in plan]
    return SynthVideo(
        path,
        duration,
        size,
        fps,
        sentences=spoken,
        scenes=scenes,
        has_audio=True,
        extra={"boundaries": [t0 for t0, _t1, _k in plan[1:]]},
    )
