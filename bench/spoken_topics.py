"""Spoken topics: does the classifier hear *what is said*? Acoustic vs transcript vs fused features.

    python bench/spoken_topics.py --whisper <faster-whisper folder> [--work /tmp/spoken-topics]

Builds a small spoken-topic set with espeak-ng (apt install espeak-ng): 16 short passages per topic, written for
this benchmark, each spoken by two of eight voice/speed combinations chosen independently of the topic. The
split is by passage (a passage's two renditions are on the same side): 8 passages per topic to train on, 8 to
test. Then it runs the real CLI (`audioclf train` + `audioclf evaluate`) for each feature set and prints the
held-out accuracy with its group-bootstrap 95 % CI.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

TOPICS: dict[str, list[str]] = {
    "travel": [
        "We took the night train to Vienna and arrived just as the station woke up.",
        "Pack light, keep your passport close and always carry a paper map.",
        "The ferry to the islands leaves twice a day in the summer season.",
        "Our hostel was cheap, clean and ten minutes from the old harbour.",
        "The flight was delayed, so we explored the airport and its little garden.",
        "Renting a car let us drive along the coast and stop at every village.",
        "The mountain trail climbs for three hours before the view opens up.",
        "Book the museum pass online and skip the long queue at the gate.",
        "We changed money at the border and bought bus tickets to the capital.",
        "The guesthouse owner recommended a hidden beach north of the town.",
        "Jet lag hit hard on the second day, so we slept until noon.",
        "Backpacking through the valleys, we met hikers from every continent.",
        "The tourist office gave us a free walking tour of the medieval quarter.",
        "Our cruise stopped at four ports, each with its own market and cathedral.",
        "Travel insurance paid for the missed connection and a hotel night.",
        "From the hotel balcony you can watch the fishing boats come home.",
    ],
    "food": [
        "Fry the onions slowly in butter until they turn soft and golden.",
        "This soup needs fresh tomatoes, garlic, basil and a pinch of salt.",
        "Knead the dough for ten minutes, then let it rise under a towel.",
        "The chef grilled the fish and served it with lemon and herbs.",
        "Whisk the eggs with sugar before folding in the melted chocolate.",
        "A good curry starts with toasted spices and a spoon of ginger paste.",
        "Slice the potatoes thinly and bake them with cream and cheese.",
        "Our favourite breakfast is pancakes with berries and maple syrup.",
        "Season the steak generously and let it rest before you cut it.",
        "Roast the vegetables with olive oil until the edges caramelise.",
        "The bakery sells warm bread, croissants and apple pastries each morning.",
        "Simmer the rice in stock and stir in parmesan at the very end.",
        "Marinate the chicken overnight in yogurt, lemon juice and paprika.",
        "This salad combines crisp lettuce, cucumber, feta and black olives.",
        "Taste the sauce and add a little honey if it is too sour.",
        "Serve the noodles hot with spring onions and a splash of soy sauce.",
    ],
    "art_music": [
        "The orchestra opened with a slow movement for strings and horn.",
        "She painted the portrait in oils, with thick layers of blue and ochre.",
        "The band's new album mixes jazz harmonies with folk melodies.",
        "In the gallery, the sculptures stand in a ring of soft light.",
        "He practises the piano sonata for two hours every evening.",
        "The choir sang in four parts, and the soprano line soared above.",
        "Watercolour rewards patience: let each wash dry before the next.",
        "The guitarist tuned down a step to give the song a darker tone.",
        "This exhibition shows the painter's sketches beside her finished canvases.",
        "The drummer kept a steady groove while the saxophone improvised.",
        "Impressionist artists tried to capture light as it changed by the hour.",
        "The opera's final aria left the audience silent for a moment.",
        "Our art class studied perspective by drawing the same street three times.",
        "The composer wrote the symphony during a long and lonely winter.",
        "A violin's sound depends on its wood, its varnish and its bow.",
        "The festival stage hosted rock bands, poets and a string quartet.",
    ],
    "history": [
        "The Roman empire built roads that connected provinces across Europe.",
        "In 1789 the French revolution overturned the old monarchy.",
        "Medieval castles were designed to withstand long sieges.",
        "The industrial revolution began in Britain with steam engines and mills.",
        "Ancient Egyptians built the pyramids as tombs for their pharaohs.",
        "The printing press spread new ideas quickly in the fifteenth century.",
        "After the war, the treaty redrew borders and created new nations.",
        "The Silk Road carried trade and knowledge between China and the Mediterranean.",
        "Historians study letters and diaries to understand ordinary lives.",
        "The Berlin wall fell in 1989 and the city was reunited.",
        "Viking sailors reached Greenland and the coast of North America.",
        "The Renaissance revived interest in classical Greek and Roman learning.",
        "Colonial empires expanded across Africa and Asia in the nineteenth century.",
        "The ancient Greeks held the first Olympic games at Olympia.",
        "The archive holds parliamentary records going back four centuries.",
        "Kings and emperors once ruled by claiming authority from the heavens.",
    ],
}
VOICES = [
    ("en-us", 150),
    ("en-gb", 170),
    ("en-gb-scotland", 140),
    ("en-029", 160),
    ("en-us+f3", 165),
    ("en-gb+f2", 145),
    ("en-gb-x-rp", 175),
    ("en-us+m3", 135),
]
N_TRAIN = 8


def synthesise(work: Path) -> Path:
    """Two renditions per passage as WAV; a manifest with split (by passage) and group (the passage)."""
    rows = []
    for t, (topic, passages) in enumerate(TOPICS.items()):
        for p, text in enumerate(passages):
            for r in range(2):
                voice, speed = VOICES[(3 * p + 5 * r + t) % len(VOICES)]
                wav = work / "audio" / f"{topic}_{p:02d}_{r}.wav"
                if not wav.exists():
                    wav.parent.mkdir(parents=True, exist_ok=True)
                    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(wav), text], check=True)
                split = "train" if p < N_TRAIN else "test"
                rows.append({"path": str(wav), "label": topic, "split": split, "group": f"{topic}-{p}"})
    manifest = work / "topics.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, ["path", "label", "split", "group"])
        writer.writeheader()
        writer.writerows(rows)
    return manifest


def run(work: Path, manifest: Path, name: str, args: list[str]) -> str:
    out = work / "models" / name
    cli = [sys.executable, "-m", "audioclf"]
    common = ["--cache-dir", str(work / "cache"), "--quiet"]
    started = time.perf_counter()
    subprocess.run(
        [*cli, "train", "--manifest", str(manifest), "--out", str(out), "--force", *args, *common],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    subprocess.run(
        [*cli, "evaluate", "--model", str(out), "--manifest", str(manifest), *common],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    rec = json.loads((out / "evaluation" / "report.json").read_text())["recording"]
    low, high = rec["accuracy_ci"]
    return (
        f"| {name} | {rec['accuracy']:.3f} ({low:.2f}–{high:.2f}) | {rec['macro_f1']:.3f} | {rec['n']} | "
        f"{time.perf_counter() - started:.0f} s |"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--whisper", required=True, help="a faster-whisper model folder (or size name)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/spoken-topics"))
    args = ap.parse_args()
    manifest = synthesise(args.work)
    w = f"whisper:{args.whisper}"
    runs = {
        "acoustic: builtin": ["--encoder", "builtin"],
        "acoustic: Whisper encoder": ["--encoder", w],
        "transcript (Whisper) → MiniLM": ["--encoder", "builtin", "--features", "transcript", "--transcriber", w],
        "transcript (Whisper) → TF-IDF": [
            "--encoder",
            "builtin",
            "--features",
            "transcript",
            "--transcriber",
            w,
            "--text-encoder",
            "tfidf",
        ],
        "fused: Whisper encoder + transcript": ["--encoder", w, "--features", "fused"],
    }
    with open(manifest, newline="", encoding="utf-8") as fh:
        splits = [row["split"] for row in csv.DictReader(fh)]
    n = {split: splits.count(split) for split in ("train", "test")}
    print(f"{len(TOPICS)} topics, {n['train']} training / {n['test']} test recordings (split by passage)\n")
    print("| features | test accuracy (95 % CI) | macro-F1 | n | train+evaluate |")
    print("|---|---|---|---|---|")
    for name, extra in runs.items():
        print(run(args.work, manifest, name, extra), flush=True)


if __name__ == "__main__":
    main()
