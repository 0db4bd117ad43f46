"""Persisted queries: Apollo APQ and the trusted-documents manifest.

A document is known by the sha256 hex digest of its exact text (`sha256:<hex>` in the
GraphQL-over-HTTP persisted-documents form, which manifests may use as keys). APQ
documents live in Redis with a TTL behind an in-process LRU (memory only in embedded
mode); manifest documents are loaded at start-up and never expire.
"""

import hashlib
import logging
import re
from collections import OrderedDict
from pathlib import Path
from typing import Protocol

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gateway.cache.keys import APQ_KEY_PREFIX

log = logging.getLogger("gateway.documents.persisted")

MANIFEST_FORMAT = "apollo-persisted-query-manifest"
SHA256_PREFIX = "sha256:"
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def sha256_hex(document: str) -> str:
    return hashlib.sha256(document.encode()).hexdigest()


def is_sha256_hex(value: object) -> bool:
    return isinstance(value, str) and _SHA256_HEX.fullmatch(value) is not None


def document_sha256(document_id: object) -> str | None:
    """The hex digest a document id names (`sha256:<hex>` or `<hex>`); None for any other."""
    if not isinstance(document_id, str):
        return None
    sha256 = document_id.removeprefix(SHA256_PREFIX)
    return sha256 if is_sha256_hex(sha256) else None


class DocumentStore(Protocol):
    async def get(self, sha256: str) -> str | None: ...

    async def set(self, sha256: str, document: str) -> None: ...


class MemoryStore:
    """Least-recently-used documents, at most `max_entries`."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._documents: OrderedDict[str, str] = OrderedDict()

    async def get(self, sha256: str) -> str | None:
        document = self._documents.get(sha256)
        if document is not None:
            self._documents.move_to_end(sha256)
        return document

    async def set(self, sha256: str, document: str) -> None:
        self._documents[sha256] = document
        self._documents.move_to_end(sha256)
        while len(self._documents) > self.max_entries:
            self._documents.popitem(last=False)


class RedisStore:
    """Documents under APQ_KEY_PREFIX + hash with a TTL; a Redis error is a miss, never a 5xx."""

    def __init__(self, redis: aioredis.Redis | aioredis.RedisCluster, ttl_s: int) -> None:
        self.redis = redis
        self.ttl_s = ttl_s

    async def get(self, sha256: str) -> str | None:
        try:
            raw = await self.redis.get(APQ_KEY_PREFIX + sha256)
        except (RedisError, OSError) as exc:
            log.warning("APQ lookup of %s failed, treated as a miss: %s", sha256, exc)
            return None
        return raw.decode() if isinstance(raw, bytes) else raw

    async def set(self, sha256: str, document: str) -> None:
        try:
            await self.redis.set(APQ_KEY_PREFIX + sha256, document, ex=self.ttl_s)
        except (RedisError, OSError) as exc:
            log.warning("APQ registration of %s skipped: %s", sha256, exc)


class TieredStore:
    """Memory in front of a shared store: a memory miss falls through and fills memory."""

    def __init__(self, memory: MemoryStore, shared: DocumentStore) -> None:
        self.memory = memory
        self.shared = shared

    async def get(self, sha256: str) -> str | None:
        document = await self.memory.get(sha256)
        if document is None:
            document = await self.shared.get(sha256)
            # A document that does not hash to its key is never served (corrupt or planted).
            if document is not None and sha256_hex(document) == sha256:
                await self.memory.set(sha256, document)
            else:
                document = None
        return document

    async def set(self, sha256: str, document: str) -> None:
        await self.memory.set(sha256, document)
        await self.shared.set(sha256, document)


def make_apq_store(
    redis: aioredis.Redis | aioredis.RedisCluster | None, *, ttl_s: int, memory_entries: int
) -> DocumentStore:
    memory = MemoryStore(memory_entries)
    return memory if redis is None else TieredStore(memory, RedisStore(redis, ttl_s))


class ManifestError(ValueError):
    pass


def load_manifest(path: Path) -> dict[str, str]:
    """hash → document from an apollo-persisted-query-manifest or a plain {hash: document} map
    (graphql-codegen's persisted-documents.json); ids with or without `sha256:`."""
    try:
        data = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise ManifestError(f"cannot read persisted-query manifest {path}: {exc}") from None
    if isinstance(data, dict) and data.get("format") == MANIFEST_FORMAT:
        if data.get("version") != 1:
            raise ManifestError(f"{path}: unsupported manifest version {data.get('version')!r}")
        operations = data.get("operations")
        if not isinstance(operations, list):
            raise ManifestError(f"{path}: `operations` must be a list")
        pairs = [(op.get("id"), op.get("body")) for op in operations if isinstance(op, dict)]
        if len(pairs) != len(operations):
            raise ManifestError(f"{path}: every operation must be an object")
    elif isinstance(data, dict):
        pairs = list(data.items())
    else:
        raise ManifestError(f"{path}: expected an object")
    documents: dict[str, str] = {}
    for document_id, body in pairs:
        sha256 = document_sha256(document_id)
        if sha256 is None or not isinstance(body, str):
            raise ManifestError(f"{path}: {document_id!r} is not a sha256 hex id with a body")
        if sha256_hex(body) != sha256:
            raise ManifestError(f"{path}: {document_id} is not the sha256 of its body")
        documents[sha256] = body
    return documents
