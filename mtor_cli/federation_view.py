"""Rich tables for ``mtor federation status`` and ``certify`` (and the TUI's peers pane)."""

from __future__ import annotations

from typing import Any

from mtor_cli import money


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def peer_rows(peers: list[Any]) -> list[tuple[str, ...]]:
    """One row per peer: name, link, health, pool, traffic, we owe, owed to us, telemetry."""
    rows: list[tuple[str, ...]] = []
    for p in peers:
        if not isinstance(p, dict):
            continue
        link = p.get("link") or {}
        health = link.get("health") or {}
        pool = link.get("pool") or {}
        traffic = link.get("traffic") or {}
        tele = link.get("telemetry") or {}
        credit = p.get("credit") or {}
        owe = credit.get("we_owe") or {}
        owed = credit.get("owed_to_us") or {}
        served = p.get("served") or {}
        state = str(link.get("state", "-"))
        if link.get("error") and state != "connected":
            state += f" ({link['error']})"
        latency = health.get("latency_ms")
        rows.append(
            (
                str(p.get("name", "?")),
                state + ("" if not served.get("connected") else " / serving it"),
                f"{health.get('state', '-')}" + (f" {latency:.2f} ms" if isinstance(latency, (int, float)) else ""),
                (", ".join(sorted(pool.get("intents") or {})) or "-") + f"  {pool.get('free', 0)}/{pool.get('slots', 0)}",
                f"{traffic.get('forwarded', 0)} / {traffic.get('results', 0)} / {traffic.get('failed', 0)}",
                f"{money.fmt(_int(owe.get('unsettled')))}" + (f" ({owe['disputed']} disputed)" if owe.get("disputed") else ""),
                f"{money.fmt(_int(owed.get('used')))} of {money.fmt(_int(owed.get('limit')))}",
                "-" if not tele else (
                    f"{tele.get('workers', 0)} workers, {tele.get('served', 0)} served, "
                    f"p50 {tele.get('median_latency_ms') or '-'} ms, err {float(tele.get('error_rate') or 0):.0%}"
                ),
            )
        )
    return rows


PEER_COLUMNS = ("peer", "link", "health", "pool (free/slots)", "fwd / ok / failed",
                "we owe $9000", "owed to us $9000", "its telemetry")


def status_table(peers: list[Any]) -> Any:
    from rich.table import Table

    table = Table(title="federation peers")
    rows = peer_rows(peers)
    if not rows:
        table.add_column("")
        table.add_row("no peers: pin one with `mtor federation peer add URL --name N --key ADDRESS`")
        return table
    for column in PEER_COLUMNS:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    return table


def certify_table(report: dict[str, Any]) -> Any:
    from rich.table import Table

    verdict = "PASSED" if report.get("passed") else "FAILED"
    table = Table(title=f"certify {report.get('realm', '?')}: {verdict}")
    for column in ("test", "result", "detail"):
        table.add_column(column)
    for test in report.get("tests", []):
        ok = test.get("passed")
        table.add_row(str(test.get("name")), "[green]pass[/green]" if ok else "[red]FAIL[/red]", str(test.get("detail", "")))
    return table
