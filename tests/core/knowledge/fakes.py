"""Stand-ins on 127.0.0.1 for Pinecone's data plane (legacy vector API) and OpenAI's /v1/embeddings.

Both check what they receive the way the real services would refuse it, and record it for the tests.
"""

from __future__ import annotations

import hashlib
import math
import re
import threading
import unicodedata
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

DIMENSION = 256
LIST_PAGE = 3  # small, so that listing ids takes several pages


def bag_of_words(text: str, dimension: int = DIMENSION) -> list[float]:
    """A deterministic embedding: hashed, accent-folded words, normalised to length 1."""
    folded = "".join(c for c in unicodedata.normalize("NFKD", text.lower()) if not unicodedata.combining(c))
    vector = [0.0] * dimension
    for word in re.findall(r"\w{4,}", folded):
        vector[int(hashlib.sha256(word.encode()).hexdigest(), 16) % dimension] += 1.0
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


class FakeEmbeddings:
    """POST /v1/embeddings: one bag-of-words vector per input."""

    def __init__(self, api_key: str = "sk-test") -> None:
        self.api_key = api_key
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.app = Starlette(routes=[Route("/v1/embeddings", self._embeddings, methods=["POST"])])
        self.url = ""

    async def _embeddings(self, request: Request) -> JSONResponse:
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return JSONResponse({"error": {"message": "Incorrect API key", "type": "invalid_request_error"}}, 401)
        body = await request.json()
        with self._lock:
            self.requests.append(body)
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        if not body.get("model") or not all(isinstance(text, str) and text for text in inputs):
            return JSONResponse({"error": {"message": "bad input", "type": "invalid_request_error"}}, 400)
        dimension = body.get("dimensions", DIMENSION)
        data = [{"object": "embedding", "index": i, "embedding": bag_of_words(text, dimension)}
                for i, text in enumerate(inputs)]
        data.reverse()  # the API does not promise order; the client must sort by index
        tokens = sum(len(text.split()) for text in inputs)
        return JSONResponse({"object": "list", "data": data, "model": body["model"],
                             "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})


class FakePinecone:
    """An index's data plane: /vectors/upsert, /query, /vectors/list, /vectors/delete, per namespace.

    A request Pinecone would refuse is answered 400 and its reason kept in `errors`.
    """

    def __init__(self, api_key: str = "pc-test", dimension: int = DIMENSION) -> None:
        self.api_key = api_key
        self.dimension = dimension
        self.namespaces: dict[str, dict[str, tuple[list[float], dict[str, Any]]]] = {}
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self.app = Starlette(routes=[
            Route("/vectors/upsert", self._upsert, methods=["POST"]),
            Route("/query", self._query, methods=["POST"]),
            Route("/vectors/list", self._list, methods=["GET"]),
            Route("/vectors/delete", self._delete, methods=["POST"]),
        ])
        self.url = ""

    def calls(self, path: str) -> list[dict[str, Any]]:
        return [body for called, body in self.requests if called == path]

    def _refuse(self, reason: str) -> JSONResponse:
        self.errors.append(reason)
        return JSONResponse({"code": 3, "message": reason}, status_code=400)

    def _authorized(self, request: Request) -> bool:
        return request.headers.get("api-key") == self.api_key

    def _check_vector(self, values: Any) -> str | None:
        if not isinstance(values, list) or len(values) != self.dimension:
            return f"Vector dimension {len(values) if isinstance(values, list) else '?'} does not match the " \
                   f"dimension of the index {self.dimension}"
        if not all(isinstance(v, int | float) for v in values):
            return "vector values must be numbers"
        return None

    async def _upsert(self, request: Request) -> JSONResponse:
        if not self._authorized(request):
            return JSONResponse({"code": 16, "message": "Invalid API Key"}, status_code=401)
        body = await request.json()
        self.requests.append(("upsert", body))
        namespace = body.get("namespace", "")
        vectors = body.get("vectors")
        if not namespace:
            return self._refuse("upsert without a namespace")
        if not isinstance(vectors, list) or not vectors or len(vectors) > 1000:
            return self._refuse("vectors must be a list of 1 to 1000 items")
        for vector in vectors:
            if not isinstance(vector.get("id"), str) or not vector["id"] or not vector["id"].isascii():
                return self._refuse(f"bad vector id {vector.get('id')!r}")
            if problem := self._check_vector(vector.get("values")):
                return self._refuse(problem)
            metadata = vector.get("metadata")
            if not isinstance(metadata, dict) or not all(isinstance(v, str | int | float | bool | list)
                                                         for v in metadata.values()):
                return self._refuse(f"bad metadata for {vector['id']}")
        with self._lock:
            space = self.namespaces.setdefault(namespace, {})
            for vector in vectors:
                space[vector["id"]] = (vector["values"], vector["metadata"])
        return JSONResponse({"upsertedCount": len(vectors)})

    async def _query(self, request: Request) -> JSONResponse:
        if not self._authorized(request):
            return JSONResponse({"code": 16, "message": "Invalid API Key"}, status_code=401)
        body = await request.json()
        self.requests.append(("query", body))
        namespace = body.get("namespace", "")
        top_k = body.get("topK")
        if not namespace:
            return self._refuse("query without a namespace")
        if not isinstance(top_k, int) or not 1 <= top_k <= 10000:
            return self._refuse(f"bad topK {top_k!r}")
        if problem := self._check_vector(body.get("vector")):
            return self._refuse(problem)
        query = body["vector"]
        with self._lock:
            stored = list(self.namespaces.get(namespace, {}).items())
        scored = sorted(((sum(a * b for a, b in zip(query, values, strict=True)), vector_id, metadata)
                         for vector_id, (values, metadata) in stored), key=lambda item: (-item[0], item[1]))
        include = body.get("includeMetadata", False)
        matches = [{"id": vector_id, "score": score, "values": [], **({"metadata": metadata} if include else {})}
                   for score, vector_id, metadata in scored[:top_k]]
        return JSONResponse({"matches": matches, "namespace": namespace, "usage": {"readUnits": 1}})

    async def _list(self, request: Request) -> JSONResponse:
        if not self._authorized(request):
            return JSONResponse({"code": 16, "message": "Invalid API Key"}, status_code=401)
        params = dict(request.query_params)
        self.requests.append(("list", params))
        namespace = params.get("namespace", "")
        if not namespace:
            return self._refuse("list without a namespace")
        with self._lock:
            ids = sorted(self.namespaces.get(namespace, {}))
        start = int(params.get("paginationToken") or 0)
        page = ids[start:start + LIST_PAGE]
        more = start + LIST_PAGE < len(ids)
        return JSONResponse({"vectors": [{"id": vector_id} for vector_id in page], "namespace": namespace,
                             "pagination": {"next": str(start + LIST_PAGE)} if more else None,
                             "usage": {"readUnits": 1}})

    async def _delete(self, request: Request) -> JSONResponse:
        if not self._authorized(request):
            return JSONResponse({"code": 16, "message": "Invalid API Key"}, status_code=401)
        body = await request.json()
        self.requests.append(("delete", body))
        namespace = body.get("namespace", "")
        ids = body.get("ids")
        if not namespace or not isinstance(ids, list) or not ids or len(ids) > 1000:
            return self._refuse("delete needs a namespace and 1 to 1000 ids")
        with self._lock:
            space = self.namespaces.get(namespace, {})
            for vector_id in ids:
                space.pop(vector_id, None)
        return JSONResponse({})
