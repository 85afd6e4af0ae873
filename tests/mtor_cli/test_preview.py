"""Terminal image preview: half blocks everywhere, kitty/iTerm2 inline images where supported."""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path

import pytest
from PIL import Image
from rich.console import Console

from mtor_cli.preview import detect_protocol, halfblock_text, iterm_escape, kitty_escape, preview


def _two_tone(tmp_path: Path) -> Path:
    """Top half red, bottom half blue, 40x20."""
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    img.paste((0, 0, 255), (0, 10, 40, 20))
    path = tmp_path / "two-tone.png"
    img.save(path)
    return path


def test_halfblocks_keep_the_aspect_ratio_and_the_colours(tmp_path: Path) -> None:
    text = halfblock_text(_two_tone(tmp_path), columns=20)
    lines = text.plain.split("\n")
    # 40x20 at 20 columns -> 20x10 pixels -> 5 rows of two pixels each.
    assert len(lines) == 5 and all(line == "▀" * 20 for line in lines)
    console = Console(file=io.StringIO(), force_terminal=True, color_system="truecolor", width=80)
    console.print(text)
    out = console.file.getvalue()
    assert "38;2;255;0;0" in out  # red foreground (top pixels)
    assert "48;2;0;0;255" in out  # blue background (bottom pixels)


def test_preview_draws_half_blocks_on_a_plain_terminal(tmp_path: Path) -> None:
    console = Console(file=io.StringIO(), force_terminal=True, color_system="truecolor", width=80)
    preview(_two_tone(tmp_path), columns=10, console=console, protocol="blocks")
    assert console.file.getvalue().count("▀") == 10 * 3


@pytest.mark.parametrize(
    ("env", "protocol"),
    [
        ({"TERM": "xterm-kitty"}, "kitty"),
        ({"KITTY_WINDOW_ID": "1", "TERM": "xterm-256color"}, "kitty"),
        ({"TERM_PROGRAM": "iTerm.app"}, "iterm"),
        ({"TERM_PROGRAM": "WezTerm"}, "iterm"),
        ({"TERM": "xterm-256color"}, "blocks"),
        ({}, "blocks"),
    ],
)
def test_protocol_detection(env: dict[str, str], protocol: str) -> None:
    assert detect_protocol(env) == protocol


def test_kitty_escape_carries_the_png_in_chunks() -> None:
    img = Image.frombytes("RGB", (64, 64), os.urandom(64 * 64 * 3))  # incompressible: several chunks
    seq = kitty_escape(img, 30)
    chunks = seq.strip().split("\x1b\\")[:-1]
    assert chunks[0].startswith("\x1b_Ga=T,f=100,c=30,m=1;")
    assert len(chunks) > 2 and chunks[-1].startswith("\x1b_Gm=0;")
    assert all(c.startswith("\x1b_Gm=1;") for c in chunks[1:-1])
    payload = "".join(c.split(";", 1)[1] for c in chunks)
    assert Image.open(io.BytesIO(base64.b64decode(payload))).size == (64, 64)


def test_iterm_escape_is_one_inline_file() -> None:
    seq = iterm_escape(Image.new("RGB", (8, 8), (1, 2, 3)), 12)
    assert seq.startswith("\x1b]1337;File=inline=1;size=") and ";width=12;" in seq and seq.endswith("\a\n")
    data = seq.split(":", 1)[1].rstrip("\a\n")
    assert Image.open(io.BytesIO(base64.b64decode(data))).getpixel((0, 0)) == (1, 2, 3)


def test_preview_writes_the_detected_protocol_to_the_stream(tmp_path: Path) -> None:
    out = io.StringIO()
    preview(_two_tone(tmp_path), columns=16, stream=out, protocol="kitty")
    assert out.getvalue().startswith("\x1b_Ga=T,f=100,c=16")
