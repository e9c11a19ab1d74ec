"""The LLM gateway's tables: virtual keys, the shared limit counters, the request log and
the trace spans (gateway requests and applications' own spans alike)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from loopml.store.tables import KEY, metadata

ID = 32  # a key id, request id or trace id (hex)

# Virtual keys: only the SHA-256 of the secret is kept; `prefix` is what listings show.
llm_keys = Table(
    "llm_keys",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(16), nullable=False),
    Column("name", String(KEY), nullable=True),
    Column("team", String(KEY), nullable=True),
    Column("models", Text, nullable=True),  # JSON list of allowed model names; NULL: all
    Column("rpm", Integer, nullable=True),
    Column("tpm", Integer, nullable=True),
    Column("budget_usd", Float, nullable=True),
    Column("budget_period", String(8), nullable=True),  # day | month
    Column("max_request_cost_usd", Float, nullable=True),
    Column("log_content", String(8), nullable=True),  # full | redact | none; NULL: gateway's
    Column("tags", Text, nullable=True),  # JSON object
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=True),
    Column("revoked_at", BigInteger, nullable=True),
    Index("ix_llm_keys_team", "team"),
)

# Fixed-window counters shared by every gateway replica: requests and tokens per minute
# (bucket = the minute's start, ms) and spend per day or month (bucket = the period's start).
llm_counters = Table(
    "llm_counters",
    metadata,
    Column("scope", String(KEY + 40), nullable=False),  # "key:ID:rpm", "team:growth:usd:month"
    Column("bucket", BigInteger, nullable=False),
    Column("value", Float, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    PrimaryKeyConstraint("scope", "bucket", name="pk_llm_counters"),
    Index("ix_llm_counters_expires_at", "expires_at"),
)

# One row per request the gateway answered (or refused after authenticating).
llm_requests = Table(
    "llm_requests",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("created_at", BigInteger, nullable=False),
    Column("endpoint", String(32), nullable=False),  # chat | messages | embeddings
    Column("key_id", String(ID), nullable=True),
    Column("team", String(KEY), nullable=True),
    Column("user", String(KEY), nullable=True),
    Column("tags", Text, nullable=True),  # JSON list
    Column("model_requested", String(KEY), nullable=False),
    Column("model_used", String(KEY), nullable=True),
    Column("deployment", String(KEY), nullable=True),
    Column("provider", String(32), nullable=True),
    Column("route_reason", Text, nullable=True),
    Column("attempts", Text, nullable=True),  # JSON list of Attempt
    Column("status", Integer, nullable=False),  # the HTTP status answered
    Column("error", Text, nullable=True),
    Column("stream", Boolean, nullable=False),
    Column("truncated", Boolean, nullable=False),
    Column("latency_ms", Float, nullable=False),
    Column("ttft_ms", Float, nullable=True),
    Column("input_tokens", Integer, nullable=False),
    Column("output_tokens", Integer, nullable=False),
    Column("cached_read_tokens", Integer, nullable=False),
    Column("cached_write_tokens", Integer, nullable=False),
    Column("reasoning_tokens", Integer, nullable=False),
    Column("usage_estimated", Boolean, nullable=False),
    Column("cost_usd", Float, nullable=False),
    Column("cache_hit", Boolean, nullable=False),
    Column("trace_id", String(ID), nullable=True),
    Column("request", Text, nullable=True),  # JSON, as the key's log_content allows
    Column("response", Text, nullable=True),
    # JSON: how the cache answered (kind exact|semantic, similarity, the cached request id it
    # matched, the partition); NULL: not answered from the cache
    Column("cache", Text, nullable=True),
    Column("saved_usd", Float, nullable=True),  # a cache hit's cost had it gone upstream
    # JSON: the guardrail policy (name, version) that judged the request and its findings
    Column("guardrails", Text, nullable=True),
    # The registered prompt version the request was made from (NAME/VERSION), if any
    Column("prompt", String(KEY), nullable=True),
    # The label that prompt was resolved through (NAME@LABEL); "" when the request named the
    # version itself; NULL when logged before this column (schema 0021) or made from no prompt
    Column("prompt_label", String(KEY), nullable=True),
    Index("ix_llm_requests_created_at", "created_at"),
    Index("ix_llm_requests_key_id_created_at", "key_id", "created_at"),
    Index("ix_llm_requests_team_created_at", "team", "created_at"),
    Index("ix_llm_requests_trace_id", "trace_id"),
    Index("ix_llm_requests_prompt", "prompt"),
)

# Spans of traces: the gateway's (gateway → router → attempt) and applications' own.
llm_spans = Table(
    "llm_spans",
    metadata,
    Column("trace_id", String(ID), nullable=False),
    Column("span_id", String(16), nullable=False),
    Column("parent_id", String(16), nullable=True),
    Column("name", String(KEY), nullable=False),
    Column("kind", String(16), nullable=False),  # internal | server | client
    Column("start_us", BigInteger, nullable=False),  # microseconds since the epoch
    Column("end_us", BigInteger, nullable=False),
    Column("status", String(8), nullable=False),  # ok | error
    Column("attributes", Text, nullable=True),  # JSON object (GenAI semantic conventions)
    Column("request_id", String(ID), nullable=True),
    PrimaryKeyConstraint("trace_id", "span_id", name="pk_llm_spans"),
    Index("ix_llm_spans_start_us", "start_us"),
    Index("ix_llm_spans_request_id", "request_id"),
)


# Guardrail policies: immutable versions, content-addressed (re-saving the same body is a
# no-op); a request's log names the version that judged it.
llm_policies = Table(
    "llm_policies",
    metadata,
    Column("name", String(KEY), nullable=False),
    Column("version", Integer, nullable=False),
    Column("digest", String(64), nullable=False),  # SHA-256 of the canonical JSON body
    Column("body", Text, nullable=False),  # canonical JSON of the policy's rules
    Column("created_at", BigInteger, nullable=False),
    PrimaryKeyConstraint("name", "version", name="pk_llm_policies"),
    UniqueConstraint("name", "digest", name="uq_llm_policies_name_digest"),
)


# The response cache (loopml.llm.cache) when it lives in the workspace: one row per cached
# answer. `seq` only grows: replicas poll it to keep their vector indexes in step.
llm_cache_entries = Table(
    "llm_cache_entries",
    metadata,
    Column(
        "seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("key", String(64), nullable=False, unique=True),  # SHA-256 of tenant + request
    Column("partition", String(32), nullable=True),  # semantic partition; NULL: exact only
    Column("route", String(KEY), nullable=False),  # the model alias asked for
    Column("tenant", String(KEY + 8), nullable=False),  # "key:ID", "team:NAME" or ""
    Column("request", Text, nullable=False),  # canonical JSON of the normalized request
    Column("query", Text, nullable=True),  # the text that was embedded
    Column("body", LargeBinary, nullable=True),  # the response JSON (NULL: in body_blob)
    Column("body_blob", String(64), nullable=True),  # blob digest of a large response
    Column("checksum", String(64), nullable=False),  # BLAKE3 of the response JSON
    Column("embedding", LargeBinary, nullable=True),  # float32 unit vector
    Column("embedder", String(KEY), nullable=True),
    Column("request_id", String(ID), nullable=True),  # the request that was cached
    Column("cost_usd", Float, nullable=False),  # what a hit saves
    Column("hits", Integer, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("last_hit_at", BigInteger, nullable=False),  # created_at until hit (eviction order)
    Column("expires_at", BigInteger, nullable=True),  # NULL: until evicted
    Index("ix_llm_cache_entries_created_at", "created_at"),
    Index("ix_llm_cache_entries_last_hit_at", "last_hit_at"),
    Index("ix_llm_cache_entries_expires_at", "expires_at"),
    Index("ix_llm_cache_entries_route", "route"),
)


# The prompt registry (loopml.llm.prompts): immutable, content-addressed versions per name
# (re-registering the same template, model, params and schema is a no-op).
llm_prompts = Table(
    "llm_prompts",
    metadata,
    Column("name", String(KEY), nullable=False),
    Column("version", Integer, nullable=False),
    Column("digest", String(64), nullable=False),  # SHA-256 of the canonical JSON content
    Column("kind", String(8), nullable=False),  # text | chat
    Column("template", Text, nullable=False),  # the text, or the messages as JSON
    Column("model", String(KEY), nullable=True),
    Column("params", Text, nullable=True),  # JSON object
    Column("output_schema", Text, nullable=True),  # JSON
    Column("commit_message", Text, nullable=True),
    Column("created_by", String(KEY), nullable=True),
    Column("created_at", BigInteger, nullable=False),
    PrimaryKeyConstraint("name", "version", name="pk_llm_prompts"),
    UniqueConstraint("name", "digest", name="uq_llm_prompts_name_digest"),
)

# Where each label of a prompt points now (one row per name and label).
llm_prompt_labels = Table(
    "llm_prompt_labels",
    metadata,
    Column("name", String(KEY), nullable=False),
    Column("label", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    # JSON [[version, weight], ...]: an A/B test — the label's traffic split between these
    # versions, sticky per end user; NULL: every request gets ``version``
    Column("split", Text, nullable=True),
    PrimaryKeyConstraint("name", "label", name="pk_llm_prompt_labels"),
)

# Append-only: every label move (set, rollback, override) and every move a gate blocked,
# with who, when, why and the gate's verdict. Replaying it answers "what was production then".
llm_prompt_label_history = Table(
    "llm_prompt_label_history",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("name", String(KEY), nullable=False),
    Column("label", String(64), nullable=False),
    Column("kind", String(16), nullable=False),  # set | rollback | override | blocked
    Column("version", Integer, nullable=False),  # the version moved to (or refused)
    Column("previous_version", Integer, nullable=True),  # the holder before (NULL: none)
    Column("actor", String(KEY), nullable=True),
    Column("reason", Text, nullable=True),
    Column("verdict", Text, nullable=True),  # JSON: the gate's verdict
    Column("created_at", BigInteger, nullable=False),
    Column("split", Text, nullable=True),  # JSON [[version, weight], ...] of an A/B move
    Index("ix_llm_prompt_label_history_name_label", "name", "label", "id"),
)


# RAG indexes (loopml.llm.rag): one row per registered build of an index — the corpus it was
# built from (its source, and the BLAKE3 manifest digest: the same content address
# `loopml data add` gives a folder). Re-registering a name makes its next version.
llm_rag_indexes = Table(
    "llm_rag_indexes",
    metadata,
    Column("name", String(KEY), nullable=False),
    Column("version", Integer, nullable=False),
    Column("source", Text, nullable=False),  # the absolute path or glob the corpus came from
    Column("root", Text, nullable=False),  # the folder manifest paths are relative to
    Column("corpus", String(64), nullable=False),  # manifest digest (a blob)
    Column("files", Integer, nullable=False),
    Column("bytes", BigInteger, nullable=False),
    Column("created_by", String(KEY), nullable=True),
    Column("created_at", BigInteger, nullable=False),
    PrimaryKeyConstraint("name", "version", name="pk_llm_rag_indexes"),
)

# The manifest of each index version, one row per corpus file: what `check_index` compares
# with the corpus now (mtime and size let an unchanged file skip re-hashing).
llm_rag_documents = Table(
    "llm_rag_documents",
    metadata,
    Column("name", String(KEY), nullable=False),
    Column("version", Integer, nullable=False),
    Column("path", String(1024), nullable=False),  # relative to the index's root, posix
    Column("digest", String(64), nullable=False),  # BLAKE3 of the file
    Column("size", BigInteger, nullable=False),
    Column("mtime_ns", BigInteger, nullable=False),
    PrimaryKeyConstraint("name", "version", "path", name="pk_llm_rag_documents"),
)


# Feedback on gateway requests (thumbs, ratings, any named score): what prompt A/B reports
# and retrieval weak labels read. Append-only; a request may get several.
llm_feedback = Table(
    "llm_feedback",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("request_id", String(ID), nullable=False),
    Column("name", String(64), nullable=False),  # "user" unless told
    Column("value", Float, nullable=False),
    Column("comment", Text, nullable=True),
    Column("actor", String(KEY), nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Index("ix_llm_feedback_request_id", "request_id"),
    Index("ix_llm_feedback_created_at", "created_at"),
)

# Online evaluation of sampled traffic (loopml.llm.rag.online): one row per request and
# evaluator (context_relevance, groundedness, answer_relevance), judged off the response path.
llm_online_evals = Table(
    "llm_online_evals",
    metadata,
    Column("request_id", String(ID), nullable=False),
    Column("evaluator", String(64), nullable=False),
    Column("trace_id", String(ID), nullable=True),
    Column("route", String(KEY), nullable=False),  # the model alias requested
    Column("prompt", String(KEY), nullable=True),  # NAME/VERSION, when made from one
    Column("rag_index", String(KEY), nullable=True),  # from the trace's retrieval span
    Column("index_version", Integer, nullable=True),
    Column("status", String(16), nullable=False),  # ok | judge_error | skipped
    Column("score", Float, nullable=True),  # 0..1
    Column("passed", Boolean, nullable=True),
    Column("reason", Text, nullable=True),
    Column("judge_request_id", String(ID), nullable=True),
    Column("judge_cost_usd", Float, nullable=False),
    Column("request_at", BigInteger, nullable=False),  # the judged request's created_at
    Column("evaluated_at", BigInteger, nullable=False),
    PrimaryKeyConstraint("request_id", "evaluator", name="pk_llm_online_evals"),
    Index("ix_llm_online_evals_request_at", "request_at"),
)
