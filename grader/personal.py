"""Personal data in a text: e-mail addresses, URLs, phone numbers, and the placeholders `--redact` puts in
their place ([EMAIL_1], [URL_1], [PHONE_1], [NAME_1]).

One set of patterns for the two readers of it: the transcript redactor (`grader.transcripts.redact`), which
replaces them before anything is sent, and the local backend's reading of an answer, which reads them as
nothing, so that a redacted answer reads as the answer did (a placeholder is not content, and a contact
detail says who wrote an answer, not what it knows).
"""

from __future__ import annotations

import re

EMAIL = re.compile(r"\b[\w.%+-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}\b")
URL = re.compile(
    r"\b(?:https?://|www\.)[^\s<>\"']+[^\s<>\"'.,;:!?)\]]"
    r"|\b(?:[a-z0-9-]+\.)+(?:com|org|dev|ai|co|me|info|edu|gov|uk)(?:/[^\s<>\"']*[^\s<>\"'.,;:!?)\]])?(?![\w@])",
    re.IGNORECASE,
)
# International or national numbers: optional +country code, then groups split by spaces, dots, dashes
# or a parenthesised area code; at least 7 digits in all, so years and version numbers are left alone. Not
# after a word and a dash: a ticket id (INC-2024-5531) is no phone number.
PHONE = re.compile(
    r"(?<![\w+])(?<![A-Za-z]-)(?:\+\d{1,3}[\s.-]?)?(?:\(\d{1,4}\)[\s.-]?)?\d{2,4}(?:[\s.-]\d{2,4}){1,4}(?![\w])"
)
# Number runs that are not phone numbers: dates (2024-05-12, 2024.05.12), year ranges, IPv4 addresses.
_NOT_PHONE = re.compile(
    r"\d{4}-\d{2}-\d{2}|\d{4}\.\d{1,2}\.\d{1,2}|(?:19|20)\d\d\s*[-–]\s*(?:19|20)\d\d|\d{1,3}(?:\.\d{1,3}){3}"
)
PLACEHOLDER = re.compile(r"\[(?:EMAIL|PHONE|URL|NAME)_\d+\]")


def is_phone(text: str) -> bool:
    """Whether a run `PHONE` found is a phone number: 7 to 15 digits, and not a date, year range or address."""
    return 7 <= sum(c.isdigit() for c in text) <= 15 and not _NOT_PHONE.fullmatch(text.strip())


def personal_spans(text: str) -> list[tuple[int, int]]:
    """Where `text` holds an e-mail address, a URL, a phone number or a redaction placeholder: (start, end)
    pairs, sorted, overlapping ones merged."""
    found = [m.span() for pattern in (PLACEHOLDER, EMAIL, URL) for m in pattern.finditer(text)]
    found += [m.span() for m in PHONE.finditer(text) if is_phone(m.group(0))]
    merged: list[tuple[int, int]] = []
    for start, end in sorted(found):
        if merged and start < merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged
