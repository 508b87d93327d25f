"""Finalize: FineWeb2's final touches, batched over lists of texts.

FineWeb2 (``fineweb-2-pipeline.py`` step 6) runs, in this order::

    FTFYFormatter()                                              # fix encoding (mojibake), control chars
    PIIFormatter()                                               # emails and public IPs
    SymbolLinesFormatter(symbols_to_remove=["|"], replace_char="\\n")  # trafilatura table artifacts

:func:`finalize_texts` applies the same three datatrove formatters (their own code, wrapped), so the
output is byte-identical to FineWeb2's. What they do (datatrove 0.10.1):

* **ftfy** (``ftfy.fix_text``) with datatrove's config: fix encoding, HTML unescape "auto", remove
  terminal escapes and control chars, fix C1 controls and surrogates; *no* Unicode normalization,
  no ligature/width/quote/line-break changes.
* **PII**: emails -> ``email@example.com`` / ``firstname.lastname@example.org`` (alternating);
  IPv4 addresses -> one of six fixed random IPs (``22.214.171.124``, ``126.96.36.199``, ...,
  cycling), **only when the address is public** (``ipaddress.ip_address(ip).is_global``): private,
  loopback, link-local and reserved addresses (``192.168.x.x``, ``10.x``, ``127.0.0.1``) are kept.
  The replacement cycles across documents in datatrove (per formatter instance); we use one
  formatter per call of :func:`finalize_texts`, i.e. per task, which keeps a task's output a
  function of its input.
* **symbol lines**: lines made only of ``|`` (and spaces) are removed; a run of such lines becomes
  one empty line (``replace_char="\\n"``).

Each step can be switched off (``FinalizeConfig``). :func:`finalize_texts` also reports which
documents each step changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["Finalizer", "finalize_texts", "FinalizeResult"]


@dataclass
class FinalizeResult:
    texts: list[str]
    changed: dict[str, int] = field(default_factory=dict)  # step -> documents changed


class Finalizer:
    """FineWeb2's three formatters; one instance per task (PII replacement cycling is per instance)."""

    def __init__(self, ftfy: bool = True, pii: bool = True, symbol_lines: bool = True):
        self.steps = []
        if ftfy:
            from datatrove.pipeline.formatters import FTFYFormatter

            self.steps.append(("ftfy", FTFYFormatter()))
        if pii:
            from datatrove.pipeline.formatters import PIIFormatter

            self.steps.append(("pii", PIIFormatter()))
        if symbol_lines:
            from datatrove.pipeline.formatters import SymbolLinesFormatter

            self.steps.append(("symbol_lines", SymbolLinesFormatter(symbols_to_remove=["|"], replace_char="\n")))

    def __call__(self, texts: Sequence[str | None]) -> FinalizeResult:
        out = [t if isinstance(t, str) else "" for t in texts]
        changed = {}
        for name, step in self.steps:
            n = 0
            fmt = step.format
            for i, t in enumerate(out):
                if not t:
                    continue
                # cheap pre-check: both PII patterns need "@" or "." (symbol lines has none: datatrove's
                # formatter also re-joins lines, e.g. drops a trailing newline, so it always runs)
                if name == "pii" and "@" not in t and "." not in t:
                    continue
                new = fmt(t)
                if new != t:
                    out[i] = new
                    n += 1
            changed[name] = n
        return FinalizeResult(out, changed)


def finalize_texts(
    texts: Sequence[str | None], ftfy: bool = True, pii: bool = True, symbol_lines: bool = True
) -> FinalizeResult:
    """Apply FineWeb2's final touches to a batch of texts (see the module docstring)."""
    return Finalizer(ftfy=ftfy, pii=pii, symbol_lines=symbol_lines)(texts)
