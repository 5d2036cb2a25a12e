"""Batch grading: files in and out, streamed, concurrent, cached and resumable."""
