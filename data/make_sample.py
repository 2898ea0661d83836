"""Generate `data/text2emoji_sample.jsonl`, a small offline stand-in for KomeijiForce/Text2Emoji.

Why: no dataset hub is reachable from CI or the demo machine, yet the pipeline, its tests and
`make demo` need rows in Text2Emoji's schema (`text`, `emoji`, `topic`). The rows are built from
a lexicon and sentence templates so that every emoji in a row stands for a word in its text:
that correspondence is what lets a tiny model learn a real text→emoji mapping in seconds.

Template syntax: `{slot}` draws a (phrase, emoji) pair from `LEXICON[slot]`; `word[🤔]` keeps
"word" in the text and emits 🤔. Emoji are emitted in the order their words appear.

Deterministic (fixed seed, no network, stable key order): `python data/make_sample.py`
regenerates the committed file byte-identically.
"""

from __future__ import annotations

import json
import random
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TypedDict

SEED = 20241128
ROWS_PER_TOPIC = 39
MIN_EMOJI, MAX_EMOJI = 2, 5
OUTPUT = Path(__file__).with_name("text2emoji_sample.jsonl")

# Multi-codepoint emoji are deliberate (ZWJ 👨‍🍳, flags 🇯🇵, skin tones 👍🏽, VS16 ❤️):
# they exercise tokenizer round-trips, byte-level BPE and emoji counting downstream.
LEXICON: dict[str, list[tuple[str, str]]] = {
    "food": [
        ("a banana", "🍌"),
        ("soup", "🥣"),
        ("pizza", "🍕"),
        ("sushi", "🍣"),
        ("ramen", "🍜"),
        ("an apple", "🍎"),
        ("tacos", "🌮"),
        ("pancakes", "🥞"),
        ("a burger", "🍔"),
        ("salad", "🥗"),
        ("ice cream", "🍦"),
        ("cake", "🍰"),
        ("spaghetti", "🍝"),
        ("a croissant", "🥐"),
        ("cheese", "🧀"),
        ("strawberries", "🍓"),
        ("grapes", "🍇"),
        ("a sandwich", "🥪"),
        ("popcorn", "🍿"),
        ("cookies", "🍪"),
    ],
    "drink": [
        ("coffee", "☕"),
        ("tea", "🍵"),
        ("juice", "🧃"),
        ("milk", "🥛"),
        ("a smoothie", "🥤"),
        ("wine", "🍷"),
    ],
    "meal": [
        ("breakfast", "🍳"),
        ("lunch", "🥪"),
        ("dinner", "🍽️"),
        ("brunch", "🥞"),
    ],
    "country": [
        ("Japan", "🇯🇵"),
        ("France", "🇫🇷"),
        ("Italy", "🇮🇹"),
        ("Brazil", "🇧🇷"),
        ("Canada", "🇨🇦"),
        ("Mexico", "🇲🇽"),
        ("Spain", "🇪🇸"),
        ("India", "🇮🇳"),
    ],
    "vehicle": [
        ("plane", "✈️"),
        ("train", "🚆"),
        ("bus", "🚌"),
        ("car", "🚗"),
        ("ferry", "⛴️"),
        ("bike", "🚲"),
    ],
    "place": [
        ("the beach", "🏖️"),
        ("the mountains", "⛰️"),
        ("the city", "🏙️"),
        ("a castle", "🏰"),
        ("the desert", "🏜️"),
        ("a campsite", "🏕️"),
    ],
    "sport": [
        ("soccer", "⚽"),
        ("basketball", "🏀"),
        ("tennis", "🎾"),
        ("baseball", "⚾"),
        ("volleyball", "🏐"),
        ("golf", "⛳"),
        ("rugby", "🏉"),
    ],
    "exercise": [
        ("went running", "🏃‍♀️"),
        ("went swimming", "🏊‍♂️"),
        ("lifted weights", "🏋️"),
        ("went cycling", "🚴"),
        ("did yoga", "🧘"),
        ("went climbing", "🧗"),
    ],
    "weather": [
        ("sunny", "☀️"),
        ("rainy", "🌧️"),
        ("snowy", "❄️"),
        ("stormy", "⛈️"),
        ("windy", "🌬️"),
        ("foggy", "🌫️"),
        ("cloudy", "☁️"),
    ],
    "wear": [
        ("an umbrella", "☂️"),
        ("sunglasses", "🕶️"),
        ("a scarf", "🧣"),
        ("a coat", "🧥"),
        ("gloves", "🧤"),
        ("a cap", "🧢"),
    ],
    "instrument": [
        ("the guitar", "🎸"),
        ("the piano", "🎹"),
        ("the drums", "🥁"),
        ("the violin", "🎻"),
        ("the trumpet", "🎺"),
        ("the saxophone", "🎷"),
    ],
    "music": [
        ("a concert", "🎤"),
        ("a new song", "🎵"),
        ("my headphones", "🎧"),
        ("the radio", "📻"),
        ("a playlist", "🎶"),
    ],
    "job": [
        ("the chef", "👨‍🍳"),
        ("the doctor", "🧑‍⚕️"),
        ("the farmer", "🧑‍🌾"),
        ("the teacher", "🧑‍🏫"),
        ("the firefighter", "🧑‍🚒"),
        ("the mechanic", "🧑‍🔧"),
    ],
    "office": [
        ("a meeting", "📅"),
        ("an email", "📧"),
        ("a report", "📊"),
        ("a deadline", "⏰"),
        ("a phone call", "📞"),
        ("some paperwork", "📄"),
    ],
    "animal": [
        ("a dog", "🐶"),
        ("a cat", "🐱"),
        ("a black cat", "🐈‍⬛"),
        ("a polar bear", "🐻‍❄️"),
        ("a rabbit", "🐰"),
        ("a horse", "🐴"),
        ("a penguin", "🐧"),
        ("an elephant", "🐘"),
        ("a monkey", "🐒"),
        ("a turtle", "🐢"),
        ("a service dog", "🐕‍🦺"),
    ],
    "feeling": [
        ("happy", "😊"),
        ("sad", "😢"),
        ("angry", "😠"),
        ("tired", "😴"),
        ("excited", "🤩"),
        ("nervous", "😬"),
        ("relieved", "😮‍💨"),
        ("confused", "😕"),
    ],
    "holiday": [
        ("Christmas", "🎄"),
        ("Halloween", "🎃"),
        ("New Year", "🎆"),
        ("Easter", "🐣"),
        ("Valentine's Day", "💘"),
        ("Thanksgiving", "🦃"),
    ],
    "gift": [
        ("a present", "🎁"),
        ("balloons", "🎈"),
        ("candles", "🕯️"),
        ("fireworks", "🎇"),
        ("a card", "💌"),
    ],
    "device": [
        ("my laptop", "💻"),
        ("my phone", "📱"),
        ("my smartwatch", "⌚"),
        ("the printer", "🖨️"),
        ("a new keyboard", "⌨️"),
        ("my camera", "📷"),
        ("a game console", "🎮"),
    ],
}

