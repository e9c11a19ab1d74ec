"""The labelled question pairs the semantic cache is measured on (``pairs.jsonl`` beside this
module; regenerate with ``python -m loopml.llm.cache.pairs``).

Each line is ``{"a": …, "b": …, "match": true|false, "kind": …}``:

- ``match: true`` (``kind: "paraphrase"``): the same question asked two ways — another
  phrasing, casing, punctuation — about the same product, city, date, number or person;
  a cache should answer one with the other's answer.
- ``match: false``: a near miss — the same question about a different product, city, date,
  number or person (``kind`` names what changed), or a different question about the same
  thing (``kind: "intent"``); serving one's answer for the other is a false hit.

Generated from templates with a fixed seed, so the file is the same on every machine.
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loopml.exceptions import InvalidInput

SHIPPED = Path(__file__).with_name("pairs.jsonl")
SEED = 20261201
PER_INTENT = 110  # pairs of each label per intent

PRODUCTS = [
    ("Pixel 8", "Pixel 9"),
    ("iPhone 14", "iPhone 15"),
    ("Galaxy S23", "Galaxy S24"),
    ("XPS 13", "XPS 15"),
    ("ThinkPad X1 Carbon", "ThinkPad T14"),
    ("MacBook Air M2", "MacBook Air M3"),
    ("Kindle Paperwhite", "Kindle Oasis"),
    ("AirPods Pro", "AirPods Max"),
    ("PlayStation 5", "Xbox Series X"),
    ("Apple Watch Series 8", "Apple Watch Series 9"),
    ("Surface Pro 9", "Surface Laptop 5"),
    ("Dyson V15", "Dyson V12"),
]
CITIES = [
    ("Paris", "Lyon"),
    ("Berlin", "Munich"),
    ("Madrid", "Barcelona"),
    ("Tokyo", "Osaka"),
    ("New York", "Boston"),
    ("London", "Manchester"),
    ("Rome", "Milan"),
    ("Sydney", "Melbourne"),
    ("Toronto", "Vancouver"),
    ("Amsterdam", "Rotterdam"),
]
MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
PEOPLE = [
    ("Marie Curie", "Pierre Curie"),
    ("Ada Lovelace", "Charles Babbage"),
    ("Alan Turing", "John von Neumann"),
    ("Grace Hopper", "Margaret Hamilton"),
    ("Isaac Newton", "Gottfried Leibniz"),
    ("Nikola Tesla", "Thomas Edison"),
    ("Rosalind Franklin", "Francis Crick"),
    ("Albert Einstein", "Niels Bohr"),
]
UNITS = [("miles", "kilometers"), ("pounds", "kilograms"), ("inches", "centimeters")]
CURRENCIES = [("USD", "EUR"), ("GBP", "JPY"), ("CHF", "USD"), ("EUR", "CAD")]
SERVICES = ["Gmail", "Netflix", "Spotify", "GitHub", "Slack", "Dropbox", "Zoom", "Amazon"]

#: intent -> (phrasings with {slots}, what a near miss changes)
INTENTS: dict[str, tuple[list[str], str]] = {
    "price": (
        [
            "How much does the {product} cost?",
            "What is the price of the {product}?",
            "{product} price?",
            "how much is the {product}",
            "What's the current price for a {product}?",
            "Can you tell me the cost of the {product}?",
        ],
        "product",
    ),
    "battery": (
        [
            "What is the battery life of the {product}?",
            "How long does the {product} battery last?",
            "{product} battery life",
            "how many hours does the battery of the {product} last",
            "Battery life on the {product}?",
        ],
        "product",
    ),
    "return": (
        [
            "How do I return my {product}?",
            "What is the return process for a {product}?",
            "Can I return the {product} I bought?",
            "how to return a {product}",
            "I want to send back my {product}, how?",
        ],
        "product",
    ),
    "weather": (
        [
            "What's the weather in {city} on {month} {day}?",
            "Weather forecast for {city}, {month} {day}",
            "Will it rain in {city} on {month} {day}?",
            "how is the weather going to be in {city} on {month} {day}",
            "{city} weather {month} {day}?",
        ],
        "city",
    ),
    "flight": (
        [
            "Find me a flight from {city} to {city2} on {month} {day}.",
            "Flights {city} to {city2}, {month} {day}?",
            "Are there flights from {city} to {city2} on {month} {day}?",
            "I need to fly from {city} to {city2} on {month} {day}",
            "Book a flight {city} -> {city2} for {month} {day}",
        ],
        "date",
    ),
    "population": (
        [
            "What is the population of {city}?",
            "How many people live in {city}?",
            "{city} population?",
            "how big is the population of {city}",
            "Population of {city}",
        ],
        "city",
    ),
    "convert": (
        [
            "Convert {number} {unit} to {unit2}.",
            "How many {unit2} is {number} {unit}?",
            "{number} {unit} in {unit2}?",
            "what is {number} {unit} in {unit2}",
            "Please convert {number} {unit} into {unit2}",
        ],
        "number",
    ),
    "exchange": (
        [
            "How much is {number} {currency} in {currency2}?",
            "Convert {number} {currency} to {currency2}",
            "{number} {currency} to {currency2}?",
            "what's {number} {currency} worth in {currency2}",
            "Exchange {number} {currency} into {currency2}",
        ],
        "number",
    ),
    "person": (
        [
            "Who was {person}?",
            "Tell me about {person}.",
            "Give me a short biography of {person}",
            "who is {person}",
            "What is {person} known for?",
        ],
        "person",
    ),
    "order": (
        [
            "Where is my order {order}?",
            "What's the status of order {order}?",
            "Track order {order}",
            "has my order {order} shipped yet",
            "Order {order} status?",
        ],
        "number",
    ),
    "password": (
        [
            "How do I reset my {service} password?",
            "I forgot my {service} password, how can I reset it?",
            "{service} password reset",
            "how can i change my password on {service}",
            "Reset password for {service}?",
        ],
        "service",
    ),
    "hours": (
        [
            "What time does the {city} store open on {weekday}?",
            "Opening hours of the {city} store on {weekday}?",
            "When is the {city} shop open on {weekday}",
            "{city} store hours {weekday}",
            "Is the {city} store open on {weekday} morning?",
        ],
        "weekday",
    ),
}
WEEKDAYS = [
    ("Monday", "Tuesday"),
    ("Saturday", "Sunday"),
    ("Wednesday", "Thursday"),
    ("Friday", "Saturday"),
]
#: Intents asked about the same thing: a question of one is a near miss of the other.
SIBLINGS = {
    "price": "battery",
    "battery": "return",
    "return": "price",
    "population": "weather",
    "convert": "exchange",
}


@dataclass(frozen=True)
class Pair:
    """Two questions and whether one's answer serves the other."""

    a: str
    b: str
    match: bool
    kind: str


