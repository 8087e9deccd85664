"""Reading what a student types: addresses, KERN codes, ranges, protections, error codes.

Every parser is lenient about notation (``0x3000``, ``0X3_000``, ``12288``; ``KERN_NO_SPACE``,
``no_space``, ``no space``, ``3``; ``[0x1000, 0x3000)``, ``0x1000-0x3000``; ``rw-``, ``RW``,
``READ|WRITE``) and raises `AnswerError` with a sentence a student understands, never anything
else, whatever the input.
"""

from __future__ import annotations

import re

from vmlab.core import KERN, VM_PROT

__all__ = [
    "AnswerError",
    "find_kern",
    "parse_addr",
    "parse_addrs",
    "parse_errcode",
    "parse_int_list",
    "parse_kern",
    "parse_prot",
    "parse_prot_pair",
    "parse_pte_flags",
    "parse_ranges",
]

M64 = (1 << 64) - 1
_NUM = re.compile(r"0[xX][0-9a-fA-F_]+|[0-9][0-9a-fA-F_]*")


class AnswerError(ValueError):
    """An answer that cannot be read; the message says what was expected."""


def _to_int(tok: str) -> int:
    t = tok.replace("_", "")
    if t[:2].lower() == "0x":
        if len(t) == 2:
            raise AnswerError(f"{tok!r}: '0x' needs hex digits after it")
        return int(t, 16)
    if re.fullmatch(r"[0-9]+", t):
        return int(t, 10)
    # digits mixed with a-f and no 0x: unmistakably hex (e.g. 7ff0)
    return int(t, 16)


def _numbers(text: str) -> list[int]:
    out = []
    for m in _NUM.finditer(text):
        # skip digits glued to letters that are not hex (e.g. the 4 in "PML4")
        before = text[m.start() - 1] if m.start() else " "
        after = text[m.end()] if m.end() < len(text) else " "
        if before.isalpha() or before == "_" or after.isalpha() or after == "_":
            continue
        out.append(_to_int(m.group()))
    return out


def parse_addr(text: str) -> int:
    """One address or size: hex with 0x, or decimal. Exactly one number must be present."""
    if not isinstance(text, str):
        raise AnswerError("expected text")
    nums = _numbers(text)
    if not nums:
        raise AnswerError(f"no address found in {text.strip()!r}: type it as hex (0x3000) "
                          "or decimal (12288)")
    if len(nums) > 1:
        raise AnswerError(f"expected one address, found {len(nums)} numbers in {text.strip()!r}")
    if nums[0] > M64:
        raise AnswerError(f"{nums[0]:#x} does not fit in 64 bits")
    return nums[0]


_EMPTY = re.compile(r"^\s*(none|nothing|empty|no pages?|-|\[\]|\{\})?\s*$", re.IGNORECASE)


def parse_addrs(text: str) -> list[int]:
    """A list of addresses (any separators); 'none', '-' or nothing for the empty list."""
    if not isinstance(text, str):
        raise AnswerError("expected text")
    if _EMPTY.match(text):
        return []
    nums = _numbers(text)
    if not nums:
        raise AnswerError(f"no addresses found in {text.strip()!r} (write 'none' for none)")
    return nums


def parse_int_list(text: str, n: int, what: str) -> list[int]:
    """Exactly n integers (decimal or 0x hex)."""
    nums = _numbers(text) if isinstance(text, str) else []
    if len(nums) != n:
        raise AnswerError(f"expected {n} numbers ({what}), found {len(nums)}")
    return nums


_KERN_WORD = re.compile(r"(?:KERN[_\s-]*)?([A-Z]+(?:[_\s-]+[A-Z]+)*)", re.IGNORECASE)


def find_kern(text: str) -> tuple[KERN | None, str]:
    """The first KERN_* name in text (with or without the KERN_ prefix, any case, spaces or
    dashes for underscores) and the text with it removed; (None, text) if there is none."""
    for m in _KERN_WORD.finditer(text):
        words = re.split(r"[_\s-]+", m.group(1).upper())
        # try the longest run of words first: "NO SPACE 0x3000" -> NO_SPACE
        for k in range(len(words), 0, -1):
            for i in range(len(words) - k + 1):
                name = "_".join(words[i:i + k])
                if name in KERN.__members__:
                    return KERN[name], (text[:m.start()] + " " + text[m.end():])
    return None, text


