"""The settings of documents: persisted queries (the manifest and APQ, with their bounds)
and the limits every document passes before it runs (gateway/documents/)."""

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings


class DocumentSettings(BaseSettings):
    persisted_manifest: Path | None = Field(
        None,
        description="Trusted documents: an apollo-persisted-query-manifest or a {hash: document} "
        "JSON map, loaded at start-up.",
    )
    persisted_only: bool = Field(
        False, description="Reject documents not in the manifest (PERSISTED_QUERY_NOT_IN_LIST)."
    )
    persisted_only_log_only: bool = Field(
        False, description="Only log what persisted-only mode would reject; reject nothing."
    )
    persisted_only_allow_apq: bool = Field(
        False, description="In persisted-only mode, also accept documents registered through APQ."
    )
    apq_enabled: bool = Field(True, description="Automatic Persisted Queries (Apollo protocol).")
    apq_ttl_s: int = Field(
        86_400, gt=0, description="Lifetime of an APQ document in Redis, seconds."
    )
    apq_memory_entries: int = Field(
        2_000, gt=0, description="APQ documents kept in process memory (LRU)."
    )
    # APQ registrations (gateway/documents/registrations.py), refused with
    # TOO_MANY_REGISTRATIONS (HTTP 429) past either bound.
    apq_max_registrations: int = Field(
        50, gt=0, description="APQ documents one caller may register per registration window."
    )
    apq_max_registration_bytes: int = Field(
        524_288, gt=0, description="Bytes of APQ documents one caller may register per window."
    )
    apq_registration_window_s: int = Field(
        3_600, gt=0, description="The per-caller APQ registration window, seconds."
    )
    apq_max_registrations_total: int = Field(
        5_000, gt=0, description="APQ documents all callers together may register per APQ TTL."
    )
    apq_max_registration_bytes_total: int = Field(
        33_554_432,
        gt=0,
        description="Bytes of APQ documents all callers together may register per APQ TTL (the "
        "store holds at most twice this).",
    )
    max_document_chars: int = Field(
        32_768,
        gt=0,
        description="Longest document, characters (checked before it is parsed).",
    )
    max_depth: int = Field(
        10, gt=0, description="Deepest field nesting; `{ me { id } }` has depth 2."
    )
    max_aliases: int = Field(15, ge=0, description="Most aliased fields in one document.")
    max_tokens: int = Field(
        800,
        gt=0,
        description="Most lexical tokens in one document (parsing and validating cost about "
        "20–40 µs of CPU per token).",
    )
    max_cost: int = Field(
        50_000,
        gt=0,
        description="Most field resolutions: each field costs the product of the `first` "
        "arguments (or their defaults) of the paginated fields above it.",
    )
    max_fields: int = Field(
        500,
        gt=0,
        description="Most field selections in one operation or fragment, fragments expanded.",
    )
    max_selections: int = Field(
        100,
        gt=0,
        description="Most fields merged into one selection set (inline fragments and spreads "
        "flattened).",
    )
    max_repeated_fields: int = Field(
        5,
        gt=0,
        description="Most fields sharing one response name in one selection set (validation "
        "compares them pairwise).",
    )
    max_operations: int = Field(10, gt=0, description="Most operations in one document.")