# Per topic: sentence templates. Every row gets 2–5 emoji (checked in `make_row`).
TEMPLATES: dict[str, list[str]] = {
    "food": [
        "I ate {food} for {meal}, later I'm thinking[🤔] of having {food}!",
        "For {meal} I had {food} and {food}, yummy[😋]!",
        "Can't wait to eat {food} with {drink} tomorrow.",
        "My favorite {meal} is {food} with a cup of {drink}.",
        "We cooked {food} together and it was delicious[😋].",
        "Is {food} better than {food}? I'm not sure[🤔].",
        "{food} and {drink} make the perfect {meal}.",
        "I love[❤️] {food} so much!",
    ],
    "travel": [
        "Taking the {vehicle} to {country} next week[📅]!",
        "We flew to {country} and spent the day at {place}.",
        "Packing my suitcase[🧳] for a trip to {country}.",
        "The {vehicle} ride to {place} was beautiful.",
        "I took photos[📸] of {place} in {country}.",
        "Dreaming of {place} in {country} with {food}.",
        "Our {vehicle} to {country} was late again[😩].",
    ],
    "sports": [
        "We played {sport} after school and won[🏆]!",
        "I {exercise} this morning and feel strong[💪🏾].",
        "Watching {sport} on TV[📺] with {food}.",
        "Our {sport} team lost the final[😢].",
        "Today I {exercise} and then played {sport}.",
        "Great game of {sport}, thumbs up[👍🏽] to everyone!",
        "After I {exercise} I drank {drink}.",
    ],
    "weather": [
        "It's so {weather} today, don't forget {wear}.",
        "A {weather} morning[🌅] turned into a {weather} afternoon.",
        "The forecast says {weather} weather at {place}.",
        "I'm wearing {wear} because it is {weather}.",
        "{weather} days make me feel {feeling}.",
        "It was {weather} so we stayed home with {drink}.",
    ],
    "music": [
        "I'm learning to play {instrument} and it's fun[😄].",
        "Went to {music} last night and danced[💃] all night!",
        "Listening to {music} on {device} at the park[🌳].",
        "My sister plays {instrument} and I play {instrument}.",
        "That {music} made me feel {feeling}.",
        "Practicing {instrument} before {music}.",
        "I love[❤️] the sound of {instrument}.",
    ],
    "work": [
        "I have {office} at nine and {office} after lunch.",
        "{job} finished {office} before the deadline[⏰].",
        "Working late[🌙] on {office} with {drink}.",
        "{job} said hi and waved[👋🏻] at me.",
        "Another day, another {office}, I'm so {feeling}.",
        "Preparing {office} on {device} at the office[🏢].",
        "{job} cooked {food} for the whole team.",
    ],
    "animals": [
        "I saw {animal} and {animal} at the zoo[🦁]!",
        "{animal} is sleeping[💤] on the sofa.",
        "We adopted {animal} and we are so {feeling}.",
        "{animal} chased {animal} around the garden[🌳].",
        "Feeding {animal} with {food} at the farm[🚜].",
        "I love[❤️] {animal} so much!",
        "{animal} walked with me to {place}.",
    ],
    "feelings": [
        "I feel so {feeling} today, I need a hug[🤗].",
        "Feeling {feeling} but also {feeling} right now.",
        "I'm {feeling} because of {office}.",
        "Why am I so {feeling}? Maybe it's the {weather} weather.",
        "Laughing[😂] with friends makes me {feeling}.",
        "I'm so {feeling} that my heart[❤️] could burst.",
        "Crying[😭] because I'm {feeling}.",
    ],
    "holidays": [
        "Getting ready for {holiday} with {gift}!",
        "We celebrated {holiday} with {food} and {gift}.",
        "Happy {holiday} to everyone, party[🎉] time!",
        "My family loves[❤️] {holiday} and {gift}.",
        "For {holiday} we traveled to {country}.",
        "Wrapping {gift} for {holiday} tonight.",
        "{holiday} is my favorite holiday, I'm so {feeling}.",
    ],
    "tech": [
        "Coding[🧑‍💻] all night on {device}.",
        "{device} crashed again, I'm {feeling}.",
        "Just bought[🛍️] {device} and {device}!",
        "Charging {device} with a new battery[🔋].",
        "Fixing a bug[🐛] on {device} while drinking {drink}.",
        "I sent an email[📧] from {device}.",
        "The wifi[📶] is down so {device} is useless.",
    ],
}

