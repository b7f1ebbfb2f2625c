"""Fetch one pinned archive into data/raw/<archive>/ (sha256-checked; a no-op when present)."""

from __future__ import annotations

from auxsel import archives
from stages import _common


def main() -> None:
    p = _common.parser(__doc__)
    p.add_argument("--archive", required=True, choices=sorted(archives.ARCHIVES))
    args = p.parse_args()
    out = _common.RAW / args.archive
    fetched = archives.fetch(args.archive, out)
    print(f"{args.archive}: {'fetched and verified' if fetched else 'present and verified'} in {out}")


if __name__ == "__main__":
    _common.run(main)
