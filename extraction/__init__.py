"""Engine-free text extraction: WARC records -> decoded HTML -> main text (a fast path of trafilatura)."""
