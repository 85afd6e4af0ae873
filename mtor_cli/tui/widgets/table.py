"""RowTable: a keyed table that stays fast with thousands of rows changing often.

Textual's DataTable re-renders every visible cell after any single cell update
(its render caches are keyed by a table-wide update counter), which costs
hundreds of milliseconds a frame with 1,000 workers changing load ten times a
second. Here each row is rendered to a Strip once per change of its content
and cached; a frame only crops cached strips and paints the cursor.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import ClassVar

from rich.style import Style
from rich.text import Text
from textual.binding import Binding, BindingType
from textual.geometry import Region, Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

Cell = str | Text
Column = tuple[str, str, int]  # key, label, width


class RowTable(ScrollView, can_focus=True):
    """Rows keyed by id, a fixed header line, a row cursor, zebra stripes."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "row-table--header",
        "row-table--even-row",
        "row-table--cursor",
    }
    DEFAULT_CSS = """
    RowTable {
        background: $surface;
        color: $foreground;
        & > .row-table--header { text-style: bold; background: $panel; color: $foreground; }
        & > .row-table--even-row { background: $surface-lighten-1 50%; }
        &:dark > .row-table--even-row { background: $surface-darken-1 40%; }
        & > .row-table--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
        }
        &:focus > .row-table--cursor {
            background: $block-cursor-background;
            color: $block-cursor-foreground;
            text-style: $block-cursor-text-style;
        }
    }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "cursor(-1)", "Up", show=False),
        Binding("down", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "cursor_to(0)", "First", show=False),
        Binding("end", "cursor_to(-1)", "Last", show=False),
    ]

    def __init__(self, columns: Sequence[Column], **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.columns = list(columns)
        self._width = sum(width + 2 for _, _, width in self.columns)
        self._cells: dict[str, tuple[Cell, ...]] = {}
        self._order: list[str] = []
        self._strips: dict[str, Strip] = {}  # a row's cells, rendered once per change
        self._versions: dict[str, int] = {}
        self._painted: dict[tuple[str, int, str, int, int], Strip] = {}  # ...cropped and styled for a frame
        self._header: Strip | None = None
        self._changed: set[str] = set()  # rows put since the last settle
        self._reordered = False  # rows added or removed since the last settle
        self.cursor_row = 0

    # --- data ------------------------------------------------------------------

    @property
    def row_count(self) -> int:
        return len(self._order)

    @property
    def row_keys(self) -> list[str]:
        return list(self._order)

    def put(self, key: str, cells: tuple[Cell, ...]) -> None:
        """Add or change a row (new rows go last); an unchanged row costs nothing."""
        old = self._cells.get(key)
        if old == cells:
            return
        if old is None:
            self._order.append(key)
            self._reordered = True
        self._changed.add(key)
        self._cells[key] = cells
        self._strips.pop(key, None)
        self._versions[key] = self._versions.get(key, 0) + 1

    def remove_rows(self, keys: Iterable[str]) -> None:
        """Remove rows in one pass, however many."""
        gone = {key for key in keys if key in self._cells}
        if not gone:
            return
        for key in gone:
            del self._cells[key]
            self._strips.pop(key, None)
            del self._versions[key]
        self._order = [key for key in self._order if key not in gone]
        self._reordered = True

    def settle(self) -> None:
        """Call after a batch of put/remove_rows: resizes the scroll area and repaints
        what changed (only the changed visible lines when no row moved)."""
        self.cursor_row = min(self.cursor_row, max(self.row_count - 1, 0))
        self.virtual_size = Size(self._width, self.row_count + 1)
        if self._reordered:
            self.refresh()
        else:
            top = self.scroll_offset.y
            for line, key in enumerate(self._order[top : top + self.size.height], start=1):
                if key in self._changed:
                    self.refresh(Region(0, line, self.size.width, 1))
        self._changed.clear()
        self._reordered = False

    # --- cursor ------------------------------------------------------------------

    def action_cursor(self, delta: int) -> None:
        self.move_cursor(self.cursor_row + delta)

    def action_page(self, direction: int) -> None:
        self.move_cursor(self.cursor_row + direction * max(self.size.height - 2, 1))

    def action_cursor_to(self, row: int) -> None:
        self.move_cursor(row if row >= 0 else self.row_count - 1)

    def move_cursor(self, row: int) -> None:
        self.cursor_row = max(0, min(row, self.row_count - 1))
        self.refresh()
        # After the refresh, so that a scroll area grown by this batch can reach the row.
        self.call_after_refresh(self._scroll_to_cursor)

    def _scroll_to_cursor(self) -> None:
        top = self.scroll_offset.y
        visible = max(self.size.height - 1, 1)  # the header takes one line
        if self.cursor_row < top:
            self.scroll_to(y=self.cursor_row, animate=False, immediate=True)
        elif self.cursor_row >= top + visible:
            self.scroll_to(y=self.cursor_row - visible + 1, animate=False, immediate=True)

    def follow_end(self) -> None:
        """Scroll to the last row (and move the cursor there)."""
        self.move_cursor(self.row_count - 1)

    # --- rendering ---------------------------------------------------------------

    def _render_cells(self, cells: Sequence[Cell]) -> Strip:
        text = Text(no_wrap=True, overflow="crop", end="")
        for (_, _, width), cell in zip(self.columns, cells, strict=False):
            piece = cell.copy() if isinstance(cell, Text) else Text(str(cell))
            piece.truncate(width, overflow="ellipsis", pad=True)
            text.append(" ")
            text.append_text(piece)
            text.append(" ")
        return Strip(text.render(self.app.console), text.cell_len)

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._painted.clear()  # the theme changed

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.size.width
        if y == 0:
            if self._header is None:
                labels = [label for _, label, _ in self.columns]
                self._header = self._render_cells(labels)
            style = self.get_component_rich_style("row-table--header")
            return self._header.crop_extend(scroll_x, scroll_x + width, style).apply_style(style)
        index = y - 1 + scroll_y
        if index >= len(self._order):
            return Strip.blank(width, self.rich_style)
        key = self._order[index]
        kind = "cursor" if index == self.cursor_row else "even-row" if index % 2 else ""
        painted_key = (key, self._versions[key], kind + ":focus" * self.has_focus, scroll_x, width)
        painted = self._painted.get(painted_key)
        if painted is None:
            strip = self._strips.get(key)
            if strip is None:
                strip = self._strips[key] = self._render_cells(self._cells[key])
            style = self.get_component_rich_style(f"row-table--{kind}") if kind else Style()
            base = self.rich_style + style
            painted = strip.crop_extend(scroll_x, scroll_x + width, base).apply_style(base)
            if len(self._painted) > 4 * max(self.row_count, 64):
                self._painted.clear()
            self._painted[painted_key] = painted
        return painted
