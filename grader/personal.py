"""Personal data in a text: e-mail addresses, URLs, phone numbers, and the placeholders `--redact` puts in
their place ([EMAIL_1], [URL_1], [PHONE_1], [NAME_1]).

The transcript redactor (`grader.transcripts.redact`) replaces them before anything is sent; the local
backend's reading of an answer reads the placeholders as nothing (`placeholder_spans`): a placeholder is not
content, and "[PHONE_1]" had moved a grade. The contact details themselves are read as written: the patterns
are loose enough to take "100 200 400 800" for a phone number, which in an answer is content.
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


def placeholder_spans(text: str) -> list[tuple[int, int]]:
    """Where `text` holds a redaction placeholder ([PHONE_1]...): (start, end) pairs, in order."""
    return [m.span() for m in PLACEHOLDER.finditer(text)]
