"""Rewrite the README's generated tables (configuration reference, indicators) from code."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from dock.config import reference_markdown as dock_reference_markdown
from firmware_py.config import reference_markdown
from firmware_py.agent.signals import table_markdown

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCK = re.compile(r"(<!-- generated: (?P<name>[^(]+?) \(scripts/update_readme.py\) -->\n)(.*?)(<!-- end generated -->)", re.S)
GENERATORS = {"config reference": lambda: reference_markdown() + "\n" + dock_reference_markdown(),
              "indicator table": table_markdown}


def render(text: str) -> str:
    return BLOCK.sub(lambda m: m.group(1) + GENERATORS[m.group("name")]().rstrip() + "\n" + m.group(4), text)


def main() -> int:
    text = README.read_text()
    new = render(text)
    if "--check" in sys.argv:
        return 0 if new == text else 1
    README.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
