"""Rewrite the generated tables of the documents (configuration reference, indicators,
requirements) from the code: every ``<!-- generated: NAME (scripts/update_readme.py) -->``
block in the README and in ``docs/*.md``. ``--check`` exits 1 when one is out of date."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from dock.config import reference_markdown as dock_reference_markdown
from firmware_py.config import reference_markdown
from firmware_py.agent.signals import table_markdown
from requirements import table_markdown as requirements_markdown  # scripts/requirements.py

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"(<!-- generated: (?P<name>[^(]+?) \(scripts/update_readme.py\) -->\n)(.*?)(<!-- end generated -->)", re.S)
GENERATORS = {"config reference": lambda: reference_markdown() + "\n" + dock_reference_markdown(),
              "indicator table": table_markdown,
              "requirements table": requirements_markdown}


def render(text: str) -> str:
    return BLOCK.sub(lambda m: m.group(1) + GENERATORS[m.group("name")]().rstrip() + "\n" + m.group(4), text)


def main() -> int:
    stale = []
    for document in DOCUMENTS:
        text = document.read_text()
        new = render(text)
        if new != text:
            stale.append(document)
            if "--check" not in sys.argv:
                document.write_text(new)
    return 1 if stale and "--check" in sys.argv else 0


if __name__ == "__main__":
    sys.exit(main())
