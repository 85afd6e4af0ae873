"""broker.routing.decide: rules, the only-chat shortcut, and the fallback to chat."""

from __future__ import annotations

from collections.abc import Sequence

from broker.routing import Routing, decide


class Fixed:
    """A recogniser that places every request on one intent (and counts its calls)."""

    def __init__(self, intent: str) -> None:
        self.intent = intent
        self.calls = 0

    def recognise(self, text: str, attachment_kinds: Sequence[str] = ()) -> Routing:
        self.calls += 1
        return Routing(self.intent, text, f"prototype:{self.intent}", 0.61, "some phrasing")


def test_say_hello_in_a_chat_only_realm_is_chat_with_a_note() -> None:
    routing = decide("Say hello", (), {"chat"})
    assert routing.intent == "chat" and routing.recognised == "tts"
    assert routing.prompt == "Say hello"  # the whole request, not just "hello"
    assert routing.note == "no worker serves tts in this realm, so chat answers instead"
    assert routing.explain() == "chat <- no worker serves tts in this realm; recognised: tts <- rule:tts:verb (score 1.00)"


def test_a_realm_with_a_tts_worker_speaks() -> None:
    routing = decide("Computer, say hello", (), {"chat", "tts"})
    assert (routing.intent, routing.prompt, routing.note) == ("tts", "hello", "")


def test_draw_stays_imagine_without_a_worker_so_the_person_sees_the_fix() -> None:
    routing = decide("draw me a cat", (), {"chat"})
    assert routing.intent == "imagine" and not routing.fell_back


def test_an_attachment_never_falls_back_to_chat() -> None:
    routing = decide("what is this", ("image",), {"chat"})
    assert routing.intent == "vision"


def test_the_recogniser_runs_only_where_more_than_chat_is_served() -> None:
    recogniser = Fixed("vision")
    only_chat = decide("tell me about otters", (), {"chat"}, recogniser)
    assert (only_chat.intent, only_chat.source, recogniser.calls) == ("chat", "only-chat", 0)
    assert only_chat.explain() == "chat <- the realm serves only chat, so nothing else was considered"
    served = decide("tell me about otters", (), {"chat", "vision"}, recogniser)
    assert (served.intent, recogniser.calls) == ("vision", 1)


def test_unknown_served_intents_never_fall_back() -> None:
    routing = decide("Say hello", (), None)
    assert routing.intent == "tts" and not routing.fell_back


def test_no_chat_worker_either_keeps_the_recognised_intent() -> None:
    routing = decide("Say hello", (), {"imagine"})
    assert routing.intent == "tts"
