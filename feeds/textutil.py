"""Text rules: decoding digest files, telling Chinese from English, unsafe characters, widths.

The parser reads with these, and every generator cleans and lays out text with them, so a rule
about text is written once. Kept apart from `feeds.parse` so the line grammar there reads as a
grammar. Everything here is pure and cheap: the parser calls it for every line of a ten-year
corpus.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_right
from itertools import accumulate

from feeds.errors import ParseError

# Ideographs, kana, CJK punctuation (。、《》【】) and full-width forms (，：（）).
CJK = re.compile("[\u3000-\u9fff\uf900-\ufaff\ufe30-\ufe4f\uff00-\uffef]")
# Every byte except the UTF-8 lead bytes of U+3000-U+9FFF (E3-E9) and U+F000-U+FFFF (EF):
# stripping these from the end of an encoded line leaves it ending at its last CJK character.
_NOT_CJK_LEAD = bytes(b for b in range(256) if not (0xE3 <= b <= 0xE9 or b == 0xEF))
# Han and kana only: a full-width comma does not make a list of names Chinese.
_IDEOGRAPH = re.compile("[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
# Punctuation that closes the Chinese sentence even though it is ASCII: `(ViT)。` or `”`.
_CLOSERS = re.compile(r"[)\]}”’\"'%.,;:!?]*")
_LATIN = re.compile(r"[A-Za-z]")
_NON_WORD = re.compile(r"[\W_]+")
# The same folding for ASCII titles (most of them), as one C-speed table lookup.
_ASCII_FOLD = {
    code: (chr(code).lower() if chr(code).isalnum() else " ") for code in range(128)
}

# Control characters that never occur in a text file (tab, LF, CR and FF excepted).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")
_ASCII_BYTES = bytes(range(128))
# Share of control characters above which a decoded file is taken for binary data.
_BINARY_SHARE = 0.05


def decode(data: bytes, *, path: str) -> str:
    """Bytes of a digest file -> text: UTF-8 (with or without BOM), UTF-16 with a BOM, else
    GB18030.

    Raises ParseError for an empty, binary or undecodable file, naming the file.
    """
    return decode_with_notes(data, path=path)[0]


def decode_with_notes(data: bytes, *, path: str) -> tuple[str, list[tuple[int, str]]]:
    """Like `decode`, plus (line, message) notes on bytes that had to be dropped or replaced.

    A UTF-8 file cut inside a character, or with a few stray bytes, stays UTF-8 (GB18030 would
    read it without error, as nonsense); a file with many non-UTF-8 bytes is GB18030.
    """
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        # UTF-16 with a byte order mark (Notepad's "Unicode", PowerShell 5's `>`): its NUL
        # bytes are no sign of a binary file.
        try:
            data = data.decode("utf-16").encode("utf-8")
        except UnicodeDecodeError as exc:
            why = f"undecodable UTF-16 text (byte {exc.start})"
            raise ParseError(why, path=path, hint="save the file as UTF-8") from exc
    if not data.strip():
        raise ParseError("empty file", path=path, hint="a digest needs at least one entry")
    if b"\x00" in data:
        raise ParseError("binary file (NUL bytes)", path=path, hint="expected a text digest")
    notes: list[tuple[int, str]] = []
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        text, notes = _lossy_utf8(data, exc, path)
    sample = text[:4096]
    if len(_CONTROL.findall(sample)) > _BINARY_SHARE * len(sample):
        raise ParseError(
            "binary file (control characters)", path=path, hint="expected a text digest"
        )
    return text, notes


def _lossy_utf8(
    data: bytes, error: UnicodeDecodeError, path: str
) -> tuple[str, list[tuple[int, str]]]:
    if error.end == len(data) and error.reason == "unexpected end of data":
        try:
            text = data[: error.start].decode("utf-8-sig")
        except UnicodeDecodeError:
            pass
        else:
            line = text.count("\n") + 1
            return text, [(line, "file ends inside a character (is it truncated?)")]
    lossy = data.decode("utf-8-sig", "replace")
    bad = lossy.count("\ufffd") - data.count("\ufffd".encode())
    non_ascii = len(data.translate(None, _ASCII_BYTES))
    # GB18030 text fails on nearly every non-ASCII byte; UTF-8 with a stray byte on few.
    if bad <= max(3, len(data) // 1000) and bad * 20 <= non_ascii:
        line = lossy[: lossy.index("\ufffd")].count("\n") + 1
        return lossy, [(line, f"{bad} byte(s) that are not UTF-8 replaced by U+FFFD")]
    try:
        return data.decode("gb18030"), []
    except UnicodeDecodeError as exc:
        raise ParseError(
            f"undecodable text (neither UTF-8 nor GB18030, byte {exc.start})",
            path=path,
            hint="save the file as UTF-8",
        ) from exc


def split_lines(text: str) -> list[str]:
    """Lines as an editor numbers them (CRLF, CR or LF), without BOM, NBSP made plain spaces.

    Only these three line ends count: `str.splitlines` would also break on form feeds and
    U+2028, and warnings would then name lines that no editor shows.
    """
    if text.startswith("\ufeff"):
        text = text[1:]
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if "\xa0" in text:
        # The 2022 digests use U+00A0 for blank lines and for gaps in the legend.
        text = text.replace("\xa0", " ")
    if _UNCLEAN.search(text) is not None:
        text = _DROPPED.sub("", _SPACE_LIKE.sub(" ", text))
    return [line.rstrip() for line in text.split("\n")]


def has_cjk(text: str) -> bool:
    return CJK.search(text) is not None


def has_ideograph(text: str) -> bool:
    return _IDEOGRAPH.search(text) is not None


def has_latin(text: str) -> bool:
    return _LATIN.search(text) is not None


def split_zh_en(text: str) -> tuple[str | None, str | None]:
    """Split one paragraph into its Chinese summary and English abstract, either may be None.

    The English part starts after the last CJK character (and any closing punctuation glued to
    it, as in `(ViT)。`), provided what follows reads as prose: at least three words and
    separated by a space or a sentence end. A Chinese summary that merely ends in a Latin word
    (`...基于ResNet`) therefore stays whole.
    """
    if not text:
        return None, None
    if text.isascii():
        return None, text
    last = _last_cjk(text)
    if last < 0:
        return None, text
    cut = last + 1
    closers = _CLOSERS.match(text, cut)
    if closers is not None:
        cut = closers.end()
    if cut >= len(text):
        return text, None
    sentence_end = text[last] in "。！？"
    if (sentence_end or text[cut].isspace()) and text.count(" ", cut) >= 3:
        zh = text[:cut].rstrip()
        if _mostly_latin(zh) or not has_ideograph(zh):
            # An English abstract with a stray full-width character inside.
            return None, text
        en = text[cut:].lstrip()
        if has_latin(en):
            return zh, en
    return text, None


def _last_cjk(text: str) -> int:
    """Index of the last CJK character, -1 if none.

    Done on the UTF-8 bytes because `bytes.rstrip` runs in C at memory speed, where a regex or a
    Python loop over a 1,500-character abstract costs more than the rest of the entry.
    """
    data = text.encode("utf-8", "surrogatepass")
    end = len(data.rstrip(_NOT_CJK_LEAD))
    if end == 0:
        return -1
    return len(text) - len(data[end - 1 :].decode("utf-8", "surrogatepass"))


def _mostly_latin(text: str) -> bool:
    if len(text) < 80:
        return False
    # UTF-8 spends two extra bytes on each CJK character: a count without a Python loop.
    return len(text.encode("utf-8")) - len(text) < 0.06 * len(text)


def normalize_title(title: str) -> str:
    """Case-folded, punctuation-free form of a title, for recognising the same paper twice.

    NFKC first, so full-width letters and punctuation fold like their ASCII forms.
    """
    if title.isascii():
        return " ".join(title.translate(_ASCII_FOLD).split())
    folded = unicodedata.normalize("NFKC", title).casefold()
    return " ".join(_NON_WORD.sub(" ", folded).split())


def collapse_spaces(text: str) -> str:
    return " ".join(text.split())


def cut(text: str, limit: int) -> str:
    """`text` in at most `limit` characters, a cut marked with `…`.

    The cut falls after the last whole word in the final tenth of the room if there is one
    (English), else between two characters (Chinese, or one enormous word).
    """
    if len(text) <= limit:
        return text
    head = text[: max(0, limit - 1)]
    floor = len(head) - len(head) // 10
    gap = max(head.rfind(" ", floor), head.rfind("\n", floor))
    if gap > 0:
        head = head[:gap]
    return head.rstrip() + "…"


# ---------------------------------------------------------------------------------------------
# Characters no output may carry

# C0 controls except tab, LF and CR, then DEL and the C1 controls.
_C0 = "\x00-\x08\x0b\x0c\x0e-\x1f"
_C1 = "\x7f-\x9f"
# Lone surrogates (UTF-8 cannot encode them) and the noncharacters U+FFFE and U+FFFF.
_UNENCODABLE = "\ud800-\udfff\ufffe\uffff"
# Bidi embeddings, overrides and isolates: invisible, and they can reorder what a reader sees.
_BIDI = "\u202a-\u202e\u2066-\u2069"

# What XML 1.0 forbids (lxml raises on it) and HTML calls a parse error; never useful in text.
XML_ILLEGAL = re.compile(f"[{_C0}{_C1}{_UNENCODABLE}]")
# The above plus what draws nothing but could hide or reorder text: for an email, which a
# reader may act on (zero-width space, direction marks (the Arabic letter mark too) and
# overrides, a stray BOM).
INVISIBLE = re.compile(f"[{_C0}{_C1}{_UNENCODABLE}{_BIDI}\u061c\u200b\u200e\u200f\ufeff]")
# What a mail header must not carry: any line break (header injection), tabs included, and the
# invisible characters above.
HEADER_UNSAFE = re.compile(f"[\x00-\x1f{_C1}{_UNENCODABLE}{_BIDI}\u2028\u2029]+")


# What a digest's text loses on reading, so no item carries it: characters that separate words
# (tab, form feed, NEL, U+2028) become spaces; other controls, bidi overrides and what UTF-8
# cannot encode go. Only LF remains of the line ends, and only between lines.
# Zero-width characters become spaces too (a zero-width space, the direction marks, a word
# joiner, a stray BOM): pasted before `[LG]` or after a link they hid an entry's start (it
# became text of the entry above) or broke a link's key. Spaces, not nothing: a title whose
# only gap is one keeps the words a title's key has always seen in it.
_ZERO_WIDTH = "\u061c\u200b\u200e\u200f\u2060\ufeff"
_SPACE_LIKE = re.compile(f"[\t\x0b\x0c\x1c-\x1f\x85\u2028\u2029{_ZERO_WIDTH}]")
_DROPPED = re.compile(f"[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f{_UNENCODABLE}{_BIDI}]")
_UNCLEAN = re.compile(
    f"[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029{_UNENCODABLE}{_BIDI}{_ZERO_WIDTH}]"
)

# Elements a web page saved as text leaves behind. Only these names count as markup, so that
# `a<b` in a formula or `<Something>` in a title stays text.
_ELEMENTS = (
    "a|abbr|b|big|blockquote|body|br|center|cite|code|del|div|em|font|h[1-6]|head|hr|html|i|"
    "iframe|img|ins|li|link|mark|meta|ol|p|pre|q|s|script|small|span|strike|strong|style|sub|"
    "sup|table|tbody|td|th|thead|tr|u|ul"
)
# A whole tag, or one cut off by the end of the text or by the next tag (`<a href="ht`).
HTML_TAG = re.compile(rf"</?(?:{_ELEMENTS})(?=[\s/>]|$)[^<>]*(?:>|$|(?=<))", re.IGNORECASE)


# The start of a tag (with any `<` before it), for what is left after the tags are gone.
_TAG_START = re.compile(rf"<+(?=/?(?:{_ELEMENTS})(?:[\s/>]|$))", re.IGNORECASE)


def strip_tags(text: str) -> str:
    """`text` without HTML tags (their text stays), including one cut off at its end.

    Removing a tag can join what surrounds it into another (`<<a href="x">a href="y"`): the
    `<`s of any tag left after the first pass go too, so that two linear passes always suffice.
    """
    if "<" not in text:
        return text
    return _TAG_START.sub("", HTML_TAG.sub("", text))


def strip_illegal(text: str) -> str:
    """`text` without the characters XML forbids."""
    return XML_ILLEGAL.sub("", text)


# ---------------------------------------------------------------------------------------------
# Columns: display width, fitting and wrapping


class _Widths(dict[int, str]):
    """A str.translate table whose output is as long as the input is wide in a terminal.

    East Asian wide and full-width characters give two characters, combining marks and other
    zero-width characters none, anything else one. Filled as characters are first met, so it
    costs nothing up front and a dict lookup after.
    """

    def __missing__(self, code: int) -> str:
        self[code] = out = "n" * _char_width(chr(code))
        return out


def _char_width(ch: str) -> int:
    if unicodedata.east_asian_width(ch) in "WF":
        return 2
    # Marks draw on the character before them; format characters (ZWSP, ZWJ, direction marks)
    # draw nothing. The soft hyphen is the exception: terminals show it.
    if unicodedata.category(ch) in ("Mn", "Me", "Cf") and ch != "\xad":
        return 0
    return 1


_WIDTHS = _Widths()


def display_width(text: str) -> int:
    """Columns `text` takes in a terminal: wide and full-width characters two, marks none."""
    return len(text.translate(_WIDTHS))


def fit(text: str, width: int) -> str:
    """Cut `text` to at most `width` columns (marking a cut with …) and pad it to `width`."""
    if display_width(text) > width:
        out, used = [], 0
        for ch in text:
            w = len(_WIDTHS[ord(ch)])
            if used + w > width - 1:
                break
            out.append(ch)
            used += w
        text = "".join(out) + "…"
    return text + " " * (width - display_width(text))


def wrap(text: str, width: int, indent: str = "") -> list[str]:
    """Wrap mixed Chinese/English text to `width` display columns, each line after `indent`.

    English breaks between words, Chinese between characters (each two columns wide), never
    before closing or after opening punctuation; a word longer than the line (a URL) stays
    whole. Runs of spaces become one.

    Each line is found from the running width of the text (counted in C, by `accumulate`), so
    Python looks only at the few places where a line may end: the text part of every
    newsletter is wrapped this way, and a character-by-character loop took a quarter of its
    rendering.
    """
    text = " ".join(text.split())
    room = max(10, width - display_width(indent))
    classes = text.translate(_BREAK_CLASSES)
    # ends[i]: the width of text[:i].
    ends = list(accumulate(classes.encode("ascii").translate(_CLASS_WIDTHS), initial=0))
    size = len(text)
    lines: list[str] = []
    start = 0
    while start < size:
        limit = ends[start] + room
        if ends[size] <= limit:
            stop = size
        else:
            stop = bisect_right(ends, limit, start) - 1
            while stop > start and not _may_end(text, classes, stop):
                stop -= 1
            if stop == start:
                # Not even the first unbreakable piece fits: it takes a line of its own.
                stop = start + 1
                while stop < size and not _may_end(text, classes, stop):
                    stop += 1
        lines.append(indent + text[start:stop])
        start = stop + 1 if stop < size and classes[stop] == " " else stop
    return lines


# No line starts with these...
_NO_START = set("，。、；：？！）」』】》〉”’,.;:!?)]}%…·")
# ...and none ends with these.
_NO_END = set("（「『【《〈“‘([{")


class _BreakClasses(dict[int, str]):
    """A str.translate table: space -> " ", wide -> "W", zero-width -> "z", other -> "n"."""

    def __missing__(self, code: int) -> str:
        ch = chr(code)
        self[code] = kind = " " if ch.isspace() else _WIDTH_CLASS[_char_width(ch)]
        return kind


_WIDTH_CLASS = {2: "W", 1: "n", 0: "z"}
_BREAK_CLASSES = _BreakClasses()
# Each class's width in columns (a space between words is one), as a bytes.translate table.
_CLASS_WIDTHS = bytes({ord(" "): 1, ord("W"): 2, ord("n"): 1}.get(b, 0) for b in range(256))


def _may_end(text: str, classes: str, stop: int) -> bool:
    """Whether a line may end before `text[stop]` (0 < stop < len(text), spaces single).

    At a space, always. Elsewhere only between two pieces that cannot be split themselves (a
    wide character with the marks after it; a run of narrow ones), and not before closing or
    after opening punctuation.
    """
    here = classes[stop]
    before = classes[stop - 1]
    if here == " ":
        return True
    if before == " " or here == "z":
        return False
    if here == "n":
        # A narrow character starts a piece only after a wide one (and its marks).
        back = stop - 1
        while back > 0 and classes[back] == "z":
            back -= 1
        if classes[back] != "W":
            return False
    return text[stop] not in _NO_START and text[stop - 1] not in _NO_END
