"""Redaction before anything leaves the machine: e-mail addresses, phone numbers, URLs and the speakers'
names become placeholders ([EMAIL_1], [PHONE_1], [URL_1], [NAME_1]); the mapping stays in memory and the
local report is restored from it.

The same original always gets the same placeholder, so a grade's quotes and justification can be mapped
back. Names are matched as whole words with their capitals, as transcripts write them ("Sam", not the
"sam" of "same"); the speakers' labels and each part of a multi-word name are redacted.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from grader.personal import EMAIL, PHONE, PLACEHOLDER, URL, is_phone

# Labels that are roles, not names: never redacted.
_ROLE_LABEL = re.compile(
    r"^(?:interviewer|candidate|interviewee|recruiter|hiring manager|host|applicant|speaker|unknown|q|a|"
    r"question|answer)(?:\s*\d+)?$",
    re.IGNORECASE,
)


class Redactor:
    """Replaces personal data with numbered placeholders and restores them."""

    def __init__(self, names: Iterable[str] = ()) -> None:
        self.mapping: dict[str, str] = {}  # placeholder -> original
        self._by_original: dict[tuple[str, str], str] = {}
        self._counts: dict[str, int] = {}
        parts: set[str] = set()
        for name in names:
            name = " ".join(name.split())
            if not name or _ROLE_LABEL.match(name):
                continue
            # "Candidate (Sam Lee)" -> "Sam Lee"
            inner = re.search(r"\(([^)]+)\)", name)
            if inner:
                name = inner.group(1).strip()
                if _ROLE_LABEL.match(name):
                    continue
            parts.add(name)
            parts.update(p for p in re.split(r"[\s-]+", name) if len(p) >= 2 and not _ROLE_LABEL.match(p))
        # Longest first, so "Dana Lee" is one name before "Dana" and "Lee" are tried.
        self._names = sorted(parts, key=lambda n: (-len(n), n))
        self._name_re = (
            re.compile(r"(?<![\w\[])(?:" + "|".join(re.escape(n) for n in self._names) + r")(?![\w\]])")
            if self._names
            else None
        )

    def _placeholder(self, kind: str, original: str) -> str:
        key = (kind, original.casefold() if kind != "PHONE" else re.sub(r"\D", "", original))
        found = self._by_original.get(key)
        if found is None:
            self._counts[kind] = self._counts.get(kind, 0) + 1
            found = f"[{kind}_{self._counts[kind]}]"
            self._by_original[key] = found
            self.mapping[found] = original
        return found

    def redact(self, text: str) -> str:
        text = EMAIL.sub(lambda m: self._placeholder("EMAIL", m.group(0)), text)
        text = URL.sub(lambda m: self._placeholder("URL", m.group(0)), text)
        text = PHONE.sub(lambda m: self._placeholder("PHONE", m.group(0)) if is_phone(m.group(0)) else m.group(0), text)
        if self._name_re is not None:
            text = self._name_re.sub(lambda m: self._placeholder("NAME", m.group(0)), text)
        return text

    def restore(self, text: str) -> str:
        return PLACEHOLDER.sub(lambda m: self.mapping.get(m.group(0), m.group(0)), text)

    def restore_list(self, texts: Iterable[str]) -> list[str]:
        return [self.restore(t) for t in texts]
