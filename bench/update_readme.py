"""Copy generated bench tables into README.md and bench/README.md, so their numbers are the runs'
and never typed.

Each generated block is marked as

    <!-- bench:NAME.md -->
    ...replaced by bench/results/NAME.md...
    <!-- /bench -->

    python bench/update_readme.py           # rewrite the blocks
    python bench/update_readme.py --check   # exit 1 if a block differs from its file (tests run this)
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"(<!-- bench:(?P<name>[\w.-]+) -->\n)(?P<body>.*?)(<!-- /bench -->)", re.S)


def render(text: str, results: Path) -> str:
    def fill(m: re.Match) -> str:
        path = results / m.group("name")
        if not path.is_file():
            raise SystemExit(f"README block {m.group('name')!r}: {path} does not exist (run its bench first)")
        return m.group(1) + path.read_text().rstrip() + "\n" + m.group(4)

    return BLOCK.sub(fill, text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--readme", type=Path, nargs="+", default=[ROOT / "README.md", ROOT / "bench" / "README.md"])
    args = ap.parse_args()
    for readme in args.readme:
        text = readme.read_text()
        new = render(text, ROOT / "bench" / "results")
        if args.check and new != text:
            sys.exit(f"{readme.name}'s generated blocks differ from bench/results: run python bench/update_readme.py")
        if not args.check:
            readme.write_text(new)


if __name__ == "__main__":
    main()
