"""The one scrubber for free text that is stored or printed (error messages, reasons, logs).

Declared PII columns never reach text: extract stores them only as keyed hashes
(``extract.rules.hash_pii``). Error texts are the other way out, since a reader's message can
quote the rows it choked on, so every error text passes through :func:`scrub`: anything shaped
like a CN mobile number, an ID-card number, an email address or a CJK postal address is masked,
whitespace is folded onto one line and the length is capped.
"""

from __future__ import annotations

import re

MAX_ERROR_CHARS = 500
# a log line may carry a result dict; still bounded so a runaway message cannot flood a log
MAX_LOG_CHARS = 4000

# +86 / 86 / 0086 prefixes, then 1[3-9]x with optional space, dot or dash separators
_PHONE = re.compile(
    r"(?<!\d)(?:(?:\+|00)?86[\s.\-]*|\(\+?86\)[\s.\-]*)?1[3-9]\d(?:[\s.\-]?\d){8}(?!\d)"
)
# 18-character resident ID (last may be X) and the old 15-digit form; long card numbers too
_ID_NUMBER = re.compile(r"(?<!\d)(?:\d{17}[\dXx]|\d{15,19})(?!\d)")
_EMAIL = re.compile(r"[\w.+\-]+@[\w\-]+(?:\.[\w\-]+)+")
# a run of CJK text (with digits, house-number marks, full-width digits) holding an
# address marker: 路 号 街 区 市 省 室 (also 栋 幢 单元 弄 巷 村 镇 县)
_CJK_RUN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff0-9０-９#＃\-－()（）]{2,}")
_ADDRESS_MARK = re.compile(r"[路号街区市省室栋幢弄巷村镇县]|单元")
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_SPACE = re.compile(r"\s+")


def _mask_address(m: re.Match[str]) -> str:
    run = m.group(0)
    if _ADDRESS_MARK.search(run) and len(_CJK.findall(run)) >= 3:
        return "<address>"
    return run


def scrub(text: object, limit: int = MAX_ERROR_CHARS) -> str:
    """``text`` as one line with PII-shaped substrings masked, at most ``limit`` characters."""
    full = str(text)
    # Cut far beyond the limit first so a multi-megabyte message costs little; anything cut
    # here lies past the final cut anyway.
    s = full[: limit * 4 + 64]
    s = _SPACE.sub(" ", s).strip()
    s = _EMAIL.sub("<email>", s)
    s = _PHONE.sub("<phone>", s)
    s = _ID_NUMBER.sub("<id-number>", s)
    s = _CJK_RUN.sub(_mask_address, s)
    if len(s) > limit or len(full) > limit * 4 + 64:
        more = " … (cut)"
        s = s[: limit - len(more)].rstrip() + more
    return s
