"""latentrm.recipes.report: REPORT.md sections."""

from __future__ import annotations

from pathlib import Path


def test_reproduce_update_report_keeps_prose(tmp_path: Path) -> None:
    from latentrm.recipes import report as mod

    report = tmp_path / "REPORT.md"
    report.write_text("# Report\n\nProse before.\n\n<!-- BEGIN TABLE hh -->\nold\n"
                      "<!-- END TABLE hh -->\n\nProse after.\n")
    mod.update_report(report, {"hh": "| new | table |\n", "demo": "demo table\n"})
    text = report.read_text()
    assert "Prose before." in text and "Prose after." in text and "old" not in text
    assert "<!-- BEGIN TABLE hh -->\n| new | table |\n<!-- END TABLE hh -->" in text
    assert text.rstrip().endswith("<!-- BEGIN TABLE demo -->\ndemo table\n<!-- END TABLE demo -->")
    mod.update_report(report, {"demo": "v2\n"})  # idempotent: replaced, not appended again
    assert report.read_text().count("BEGIN TABLE demo") == 1 and "v2" in report.read_text()