def _slots(rng: random.Random) -> dict[str, Any]:
    product, product2 = rng.choice(PRODUCTS)
    city, city2 = rng.choice(CITIES)
    person, person2 = rng.choice(PEOPLE)
    unit, unit2 = rng.choice(UNITS)
    currency, currency2 = rng.choice(CURRENCIES)
    weekday, weekday2 = rng.choice(WEEKDAYS)
    if rng.random() < 0.5:
        product, product2 = product2, product
        city, city2 = city2, city
    return {
        "product": product,
        "product_other": product2,
        "city": city,
        "city2": city2,
        "city_other": rng.choice([c for pair in CITIES for c in pair if c not in (city, city2)]),
        "month": rng.choice(MONTHS),
        "day": rng.randint(1, 28),
        "person": person,
        "person_other": person2,
        "number": rng.choice([3, 5, 12, 20, 42, 100, 250, 1000, 1500]),
        "unit": unit,
        "unit2": unit2,
        "currency": currency,
        "currency2": currency2,
        "order": rng.randint(100000, 999999),
        "service": rng.choice(SERVICES),
        "weekday": weekday,
        "weekday_other": weekday2,
    }


def _vary(text: str, rng: random.Random) -> str:
    """Casing and punctuation a user might type instead."""
    roll = rng.random()
    if roll < 0.2:
        return text.lower()
    if roll < 0.35:
        return text.rstrip("?.!")
    if roll < 0.45:
        return text + " thanks"
    return text


