"""Full-text search of the Description text on either backend, with one meaning: whole words, case and
accents folded ("resume" finds "Résumé"), each word of a query as a phrase of its parts, all words
required.

SQLite has FTS5 with the unicode61 tokenizer, which does all of that. PostgreSQL has tsvector, but its
parser and case folding follow the database's locale (in the "C" locale, letters beyond ASCII are
separators), so the words are cut and folded here, in Python, the same way for documents and queries,
and handed to PostgreSQL as ready-made ``tsvector`` and ``tsquery`` values that it only compares.
"""

from __future__ import annotations

import re
import unicodedata

from xmppbridge.store.sql import Connection, Dialect

# FTS5 table: rowid = entries.id. unicode61 folds case and, with remove_diacritics 2, accents.
_SQLITE_SCHEMA = (
    "CREATE VIRTUAL TABLE IF NOT EXISTS entries_fts USING fts5"
    " (description, tokenize = 'unicode61 remove_diacritics 2')",
)
_POSTGRESQL_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS entries_fts (entry_id BIGINT PRIMARY KEY, words TSVECTOR NOT NULL)",
    "CREATE INDEX IF NOT EXISTS entries_fts_words ON entries_fts USING gin (words)",
)
_TOKEN = re.compile(r"[^\W_]+")  # letters and digits, as unicode61 separates tokens
# tsvector limits: a lexeme of at most 2047 bytes, positions up to 16383, 256 positions per lexeme kept,
# 1 MB in all. Documents are at most a few hundred kB; the caps keep a hostile one within the limits.
_MAX_LEXEME_BYTES = 2047
_MAX_POSITION = 16383
_MAX_TOKENS = 100_000


def schema(dialect: Dialect) -> tuple[str, ...]:
    return _POSTGRESQL_SCHEMA if dialect.name == "postgresql" else _SQLITE_SCHEMA


def tokens(text: str) -> list[str]:
    """Words folded as unicode61 with remove_diacritics folds them: case, then combining marks."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    bare = "".join(char for char in decomposed if not unicodedata.combining(char))
    return _TOKEN.findall(bare)


def _quote(token: str) -> str:
    return "'" + token.replace("\\", "\\\\").replace("'", "''") + "'"


def as_tsvector(text: str) -> str:
    """``text`` as tsvector input: each folded word with its positions."""
    positions: dict[str, list[int]] = {}
    for number, token in enumerate(tokens(text)[:_MAX_TOKENS], start=1):
        if len(token.encode()) <= _MAX_LEXEME_BYTES:
            seen = positions.setdefault(token, [])
            if len(seen) < 256:
                seen.append(min(number, _MAX_POSITION))
    return " ".join(f"{_quote(token)}:{','.join(map(str, sorted(set(at))))}"
                    for token, at in positions.items())


def index(conn: Connection, entry_id: int, text: str, *, new: bool) -> None:
    """(Re)index one entry's Description text; ``new``: nothing of it indexed yet."""
    if conn.dialect.name == "postgresql":
        if not new:
            conn.execute("DELETE FROM entries_fts WHERE entry_id = ?", (entry_id,))
        conn.execute("INSERT INTO entries_fts (entry_id, words) VALUES (?, CAST(? AS tsvector))",
                     (entry_id, as_tsvector(text)))
        return
    if not new:
        conn.execute("DELETE FROM entries_fts WHERE rowid = ?", (entry_id,))
    conn.execute("INSERT INTO entries_fts (rowid, description) VALUES (?, ?)", (entry_id, text))


def condition(dialect: Dialect, words: list[str]) -> tuple[str, list[str]]:
    """The match of every word (each already a ``\\w+`` run of the user's text) as SQL and parameters.
    The words are data, never query syntax (FTS5's NEAR, *, column:, or tsquery operators)."""
    if dialect.name == "postgresql":
        phrases = [" <-> ".join(_quote(part) for part in parts) for parts in map(tokens, words) if parts]
        if not phrases:
            return "FALSE", []
        return "f.words @@ CAST(? AS tsquery)", [" & ".join(f"({phrase})" for phrase in phrases)]
    if not words:
        return "FALSE", []
    return "f.entries_fts MATCH ?", [" ".join(f'"{word}"' for word in words)]


def source(dialect: Dialect, access_index: str, *, counting: bool) -> tuple[str, str]:
    """The FROM clause joining matches to entries, and the result order (newest entry first)."""
    if dialect.name == "postgresql":
        return "entries_fts AS f JOIN entries AS e ON e.id = f.entry_id", "e.id DESC"
    # The planner looks FTS matches up by rowid in the table; a count needs only the access columns.
    hint = dialect.indexed_by(access_index) if counting else ""
    return f"entries_fts AS f JOIN entries AS e{hint} ON e.id = f.rowid", "f.rowid DESC"
