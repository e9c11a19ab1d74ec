"""The team server's users, API tokens and permissions (``loopml server --auth``).

Passwords and tokens are stored hashed, never as given. A permission gives one user a level
(read, edit, manage) on one experiment (``key`` = its id) or registered model (its name).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
)

from loopml.store.tables import KEY, metadata

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(KEY), nullable=False, unique=True),
    Column("password_hash", Text, nullable=True),  # None: token-only user
    Column("is_admin", Boolean, nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user_id", Integer, ForeignKey("users.id"), nullable=False),
    Column("name", String(KEY), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(16), nullable=False),  # shown in listings to tell tokens apart
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=True),
    Column("revoked_at", BigInteger, nullable=True),
    Column("last_used_at", BigInteger, nullable=True),
    Index("ix_api_tokens_user_id", "user_id"),
)

permissions = Table(
    "permissions",
    metadata,
    Column("user_id", Integer, ForeignKey("users.id"), primary_key=True),
    Column("kind", String(16), primary_key=True),  # experiment | model
    Column("key", String(KEY), primary_key=True),
    Column("level", String(8), nullable=False),  # read | edit | manage
)