def parse_kern(text: str) -> KERN:
    """A KERN_* code: a name (``KERN_NO_SPACE``, ``no space``) or its number (``3``)."""
    if not isinstance(text, str):
        raise AnswerError("expected text")
    k, _ = find_kern(text)
    if k is not None:
        return k
    nums = _numbers(text)
    if len(nums) == 1:
        try:
            return KERN(nums[0])
        except ValueError:
            raise AnswerError(f"{nums[0]} is not a KERN_* value (0..10)") from None
    names = ", ".join(f"KERN_{k.name}" for k in KERN)
    raise AnswerError(f"no KERN code found in {text.strip()!r}; expected one of {names}")


_RANGE = re.compile(
    r"(0[xX][0-9a-fA-F_]+|[0-9][0-9a-fA-F_]*)\s*(?:-|–|\.\.|:|,|to)\s*"
    r"(0[xX][0-9a-fA-F_]+|[0-9][0-9a-fA-F_]*)"
)


def parse_ranges(text: str) -> list[tuple[int, int]]:
    """Address ranges ``[start, end)``, ``start-end``, ``start..end``, ``start:end`` in order;
    'none' for no range."""
    if not isinstance(text, str):
        raise AnswerError("expected text")
    if _EMPTY.match(text):
        return []
    out = [(_to_int(a), _to_int(b)) for a, b in _RANGE.findall(text)]
    if not out:
        raise AnswerError(f"no ranges found in {text.strip()!r}: write them as "
                          "[0x1000, 0x3000) or 0x1000-0x3000")
    leftover = _RANGE.sub(" ", text)
    if _numbers(leftover):
        raise AnswerError("an odd number of addresses: every range needs a start and an end")
    return out


_PROT_NAMES = {"READ": 1, "R": 1, "WRITE": 2, "W": 2, "EXECUTE": 4, "EXEC": 4, "X": 4,
               "NONE": 0, "ALL": 7, "RW": 3}


def parse_prot(text: str) -> VM_PROT:
    """A protection: ``rw-``, ``r-x``, ``RW``, ``READ|WRITE``, ``---``, ``none``, or 0..7."""
    if not isinstance(text, str):
        raise AnswerError("expected text")
    t = text.strip()
    if re.fullmatch(r"[rR-][wW-][xX-]", t):
        return VM_PROT(sum(b for c, b in zip(t.lower(), (1, 2, 4), strict=True) if c != "-"))
    if re.fullmatch(r"[0-7]", t):
        return VM_PROT(int(t))
    if re.fullmatch(r"[rwxRWX]{1,3}", t):
        return VM_PROT(sum({"r": 1, "w": 2, "x": 4}[c] for c in set(t.lower())))
    words = [w for w in re.split(r"[\s|+,]+", t.upper().replace("VM_PROT_", "")) if w]
    if words and all(w in _PROT_NAMES for w in words):
        v = 0
        for w in words:
            v |= _PROT_NAMES[w]
        return VM_PROT(v)
    raise AnswerError(f"{t!r} is not a protection: write it like rw- or r-x (--- for none)")


def parse_prot_pair(text: str) -> tuple[VM_PROT, VM_PROT]:
    """``prot/max`` such as ``rw-/rwx`` (a space also separates them)."""
    if not isinstance(text, str):
        raise AnswerError("expected text")
    parts = [p for p in re.split(r"[/\s]+", text.strip()) if p]
    if len(parts) != 2:
        raise AnswerError(f"expected protection/max_protection like rw-/rwx, got {text.strip()!r}")
    return parse_prot(parts[0]), parse_prot(parts[1])


_PGEX = {"P": 0x1, "W": 0x2, "U": 0x4, "RSVD": 0x8, "RSV": 0x8, "I/D": 0x10, "I": 0x10,
         "ID": 0x10, "PK": 0x20}


def parse_errcode(text: str) -> int:
    """A #PF error code: a number (``0x7``, ``7``) or bit names (``P W U``, ``P|U|I/D``)."""
    if not isinstance(text, str):
        raise AnswerError("expected text")
    t = re.sub(r"#?PF|page\s*fault|error\s*code|fault|[:=()]", " ", text, flags=re.IGNORECASE)
    nums = _numbers(t)
    if len(nums) == 1 and not re.search(r"[a-zA-Z]{2,}", re.sub(r"0[xX][0-9a-fA-F_]+", "", t)):
        return nums[0]
    words = [w for w in re.split(r"[\s|+,]+", t.upper()) if w]
    if words and all(w in _PGEX for w in words):
        v = 0
        for w in words:
            v |= _PGEX[w]
        return v
    if len(nums) == 1:
        return nums[0]
    raise AnswerError(f"{text.strip()!r} is not an error code: write a number (0x7) or the "
                      "bit names (P W U)")


