"""Tokens of MySQL text, for both readers of SQL in this package: sqlglot's MySQL
tokenizer (quotes, escapes, comments, unicode names), reduced to words, backtick-quoted
names, strings and punctuation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

# The package exports Token and TokenType; newer sqlglot.tokens only re-imports them.
from sqlglot import Token, TokenType
from sqlglot.dialects.mysql import MySQL


class Tokenizer(MySQL.Tokenizer):
    # sqlglot reads everything after a leading RENAME or REPLACE as one opaque string
    # (a "command"); "RENAME COLUMN a TO b" must stay words.
    COMMANDS: ClassVar[set[TokenType]] = set()


STRING_TYPES = {
    TokenType.STRING, TokenType.NATIONAL_STRING, TokenType.HEX_STRING, TokenType.BIT_STRING,
    TokenType.BYTE_STRING, TokenType.RAW_STRING, TokenType.NATIONAL_RAW_STRING,
    TokenType.UNICODE_STRING, TokenType.HEREDOC_STRING,
}


@dataclass(frozen=True)
class Tok:
    text: str  # a bare word or punctuation as written; a quoted name or a string unquoted
    kind: Literal["word", "name", "string", "punct"]  # "name" is a backtick-quoted name
    start: int
    end: int  # inclusive offsets into the operator's text

    def is_word(self, *words: str) -> bool:
        return self.kind == "word" and self.text.upper() in words

    def is_punct(self, punct: str) -> bool:
        return self.kind == "punct" and self.text == punct


def to_toks(t: Token) -> list[Tok]:
    if t.token_type == TokenType.IDENTIFIER:
        return [Tok(t.text, "name", t.start, t.end)]
    if t.token_type in STRING_TYPES:
        return [Tok(t.text, "string", t.start, t.end)]
    first = t.text[:1]
    if first.isalnum() or first in ("_", "$"):
        # sqlglot makes one token of "PRIMARY KEY", "ORDER BY", ...: one word each here.
        return [Tok(w, "word", t.start, t.end) for w in t.text.split()]
    return [Tok(t.text, "punct", t.start, t.end)]
