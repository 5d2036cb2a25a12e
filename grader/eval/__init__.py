"""The offline eval suite: cases, runner, metrics and reports."""
