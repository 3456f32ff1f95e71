"""Validates notebooks against the nbformat schema: validate_notebooks.py FILE...

Prints one line per invalid file and exits 1 if any is invalid; else prints "N valid".
"""
import sys

import nbformat


def main(paths):
    bad = 0
    for path in paths:
        try:
            nb = nbformat.read(path, as_version=nbformat.NO_CONVERT)
            nbformat.validate(nb)
        except Exception as e:  # noqa: BLE001 - report every kind of failure per file
            bad += 1
            print(f"{path}: {type(e).__name__}: {e}")
    if bad:
        return 1
    print(f"{len(paths)} valid")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
