"""Interview transcripts -> per-candidate scorecards.

`parse` reads plain text, WebVTT, SRT and JSON into turns; `segment` finds who interviews and the
question -> answer exchanges; `match` pairs asked questions with the rubric's by embedding similarity;
`redact` hides personal data from the grading backend; `pipeline` grades and stamps evidence with times;
`scorecard` is the result and its JSON, Markdown and HTML renderings.
"""
