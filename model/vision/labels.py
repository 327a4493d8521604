"""Label names of the visual taggers and the words people use for them.

- COCO: the 80 object classes of the detector, by the 90-id scheme the TensorFlow model zoo uses
  (`data/coco_labels.txt`).
- ImageNet-1k: the 1000 classes of the classifier, each with its WordNet synonyms
  (`data/imagenet_labels.txt`, one class a line, names comma-separated). A tag is named by the first one.
- `SYNONYMS`: a small table from everyday words to the labels they mean ("bike" -> bicycle, mountain bike;
  "kitty" -> cat and the ImageNet cats; "mug" -> cup, coffee mug).

`labels_named(text)` says which labels a question names: search uses it to find "when does the bike appear".
Pure and cheap: no model is loaded here.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")

# ImageNet index ranges of a few families (WordNet order keeps them together).
_IMAGENET_DOGS = range(151, 269)
_IMAGENET_CATS = range(281, 286)
_IMAGENET_ANIMALS = range(0, 398)
_COCO_ANIMALS = ("bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe")

# Everyday word -> labels (COCO names, ImageNet first names, or "@dogs"/"@cats"/"@animals" for a family).
SYNONYMS: dict[str, tuple[str, ...]] = {
    "bike": ("bicycle", "mountain bike", "bicycle-built-for-two"),
    "bicycle": ("bicycle", "mountain bike", "bicycle-built-for-two"),
    "cyclist": ("bicycle", "mountain bike"),
    "motorbike": ("motorcycle", "moped", "motor scooter"),
    "motorcycle": ("motorcycle", "moped", "motor scooter"),
    "scooter": ("moped", "motor scooter", "motorcycle"),
    "cat": ("cat", "@cats"),
    "kitty": ("cat", "@cats"),
    "kitten": ("cat", "@cats"),
    "dog": ("dog", "@dogs"),
    "puppy": ("dog", "@dogs"),
    "animal": ("@animals",),
    "pet": ("cat", "dog", "@cats", "@dogs"),
    "mug": ("cup", "coffee mug"),
    "coffee mug": ("coffee mug", "cup"),
    "cup": ("cup", "coffee mug", "espresso"),
    "coffee": ("cup", "coffee mug", "espresso"),
    "espresso": ("espresso", "cup", "coffee mug"),
    "table": ("dining table", "desk"),
    "desk": ("desk", "dining table"),
    "person": ("person",),
    "people": ("person",),
    "man": ("person",),
    "woman": ("person",),
    "men": ("person",),
    "women": ("person",),
    "guy": ("person",),
    "boy": ("person",),
    "girl": ("person",),
    "child": ("person",),
    "kid": ("person",),
    "astronaut": ("person",),
    "car": ("car", "sports car", "convertible", "cab", "minivan", "jeep", "limousine", "beach wagon", "racer"),
    "taxi": ("cab", "car"),
    "cab": ("cab", "car"),
    "rabbit": ("hare", "wood rabbit", "Angora"),
    "bunny": ("hare", "wood rabbit", "Angora"),
    "rocket": ("missile", "projectile", "space shuttle"),
    "tv": ("tv", "television", "monitor"),
    "television": ("tv", "television", "monitor"),
    "phone": ("cell phone", "cellular telephone", "dial telephone"),
    "smartphone": ("cell phone", "cellular telephone"),
    "mobile": ("cell phone", "cellular telephone"),
    "sofa": ("couch", "studio couch"),
    "couch": ("couch", "studio couch"),
    "plant": ("potted plant", "pot"),
    "computer": ("laptop", "notebook", "desktop computer"),
    "laptop": ("laptop", "notebook"),
    "plane": ("airplane", "airliner", "warplane"),
    "aeroplane": ("airplane", "airliner", "warplane"),
    "airplane": ("airplane", "airliner", "warplane"),
    "ship": ("boat", "container ship", "liner", "fireboat"),
    "boat": ("boat", "canoe", "speedboat", "fireboat", "lifeboat", "yawl"),
    "truck": ("truck", "pickup", "trailer truck", "fire engine", "garbage truck", "tow truck"),
    "bus": ("bus", "school bus", "trolleybus", "minibus"),
    "train": ("train", "passenger car", "electric locomotive", "steam locomotive", "bullet train", "streetcar"),
    "tram": ("streetcar", "train"),
    "ball": ("sports ball", "soccer ball", "tennis ball", "basketball", "volleyball", "golf ball"),
    "donut": ("donut",),
    "doughnut": ("donut",),
}

# ImageNet names that questions use in another sense ("what is on screen?" is not about a CRT screen).
NOT_LABELS = frozenset(
    ["screen", "web site", "menu", "envelope", "jersey", "switch", "stage", "tank", "bow", "drake", "chain",
     "pole", "nail", "hook", "pick", "plane", "iron", "bubble", "whistle", "stole", "suit", "rule", "scale",
     "wing", "mask", "lighter", "binder", "carton", "tray", "plate", "face powder", "maillot", "swab"]
)  # fmt: skip


def norm(word: str) -> str:
    """A token as search compares it: lower case, a light plural strip ("bikes" ~ "bike", not "glass")."""
    w = word.lower()
    if len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
        w = w[:-1]
    return w


def tokens(text: str) -> tuple[str, ...]:
    return tuple(norm(w) for w in _TOKEN.findall(text.lower()))


@functools.cache
def coco_labels() -> dict[int, str]:
    """Detector class id (1..90, 80 used) -> COCO name."""
    out: dict[int, str] = {}
    for line in (DATA / "coco_labels.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            idx, name = line.split(" ", 1)
            out[int(idx)] = name.strip()
    return out


@functools.cache
def imagenet_names() -> tuple[tuple[str, ...], ...]:
    """Classifier index (0..999) -> the class's names, first one first."""
    lines = (DATA / "imagenet_labels.txt").read_text().splitlines()
    names = tuple(tuple(n.strip() for n in line.split(",") if n.strip()) for line in lines if line.strip())
    if len(names) != 1000:
        raise ValueError(f"{DATA / 'imagenet_labels.txt'} has {len(names)} classes, not 1000")
    return names


