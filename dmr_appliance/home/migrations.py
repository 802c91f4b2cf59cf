"""The numbered, forward-only schema migrations, one set for both back ends.

``MIGRATIONS[n]`` takes the schema from version n to n + 1; append only. They are written
in SQLite's dialect; ``for_postgresql`` turns each into PostgreSQL's (64-bit integers,
double precision, bytea, no ``WITHOUT ROWID``), so the two never drift apart. Statements
are split on ``;``: no semicolons in comments or literals.
"""

from __future__ import annotations

import re

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE sync_state (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL);
    INSERT INTO sync_state (id, version) VALUES (1, 1);
    CREATE TABLE participants (
        id TEXT PRIMARY KEY,
        endpoint TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('active', 'suspended', 'revoked')),
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE TABLE participant_rooms (
        participant_id TEXT NOT NULL REFERENCES participants (id) ON DELETE CASCADE,
        room TEXT NOT NULL,
        PRIMARY KEY (participant_id, room)
    );
    CREATE INDEX participant_rooms_room ON participant_rooms (room);
    -- Deleted participants stay refused by relays until their last token has expired.
    CREATE TABLE removed_participants (id TEXT PRIMARY KEY, until INTEGER NOT NULL);
    CREATE TABLE signing_keys (
        kid TEXT PRIMARY KEY,
        created_at INTEGER NOT NULL,
        retired_at INTEGER
    );
    CREATE TABLE issued_tokens (
        jti TEXT PRIMARY KEY,
        subject TEXT NOT NULL,
        kid TEXT NOT NULL,
        issued_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        revoked_at INTEGER
    );
    CREATE INDEX issued_tokens_revoked ON issued_tokens (revoked_at) WHERE revoked_at IS NOT NULL;
    CREATE TABLE instances (
        id TEXT PRIMARY KEY,
        address TEXT NOT NULL,
        version TEXT NOT NULL,
        sync_version INTEGER NOT NULL,
        counters TEXT NOT NULL,
        first_seen REAL NOT NULL,
        last_beat REAL NOT NULL
    );
    CREATE TABLE failures (
        message_id TEXT PRIMARY KEY,
        room TEXT NOT NULL,
        sender TEXT NOT NULL,
        recipients TEXT NOT NULL,
        envelope TEXT NOT NULL,
        reported_by TEXT NOT NULL,
        first_reported_at INTEGER NOT NULL,
        last_reported_at INTEGER NOT NULL,
        reports INTEGER NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('open', 'resolved')),
        resolved_at INTEGER,
        resolved_by TEXT,
        note TEXT
    );
    CREATE INDEX failures_status_room ON failures (status, room);
    CREATE TABLE failure_attempts (
        message_id TEXT NOT NULL REFERENCES failures (message_id) ON DELETE CASCADE,
        target TEXT NOT NULL,
        at TEXT NOT NULL,
        outcome TEXT NOT NULL,
        status INTEGER,
        detail TEXT,
        UNIQUE (message_id, target, at, outcome)
    );
    """,
    """
    ALTER TABLE instances ADD COLUMN sync_age REAL;
    -- A relay's counters as its last heartbeat of each minute reported them: the status
    -- page charts the differences (home/traffic.py keeps two hours).
    CREATE TABLE traffic (
        instance TEXT NOT NULL,
        minute INTEGER NOT NULL,
        counters TEXT NOT NULL,
        PRIMARY KEY (instance, minute)
    ) WITHOUT ROWID;
    """,
    """
    -- A failure report belongs to its sender: (sender, message_id), so one participant's
    -- report of an id never blocks another's. Rebuilt, as SQLite cannot change a primary
    -- key in place: every existing row and attempt is kept. (No semicolons in comments.)
    CREATE TABLE failures_v3 (
        sender TEXT NOT NULL,
        message_id TEXT NOT NULL,
        room TEXT NOT NULL,
        recipients TEXT NOT NULL,
        envelope TEXT NOT NULL,
        reported_by TEXT NOT NULL,
        first_reported_at INTEGER NOT NULL,
        last_reported_at INTEGER NOT NULL,
        reports INTEGER NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('open', 'resolved')),
        resolved_at INTEGER,
        resolved_by TEXT,
        note TEXT,
        PRIMARY KEY (sender, message_id)
    );
    INSERT INTO failures_v3 SELECT sender, message_id, room, recipients, envelope,
        reported_by, first_reported_at, last_reported_at, reports, status, resolved_at,
        resolved_by, note FROM failures;
    CREATE TABLE failure_attempts_v3 (
        sender TEXT NOT NULL,
        message_id TEXT NOT NULL,
        target TEXT NOT NULL,
        at TEXT NOT NULL,
        outcome TEXT NOT NULL,
        status INTEGER,
        detail TEXT,
        FOREIGN KEY (sender, message_id) REFERENCES failures_v3 (sender, message_id)
            ON DELETE CASCADE,
        UNIQUE (sender, message_id, target, at, outcome)
    );
    INSERT INTO failure_attempts_v3 SELECT f.sender, a.message_id, a.target, a.at, a.outcome,
        a.status, a.detail FROM failure_attempts a JOIN failures f USING (message_id);
    DROP TABLE failure_attempts;
    DROP TABLE failures;
    ALTER TABLE failures_v3 RENAME TO failures;
    ALTER TABLE failure_attempts_v3 RENAME TO failure_attempts;
    CREATE INDEX failures_status_room ON failures (status, room);
    CREATE INDEX failures_message_id ON failures (message_id);
    CREATE INDEX failures_status_sender ON failures (status, sender, last_reported_at)
    """,
    """
    -- When an instance's last beat was its leaving one (a clean stop): its health is left,
    -- not down, whatever its age. NULL for every existing row, and again at its next beat.
    ALTER TABLE instances ADD COLUMN left_at REAL
    """,
    """
    -- A room's policy (issue 26): signed = 1, relays refuse its unsigned messages. The
    -- flag travels in access tokens, so a room needs no participants to have one, and a
    -- room without a row is unsigned. Relays never read this table (no sync bump).
    CREATE TABLE room_policies (
        room TEXT PRIMARY KEY,
        signed INTEGER NOT NULL CHECK (signed IN (0, 1)),
        updated_at INTEGER NOT NULL
    ) WITHOUT ROWID
    """,
    """
    -- Issue 25: a signing key's private key sealed (AES-GCM) with the key-encryption key
    -- of [store] key_file, so that every home instance on one database signs with it.
    -- NULL: the key is the file <keys_dir>/<kid>.pem, as before.
    ALTER TABLE signing_keys ADD COLUMN sealed BLOB
    """,
)


_POSTGRESQL_TYPES = (
    (re.compile(r"\bINTEGER\b"), "BIGINT"),
    (re.compile(r"\bREAL\b"), "DOUBLE PRECISION"),
    (re.compile(r"\bBLOB\b"), "BYTEA"),
    (re.compile(r"\)\s*WITHOUT ROWID"), ")"),
)


def statements(script: str) -> list[str]:
    """The statements of one migration (executescript() would COMMIT the caller's
    transaction first; split instead)."""
    return [s.strip() for s in script.split(";") if s.strip()]


def for_postgresql(script: str) -> str:
    """One migration in PostgreSQL's dialect."""
    for pattern, replacement in _POSTGRESQL_TYPES:
        script = pattern.sub(replacement, script)
    return script
