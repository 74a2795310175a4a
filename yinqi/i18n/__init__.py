"""What the operator reads, in Simplified Chinese or English.

English is the source language: a message is written in English in the code, wrapped in
``_()``, and ``yinqi/locale/zh_CN/LC_MESSAGES/yinqi.po`` carries its Chinese. The language is
decided at each call, never at import, so a test or a command can switch it:

1. :func:`use_language` (tests, and code that must write one language whatever the caller's);
2. ``YINQI_LANG`` (``zh``, ``zh_CN``, ``zh-CN``, ``en``, ``en_US`` ...);
3. the POSIX locale, as gettext reads it: the first of ``LANGUAGE``, ``LC_ALL``,
   ``LC_MESSAGES``, ``LANG`` that is set (``zh_CN.UTF-8`` is Chinese);
4. English.

A language Yinqi has no catalogue for (``fr_FR.UTF-8``, ``C``) is English, never an error:
an error line must be printable whatever the environment says.
"""

from __future__ import annotations

import functools
import gettext as _gettext
import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

DOMAIN = "yinqi"
LOCALE_DIR = Path(__file__).resolve().parent.parent / "locale"
#: Language code -> catalogue folder under :data:`LOCALE_DIR`; English needs none.
CATALOGUES: dict[str, str | None] = {"en": None, "zh": "zh_CN"}
ENGLISH = "en"
#: Where gettext looks for the locale, first set wins.
LOCALE_VARIABLES = ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")

_chosen: ContextVar[str | None] = ContextVar("yinqi_language", default=None)


def language_of(value: str) -> str | None:
    """The language code Yinqi has a catalogue for that ``value`` names (``zh_CN.UTF-8``,
    ``zh-CN``, ``en_US`` ...), or None. Any Chinese is Simplified Chinese: the one catalogue."""
    code = value.strip().split(".")[0].split("@")[0].replace("-", "_").split("_")[0].lower()
    return code if code in CATALOGUES else None


def current_language() -> str:
    """``en`` or ``zh``, decided now (see the module's text for the order)."""
    chosen = _chosen.get()
    if chosen is not None:
        return chosen
    explicit = os.environ.get("YINQI_LANG", "").strip()
    if explicit:
        return language_of(explicit) or ENGLISH
    for name in LOCALE_VARIABLES:
        value = os.environ.get(name, "").strip()
        if value:
            # LANGUAGE may list several, in order of preference (zh_CN:en).
            found = (language_of(part) for part in value.split(":"))
            return next((lang for lang in found if lang), ENGLISH)
    return ENGLISH


@contextmanager
def use_language(language: str) -> Iterator[str]:
    """Messages in ``language`` inside the block, whatever the environment says."""
    code = language_of(language)
    if code is None:
        raise ValueError(f"no catalogue for language {language!r} "
                         f"(known: {', '.join(CATALOGUES)})")
    token = _chosen.set(code)
    try:
        yield code
    finally:
        _chosen.reset(token)


def catalogue_path(folder: str, locale_dir: Path = LOCALE_DIR) -> Path:
    """The compiled catalogue (``.mo``) in ``folder``; its source is beside it (``.po``)."""
    return locale_dir / folder / "LC_MESSAGES" / f"{DOMAIN}.mo"


@functools.cache
def translation(language: str) -> _gettext.NullTranslations:
    """The compiled catalogue of ``language``, read once per process."""
    folder = CATALOGUES.get(language)
    if folder is None:
        return _gettext.NullTranslations()
    try:
        with catalogue_path(folder).open("rb") as fp:
            return _gettext.GNUTranslations(fp)
    except FileNotFoundError:
        # A damaged installation prints English rather than failing a payment command;
        # tests/unit/test_i18n.py makes sure the catalogue is there and current.
        return _gettext.NullTranslations()


def gettext(message: str) -> str:
    """``message`` (English, a literal: see ``python -m yinqi.i18n check``) in the current
    language. Placeholders are filled after translating: ``_("{n} rows").format(n=n)``."""
    return translation(current_language()).gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    """The form of a message for the count ``n`` (Chinese has one form for every count)."""
    return translation(current_language()).ngettext(singular, plural, n)


def pgettext(context: str, message: str) -> str:
    """``message`` where one English word has several Chinese ones: ``pgettext("person",
    "name")`` is 姓名, ``pgettext("account", "name")`` 户名."""
    return translation(current_language()).pgettext(context, message)


_ = gettext

__all__ = ["CATALOGUES", "DOMAIN", "LOCALE_DIR", "_", "catalogue_path", "current_language",
           "gettext", "language_of", "ngettext", "pgettext", "translation", "use_language"]