# Hand-written rows around the codelab's smoke prompt ("I ate a banana for breakfast, later I'm
# thinking of having soup!") so its words are well represented; the prompt itself is left out
# so the demo answer shows generalisation, not recall.
ANCHOR_ROWS: list[tuple[str, str]] = [
    ("I had a banana for breakfast and soup for dinner.", "🍌🍳🥣🍽️"),
    ("Banana pancakes for breakfast, yummy!", "🍌🥞🍳😋"),
    ("Thinking of having soup for lunch today.", "🤔🥣🥪"),
    ("A banana and coffee is my usual breakfast.", "🍌☕🍳"),
    ("Hot soup on a snowy evening is the best.", "🥣❄️😋"),
    ("I'm thinking of a banana smoothie for breakfast.", "🤔🍌🥤🍳"),
    ("Later I'll make tomato soup, yummy!", "🍅🥣😋"),
    ("Breakfast was a banana, lunch was soup.", "🍳🍌🥪🥣"),
    ("The chef made soup and banana bread.", "👨‍🍳🥣🍌🍞"),
    ("I ate a banana for breakfast, later I'm thinking of having sushi!", "🍌🍳🤔🍣"),
]

_TOKEN = re.compile(r"\{(\w+)\}|\[([^\]]+)\]")


class Row(TypedDict):
    """One Text2Emoji row; key order matches the real dataset's columns."""

    text: str
    emoji: str
    topic: str


