"""The fingerprint of the sources the shipped lab extension (nbflow/labextension) is built from.

`bash scripts/build_labextension.sh` writes it next to the build (build_source.json); a test
recomputes it, so a change to the front-end's sources without a rebuild fails CI. The build
itself needs Node; the check does not.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
STAMP = REPO / "nbflow" / "labextension" / "build_source.json"
#: what the build reads: the extension's package, its TypeScript and styles, and the dashboard
#: modules it bundles (src/dashboard.ts imports them). Tests (*.test.ts) are not part of the build.
PATTERNS = ("jupyter_extension/package.json", "jupyter_extension/package-lock.json",
            "jupyter_extension/tsconfig.json", "jupyter_extension/install.json", "jupyter_extension/src/*.ts",
            "jupyter_extension/style/*", "nbflow/server/static/js/params.js", "nbflow/server/static/js/dom.js")


def source_files() -> list[Path]:
    files = {p for pattern in PATTERNS for p in REPO.glob(pattern) if p.is_file() and not p.name.endswith(".test.ts")}
    return sorted(files, key=lambda p: p.relative_to(REPO).as_posix())


def fingerprint() -> dict[str, str]:
    """relative path -> sha256 of its bytes (line endings as committed)."""
    return {p.relative_to(REPO).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in source_files()}


def main() -> None:
    STAMP.write_text(json.dumps({"sources": fingerprint()}, indent=1, sort_keys=True) + "\n")
    print(f"wrote {STAMP.relative_to(REPO)}", file=sys.stderr)


if __name__ == "__main__":
    main()
