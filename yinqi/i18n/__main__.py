"""``python -m yinqi.i18n compile|check``: for whoever changes a message or a translation.

``compile`` writes each ``.mo`` from its ``.po`` (commit both); ``check`` lists what the
tests would refuse: messages without a translation, entries nothing asks for, changed
placeholders, a ``.mo`` behind its ``.po``. Exit 1 when there is something to list.
"""

from __future__ import annotations

import sys

from yinqi.i18n.catalogue import compile_all, problems


def main(argv: list[str]) -> int:
    if argv == ["compile"]:
        for path in compile_all():
            print(f"written: {path}")
        return 0
    if argv == ["check"]:
        found = problems()
        for line in found:
            print(line)
        return 1 if found else 0
    print("usage: python -m yinqi.i18n compile|check", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
