"""What a weather request asks: the place, the day, and what about the weather.

"what's the weather in Paris tomorrow" -> Paris, day 1, everything;
"will it rain in Oslo" -> Oslo, today, rain; "check the weather" -> no place
(the worker then uses the person's configured location). Pure regex, so the
same text always means the same thing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_NUMBERS = {"two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "ten": 10, "fourteen": 14}

# Topics, by the words that ask about them.
_TOPICS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("rain", re.compile(r"\b(?:rain\w*|umbrella|wet|showers?|drizzl\w*|pour\w*)\b", re.IGNORECASE)),
    ("snow", re.compile(r"\b(?:snow\w*|sleet|blizzard)\b", re.IGNORECASE)),
    ("wind", re.compile(r"\b(?:wind\w*|breez\w*|gust\w*|storm\w*)\b", re.IGNORECASE)),
    (
        "temperature",
        re.compile(r"\b(?:temperature|hot|cold|warm\w*|chilly|freezing|degrees|coat|jacket)\b", re.IGNORECASE),
    ),
)

_DAY = (
    r"(?:the\s+)?day\s+after\s+tomorrow|tomorrow|today|tonight|right\s+now|now|at\s+the\s+moment|currently"
    r"|this\s+(?:morning|afternoon|evening)"
)
_WEEKDAY = r"(?:(?:on|this|next|coming)\s+)?(?P<weekday>" + "|".join(WEEKDAYS) + r")"
_SPAN = (
    r"(?:(?:for|over|in)\s+)?(?:the\s+)?(?:next|coming)\s+(?P<span>\d{1,2}|"
    + "|".join(_NUMBERS)
    + r")\s+days|(?:this|the|next)\s+week(?:end)?|(?:for\s+)?the\s+weekend|this\s+weekend"
)
_TIME_OF_DAY = r"(?:in\s+the\s+)?(?:morning|afternoon|evening|night)"
_WHEN = re.compile(rf"\b(?:{_SPAN}|{_WEEKDAY}|{_DAY})\b(?:\s+{_TIME_OF_DAY}\b)?", re.IGNORECASE)
_STRAY_TIME = re.compile(rf"\b{_TIME_OF_DAY}\b", re.IGNORECASE)

_PREPOSITION = re.compile(r"\b(?:in|for|at|near|around|over)\s+", re.IGNORECASE)
_BEFORE_WEATHER = re.compile(r"^(?P<place>.+?)\s+(?:weather|forecast)\b", re.IGNORECASE)
_AFTER_WEATHER = re.compile(r"\b(?:weather|forecast)\s+(?P<place>[A-Z][^?!]*)$")
_TRAILING = re.compile(r"(?:[\s,;:.!?]+|\s+(?:please|like|then|be|look|looking|going\s+to\s+be))+$", re.IGNORECASE)
# Words that never start a place name: what remains of the question itself.
_NOT_A_PLACE = frozenset(
    """a an the it is be what what's whats how how's will would should do does did can could i i'm my
    me we our you your check tell give show get weather forecast temperature going any there this that
    today tomorrow tonight now here outside home in for at near around over out""".split()
)
# Places that mean "where I am": the configured location.
_HERE = re.compile(
    r"^(?:here|outside|out\s+there|home|at\s+home|my\s+(?:area|city|town|place|location|neighbou?rhood)"
    r"|where\s+i\s+am|this\s+area|the\s+area|town|the\s+city|my\s+house)$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class WeatherRequest:
    place: str | None  # None: the configured location
    day: int | None = None  # days from today (0 today); None with `weekday` or `span`
    weekday: int | None = None  # 0 Monday .. 6 Sunday: the next such day, today included
    span: int = 1  # how many days, from `day` (a "next three days" request)
    topic: str = "general"  # general, rain, snow, wind or temperature
    now: bool = False  # asks about the current conditions only


def parse_request(text: str) -> WeatherRequest:
    """The place, the day(s) and the topic of a spoken or typed weather request."""
    text = " ".join(text.split())
    day: int | None = None
    weekday: int | None = None
    span = 1
    now = False
    when = _WHEN.search(text)
    if when is not None:
        phrase = when.group(0).lower()
        if when.group("span"):
            raw = when.group("span").lower()
            span = int(raw) if raw.isdigit() else _NUMBERS[raw]
            day = 0
        elif when.group("weekday"):
            weekday = WEEKDAYS.index(when.group("weekday").lower())
        elif "weekend" in phrase:
            weekday, span = 5, 2
        elif "week" in phrase:
            day, span = 0, 7
        elif "after tomorrow" in phrase:
            day = 2
        elif "tomorrow" in phrase:
            day = 1
        else:
            day = 0
            now = phrase in ("now", "right now", "at the moment", "currently")
        text = (text[: when.start()] + " " + text[when.end() :]).strip()
    text = " ".join(_STRAY_TIME.sub(" ", text).split())
    topic = next((name for name, pattern in _TOPICS if pattern.search(text)), "general")
    return WeatherRequest(_place(text), day, weekday, max(1, span), topic, now)


def _place(text: str) -> str | None:
    for match in _PREPOSITION.finditer(text):
        candidate = _clean(text[match.end() :])
        if candidate and candidate.split()[0].lower() not in _NOT_A_PLACE:
            return candidate
        if candidate is None and _HERE.match(_TRAILING.sub("", text[match.end() :].strip())):
            return None
    for pattern in (_BEFORE_WEATHER, _AFTER_WEATHER):
        found = pattern.search(text)
        if found is not None:
            candidate = _clean(found.group("place"))
            if candidate and not any(word in _NOT_A_PLACE for word in candidate.lower().replace("'s", "").split()):
                return candidate
    return None


def _clean(candidate: str) -> str | None:
    """The place name alone: no trailing filler, punctuation or possessive."""
    candidate = _TRAILING.sub("", candidate.strip()).strip(" ,")
    if candidate.lower().endswith("'s"):
        candidate = candidate[:-2]
    if not candidate or _HERE.match(candidate) or not any(ch.isalpha() for ch in candidate):
        return None
    return candidate