def imagenet_label(index: int) -> str:
    """The tag an ImageNet class gives (its first name)."""
    return imagenet_names()[index][0]


def _family(name: str) -> tuple[str, ...]:
    labels = imagenet_names()
    if name == "@dogs":
        return tuple(labels[i][0] for i in _IMAGENET_DOGS)
    if name == "@cats":
        return tuple(labels[i][0] for i in _IMAGENET_CATS)
    if name == "@animals":
        return _COCO_ANIMALS + tuple(labels[i][0] for i in _IMAGENET_ANIMALS)
    return (name,)


@functools.cache
def _lexicon() -> dict[tuple[str, ...], frozenset[str]]:
    """Phrase (normalised tokens) -> the labels it names: every label name, every ImageNet synonym, SYNONYMS."""
    lex: dict[tuple[str, ...], set[str]] = {}

    def add(phrase: str, labels: tuple[str, ...]) -> None:
        key = tokens(phrase)
        if key:
            lex.setdefault(key, set()).update(labels)

    for names in imagenet_names():
        for n in names:
            if n.lower() not in NOT_LABELS:
                add(n, (names[0],))
    for name in coco_labels().values():
        add(name, (name,))
    for word, targets in SYNONYMS.items():  # the table decides what its words mean
        lex[tokens(word)] = {label for t in targets for label in _family(t)}
    return {k: frozenset(v) for k, v in lex.items()}


@functools.cache
def labels_named(text: str) -> dict[str, frozenset[str]]:
    """The things a question names, each with the labels that show it: {"bike": {"bicycle", "mountain bike"...}}.

    Longest phrases first ("teddy bear" is not also "bear"); a word inside a matched phrase is not matched again.
    """
    toks = tokens(text)
    lex = _lexicon()
    longest = max(len(k) for k in lex)
    found: dict[str, frozenset[str]] = {}
    used = [False] * len(toks)
    for n in range(min(longest, len(toks)), 0, -1):
        for i in range(len(toks) - n + 1):
            if any(used[i : i + n]):
                continue
            labels = lex.get(toks[i : i + n])
            if labels:
                found[" ".join(toks[i : i + n])] = labels
                for j in range(i, i + n):
                    used[j] = True
    return found


def label_words(label: str) -> frozenset[str]:
    """Every name of a tag label, for search text ("tabby" -> tabby, tabby cat)."""
    out = {label}
    for names in imagenet_names():
        if names[0] == label:
            out.update(names)
    return frozenset(out)
