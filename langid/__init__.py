"""Language identification (GlotLID v3 / fastText lid.176 with GlotLID labels), script detection,
word tokenizers and the language table. Engine-free: never imports babelsieve.pipeline.

    from babelsieve.langid import identify, detect_script, get_language, load_word_tokenizer
"""

from babelsieve.langid.language_table import LanguageEntry, get_language, list_languages
from babelsieve.langid.lid import MAX_CHARS, Prediction, get_backend, identify, map_lid176_label
from babelsieve.langid.script import detect_script
from babelsieve.langid.word_tokenizers import load_word_tokenizer, word_tokenize_batch

__all__ = [
    "identify",
    "Prediction",
    "get_backend",
    "map_lid176_label",
    "MAX_CHARS",
    "detect_script",
    "get_language",
    "list_languages",
    "LanguageEntry",
    "load_word_tokenizer",
    "word_tokenize_batch",
]