def render(template: str, rng: random.Random) -> tuple[str, str]:
    """Fill one template; returns (text, emoji) with emoji in the order of their words.

    Slots of the same kind within a template draw distinct phrases so "{food} and {food}"
    never reads "pizza and pizza".
    """
    used: dict[str, set[str]] = {}
    emoji_parts: list[str] = []

    def fill(match: re.Match[str]) -> str:
        slot, marker = match.group(1), match.group(2)
        if marker is not None:
            emoji_parts.append(marker)
            return ""
        taken = used.setdefault(slot, set())
        choices = [pair for pair in LEXICON[slot] if pair[0] not in taken]
        phrase, emo = rng.choice(choices)
        taken.add(phrase)
        emoji_parts.append(emo)
        return phrase

    text = _TOKEN.sub(fill, template)
    return text[:1].upper() + text[1:], "".join(emoji_parts)


def emoji_units(template: str) -> int:
    """How many emoji a template yields (one per slot or marker)."""
    return len(_TOKEN.findall(template))


def topic_rows(
    topic: str, rng: random.Random, seen: set[str], count: int = ROWS_PER_TOPIC
) -> Iterator[Row]:
    """Yield `count` rows with texts not in `seen` (rows must be unique), adding them to it.

    `seen` may start with texts to avoid: the demo's tiny base model is pre-trained on rows
    drawn this way with every text of the committed sample excluded (demo/tiny_model.py).
    """
    templates = TEMPLATES[topic]
    made = 0
    for attempt in range(count * 50):
        if made == count:
            return
        # Round-robin over templates (not over rows) so one exhausted template can't stall us.
        text, emo = render(templates[attempt % len(templates)], rng)
        if text in seen:
            continue
        seen.add(text)
        made += 1
        yield Row(text=text, emoji=emo, topic=topic)
    raise RuntimeError(f"topic {topic!r}: templates cannot produce {count} unique rows")


def make_rows(seed: int = SEED) -> list[Row]:
    """All rows, topics interleaved by a seeded shuffle so any prefix is varied."""
    for topic, templates in TEMPLATES.items():
        for template in templates:
            if not MIN_EMOJI <= emoji_units(template) <= MAX_EMOJI:
                raise ValueError(f"{topic}: {template!r} must yield {MIN_EMOJI}-{MAX_EMOJI} emoji")
    rng = random.Random(seed)
    seen: set[str] = set()
    rows = [Row(text=text, emoji=emo, topic="food") for text, emo in ANCHOR_ROWS]
    seen.update(row["text"] for row in rows)
    rows += [row for topic in TEMPLATES for row in topic_rows(topic, rng, seen)]
    rng.shuffle(rows)
    return rows


def write_jsonl(rows: list[Row], path: Path) -> None:
    """Write UTF-8 JSON lines with literal emoji (ensure_ascii=False) and '\\n' endings."""
    with path.open("w", encoding="utf-8", newline="\n") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def main(argv: list[str] | None = None) -> int:
    """`python data/make_sample.py [OUT]` — regenerate the sample (default: next to this file)."""
    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0]) if args else OUTPUT
    rows = make_rows()
    write_jsonl(rows, out)
    print(f"wrote {len(rows)} rows to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
