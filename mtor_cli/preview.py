"""Show an image in the terminal: a graphics protocol where the terminal has one, else half blocks.

kitty (and terminals speaking its graphics protocol) and iTerm2/WezTerm get the
real picture inline. Everywhere else each character cell draws two pixels with
the upper-half block "▀": the foreground colour is the upper pixel, the
background the lower one, so a 64-column preview shows 64x64 pixels.
:func:`halfblock_text` returns that as a ``rich.text.Text`` for the TUI.
"""

from __future__ import annotations

import base64
import io
import os
import sys
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL.Image import Image
    from rich.console import Console
    from rich.text import Text

DEFAULT_COLUMNS = 48
_KITTY_CHUNK = 4096


PROTOCOLS = ("kitty", "iterm", "blocks")


def detect_protocol(env: dict[str, str] | None = None) -> str:
    """"kitty", "iterm" or "blocks" (half blocks), from what the terminal says it is."""
    env = dict(os.environ) if env is None else env
    if env.get("KITTY_WINDOW_ID") or env.get("TERM") == "xterm-kitty" or env.get("TERM_PROGRAM") == "ghostty":
        return "kitty"
    if env.get("TERM_PROGRAM") in ("iTerm.app", "WezTerm"):
        return "iterm"
    return "blocks"


def _open(source: Path | Image) -> Image:
    from PIL import Image as PILImage

    if isinstance(source, Path):
        with PILImage.open(source) as img:
            return img.convert("RGB")
    return source.convert("RGB")


def halfblock_text(source: Path | Image, columns: int = DEFAULT_COLUMNS) -> Text:
    """The image as rows of "▀" cells, ``columns`` wide, aspect ratio kept."""
    from PIL import Image as PILImage
    from rich.style import Style
    from rich.text import Text

    img = _open(source)
    columns = max(1, min(columns, img.width))
    rows = max(2, round(img.height * columns / img.width))
    rows += rows % 2  # two pixels a cell, vertically
    small = img.resize((columns, rows), PILImage.Resampling.LANCZOS)
    px: Any = small.load()
    text = Text(no_wrap=True, overflow="crop")
    for y in range(0, rows, 2):
        for x in range(columns):
            top, bottom = px[x, y], px[x, y + 1]
            text.append("▀", Style(color=f"rgb{tuple(top)}", bgcolor=f"rgb{tuple(bottom)}"))
        if y + 2 < rows:
            text.append("\n")
    return text


def _png(img: Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def kitty_escape(img: Image, columns: int) -> str:
    """The kitty graphics protocol sequence that shows ``img`` ``columns`` cells wide."""
    data = base64.b64encode(_png(img)).decode()
    chunks = [data[i : i + _KITTY_CHUNK] for i in range(0, len(data), _KITTY_CHUNK)] or [""]
    parts = []
    for n, chunk in enumerate(chunks):
        more = 1 if n < len(chunks) - 1 else 0
        head = f"a=T,f=100,c={columns},m={more}" if n == 0 else f"m={more}"
        parts.append(f"\x1b_G{head};{chunk}\x1b\\")
    return "".join(parts) + "\n"


def iterm_escape(img: Image, columns: int) -> str:
    """The iTerm2 inline-image (OSC 1337) sequence that shows ``img`` ``columns`` cells wide."""
    png = _png(img)
    data = base64.b64encode(png).decode()
    return f"\x1b]1337;File=inline=1;size={len(png)};width={columns};preserveAspectRatio=1:{data}\a\n"


def preview(
    source: Path | Image,
    *,
    columns: int | None = None,
    console: Console | None = None,
    stream: IO[str] | None = None,
    protocol: str | None = None,
) -> None:
    """Draw ``source`` on the terminal; ``protocol`` (one of PROTOCOLS) defaults to the detected one."""
    img = _open(source)
    width = columns or min(DEFAULT_COLUMNS, max(8, (console.width if console else _terminal_columns()) - 2))
    protocol = protocol or detect_protocol()
    out = stream or sys.stdout
    if protocol == "kitty":
        out.write(kitty_escape(img, width))
        out.flush()
        return
    if protocol == "iterm":
        out.write(iterm_escape(img, width))
        out.flush()
        return
    if console is None:
        from rich.console import Console

        console = Console(file=out)  # rich picks the colour depth the terminal has
    console.print(halfblock_text(img, width))


def _terminal_columns() -> int:
    import shutil

    return shutil.get_terminal_size((80, 24)).columns
