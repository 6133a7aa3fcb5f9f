"""The live build table renders every status, coloured or not."""

from __future__ import annotations

from rich.console import Console

from trtpipe.commands.build import _BuildTable


def test_a_status_without_a_colour_renders_as_its_word():
    table = _BuildTable()
    table.update("gate", "passed", 1.5, "0123456789abcdef")
    table.update("compile", "cached", 0.0, "fedcba9876543210")
    console = Console(width=80, record=True, color_system=None)
    console.print(table)  # raised rich.errors.MarkupError on "[]passed[/]" before
    text = console.export_text()
    assert "passed" in text and "cached" in text and "0123456789ab" in text