def _near_miss(kind: str, slots: dict[str, Any], rng: random.Random) -> tuple[dict[str, Any], str]:
    """Slots with one fact changed, and what changed."""
    changed = dict(slots)
    if kind == "product":
        changed["product"] = slots["product_other"]
    elif kind == "city":
        changed["city"] = slots["city_other"]
    elif kind == "date":
        if rng.random() < 0.5:
            changed["day"] = slots["day"] % 28 + 1
        else:
            changed["month"] = MONTHS[(MONTHS.index(slots["month"]) + 1) % 12]
    elif kind == "number":
        changed["number"] = slots["number"] * rng.choice([2, 10]) + rng.choice([0, 1])
        changed["order"] = slots["order"] + rng.choice([1, 10, 100])
    elif kind == "person":
        changed["person"] = slots["person_other"]
    elif kind == "service":
        changed["service"] = rng.choice([s for s in SERVICES if s != slots["service"]])
    elif kind == "weekday":
        changed["weekday"] = slots["weekday_other"]
    return changed, kind


def generate(seed: int = SEED, per_intent: int = PER_INTENT) -> list[Pair]:
    """The labelled pairs (see the module): ``per_intent`` paraphrase pairs and as many
    near misses for each intent, shuffled with ``seed``."""
    rng = random.Random(seed)
    pairs: list[Pair] = []
    seen: set[tuple[str, str]] = set()

    def add(a: str, b: str, match: bool, kind: str) -> bool:
        if a == b or (a, b) in seen or (b, a) in seen:
            return False
        seen.add((a, b))
        pairs.append(Pair(a, b, match, kind))
        return True

    for intent, (phrasings, changes) in INTENTS.items():
        made = tries = 0
        while made < per_intent and tries < per_intent * 20:
            tries += 1
            slots = _slots(rng)
            first, second = rng.sample(phrasings, 2)
            a = _vary(first.format(**slots), rng)
            b = _vary(second.format(**slots), rng)
            made += add(a, b, True, "paraphrase")
        made = tries = 0
        while made < per_intent and tries < per_intent * 20:
            tries += 1
            slots = _slots(rng)
            sibling = SIBLINGS.get(intent)
            if sibling is not None and rng.random() < 0.25:
                a = INTENTS[intent][0][0].format(**slots)
                b = rng.choice(INTENTS[sibling][0]).format(**slots)
                made += add(_vary(a, rng), _vary(b, rng), False, "intent")
                continue
            changed, kind = _near_miss(changes, slots, rng)
            # Half the near misses keep the phrasing (the hardest case), half change it too.
            first = rng.choice(phrasings)
            second = first if rng.random() < 0.5 else rng.choice(phrasings)
            a = _vary(first.format(**slots), rng)
            b = _vary(second.format(**changed), rng)
            made += add(a, b, False, kind)
    rng.shuffle(pairs)
    return pairs


def load_pairs(path: str | Path | None = None) -> list[Pair]:
    """Pairs from a JSON-lines file (default: the shipped set). Each line needs ``a`` and
    ``b`` (texts) and ``match`` (true or false); ``kind`` is optional."""
    file = Path(path) if path is not None else SHIPPED
    if not file.is_file():
        raise InvalidInput(f"No pairs file at {file}: give a JSON-lines file of {{a, b, match}}.")
    pairs = []
    for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"{file}:{number}: not JSON ({exc.msg})") from None
        ok = (
            isinstance(item, dict)
            and isinstance(item.get("a"), str)
            and isinstance(item.get("b"), str)
            and isinstance(item.get("match"), bool)
        )
        if not ok:
            raise InvalidInput(
                f'{file}:{number}: a pair needs "a" and "b" (texts) and "match" (true or '
                f"false), got {line[:80]!r}"
            )
        pairs.append(Pair(item["a"], item["b"], item["match"], str(item.get("kind", ""))))
    if not pairs:
        raise InvalidInput(f"{file} holds no pairs.")
    return pairs


def write(pairs: Sequence[Pair], path: Path) -> None:
    """Write ``pairs`` as JSON lines."""
    lines: Iterator[str] = (
        json.dumps({"a": p.a, "b": p.b, "match": p.match, "kind": p.kind}, ensure_ascii=False)
        for p in pairs
    )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m loopml.llm.cache.pairs [PATH]``: (re)write the shipped pairs."""
    args = list(sys.argv[1:] if argv is None else argv)
    target = Path(args[0]) if args else SHIPPED
    pairs = generate()
    write(pairs, target)
    matches = sum(p.match for p in pairs)
    print(
        f"{len(pairs)} pairs ({matches} should match, {len(pairs) - matches} should not) -> {target}"
    )


if __name__ == "__main__":
    main()


__all__ = ["SHIPPED", "Pair", "generate", "load_pairs", "write"]