#: The PTE flags the fork_pte exercise asks about, in bit order (sys/amd64/include/pte.h:
#: X86_PG_V, X86_PG_RW, X86_PG_A, X86_PG_M; the SDM calls M "D", dirty).
PTE_FLAGS: tuple[str, ...] = ("P", "RW", "A", "D")
_PTE_WORDS = {"P": "P", "PRESENT": "P", "V": "P", "VALID": "P", "PG_V": "P",
              "RW": "RW", "W": "RW", "WRITE": "RW", "WRITABLE": "RW", "PG_RW": "RW",
              "A": "A", "ACCESSED": "A", "REFERENCED": "A", "PG_A": "A",
              "D": "D", "M": "D", "DIRTY": "D", "MODIFIED": "D", "PG_M": "D"}
#: Words a student may add that the question does not ask about (user, no-execute, the
#: software bits, labels): read and ignored.
_PTE_IGNORED = {"US", "U", "USER", "XD", "NX", "MANAGED", "PG_U", "PG_NX", "PG_MANAGED",
                "FLAGS", "PTE", "BITS", "SET", "PARENT", "CHILD", "AND", "R", "READ",
                "READABLE", "X86_PG_V"}
_PTE_RO = {"RO", "READ-ONLY", "READONLY"}
_NO_PTE = re.compile(r"^\s*(no\s*pte|none|nothing|-+|absent|not\s*present|not\s*mapped|"
                     r"unmapped|no\s*mapping|invalid|empty|0|\[\]|\{\})\s*\.?\s*$",
                     re.IGNORECASE)


def parse_pte_flags(text: str) -> tuple[str, ...]:
    """Which of P, RW, A, D a PTE has: ``P RW A D``, ``rw, a, p``, ``present|dirty``, ``R/W``,
    ``M`` for D, any order and case; ``RO`` means present without RW; RW, A or D imply P;
    ``no PTE`` / ``none`` / ``-`` / ``not present`` for no valid PTE; a raw PTE value
    (``0x8000000000012467``) is decoded. US, XD/NX and MANAGED may be named and are ignored.
    Returns the set flags in the order P RW A D (empty: no PTE)."""
    if not isinstance(text, str):
        raise AnswerError("expected text")
    t = text.strip().rstrip(".")
    t = re.sub(r"^\s*(parent|child)\s*(pte)?\s*[:=]?", " ", t, flags=re.IGNORECASE)
    if _NO_PTE.match(t):
        return ()
    if re.fullmatch(r"\s*0[xX][0-9a-fA-F_]+\s*", t):
        raw = _to_int(t.strip())
        if raw > M64:
            raise AnswerError(f"{raw:#x} does not fit in 64 bits")
        bits = {"P": 1, "RW": 2, "A": 0x20, "D": 0x40}
        return tuple(f for f in PTE_FLAGS if raw & 1 and raw & bits[f])
    t = re.sub(r"\bR\s*/\s*W\b", " RW ", t, flags=re.IGNORECASE)
    t = re.sub(r"\bread[\s-]+only\b", " RO ", t, flags=re.IGNORECASE)
    words = [w for w in re.split(r"[\s,;|+/&:=()\[\]{}]+", t.upper()) if w]
    got: set[str] = set()
    ro = False
    for w in words:
        if w in _PTE_WORDS:
            got.add(_PTE_WORDS[w])
        elif w in _PTE_RO:
            ro = True
        elif w not in _PTE_IGNORED:
            raise AnswerError(f"{w!r} is not a PTE flag: name the set flags among P, RW, A, D "
                              "(or write 'no PTE')")
    if ro and "RW" in got:
        raise AnswerError("read-only and RW at once: name the flags that are set")
    if ro or got:
        got.add("P")  # RW, A or D (or "read-only") only exist in a present PTE
    if not got:
        raise AnswerError(f"no PTE flags found in {text.strip()!r}: write e.g. P RW A D, "
                          "or 'no PTE'")
    return tuple(f for f in PTE_FLAGS if f in got)
