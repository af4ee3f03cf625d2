"""`platform serve`: screening over HTTP, for a platform's upload path.

The answers are the records `platform screen --json`, `hash --json` and `bundles --json` print (records.py),
made by the same Screener. One engine thread owns the database connection and the Screener; requests queue
for it and each pass screens every request waiting, so concurrent uploads share one inference batch. Before
each pass the engine looks at the stored bundles and trusted keys (two small queries) and rebuilds the
Screener when they changed or a bundle in force expired: a bundle ingested by `platform ingest` meanwhile is
used from the next request on, and the requests that arrive during the rebuild wait for it instead of failing.

Bad input is answered with a 4xx JSON object naming the problem; the body is read with a bound, and within a
time limit; at most `max_pending` requests wait for the engine, the rest are told to retry (503).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram,
                               disable_created_metrics, generate_latest, multiprocess)
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from vetohash.errors import ImageTooLargeError, VetohashError
from vetohash.files import read_bounded
from vetohash.preprocess import MAX_FILE_BYTES

from .active import Status, StoredBundle, stored_bundles
from .records import bundle_record, hash_record, iso, lapsed_warnings, screen_record
from .screening import ImageResult, MatchLog, Screener, Upload
from .store import Store

SETTINGS_ENV = "VETOHASH_SERVE_SETTINGS"  # how `platform serve` hands its settings to uvicorn's worker processes
UPLOAD = "<upload>"  # the name an image sent as a raw body is reported by
RAW_TYPES = ("application/octet-stream",)  # besides image/*
MULTIPART_SLACK = 64 * 1024  # room for multipart boundaries and headers beyond the image itself
MAX_TOKEN_FILE_BYTES = 4096  # a bearer token is one line
DRAIN_BYTES = 16 * 1024 * 1024  # an oversized body is read this far so the client gets the 413, not a reset


@dataclass(frozen=True)
class Settings:
    """What one worker process needs; passed to uvicorn's workers as JSON in $VETOHASH_SERVE_SETTINGS."""

    db: str
    token_file: str | None = None
    max_bytes: int = MAX_FILE_BYTES
    timeout_s: float = 30.0
    max_pending: int = 64
    batch: int = 32

    def to_env(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls) -> Settings:
        return cls(**json.loads(os.environ[SETTINGS_ENV]))


class Problem(Exception):
    """A request refused: the HTTP status, a short name for the problem, and a one-line message."""

    def __init__(self, status: int, problem: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.problem = problem


def read_token(path: Path) -> bytes:
    """The bearer token in a file (surrounding whitespace dropped); refused when empty or readable by others."""
    token = read_bounded(path, MAX_TOKEN_FILE_BYTES, "token file", VetohashError).strip()
    mode = path.stat().st_mode
    if mode & 0o077:
        raise VetohashError(f"the token file {path} is readable by others (mode {mode & 0o777:o}): chmod 600 it")
    if not token:
        raise VetohashError(f"the token file {path} is empty")
    return token


class Metrics:
    """The service's Prometheus metrics. Under several worker processes each writes its own files in
    $PROMETHEUS_MULTIPROC_DIR and /metrics sums them (prometheus_client's multiprocess mode)."""

    def __init__(self) -> None:
        disable_created_metrics()  # the *_created series say when a worker started: noise for a dashboard
        self.registry = CollectorRegistry()
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        if self.multiprocess:
            multiprocess.MultiProcessCollector(self.registry)
        own = None if self.multiprocess else self.registry
        self.requests = Counter("vetohash_requests", "HTTP requests answered, by route and status code.",
                                ["route", "code"], registry=own)
        self.verdicts = Counter("vetohash_verdicts", "Images screened, by verdict.", ["verdict"], registry=own)
        self.errors = Counter("vetohash_errors", "Requests refused or failed, by problem.", ["problem"],
                              registry=own)
        self.latency = Histogram("vetohash_request_seconds", "Time to answer a request, by route.", ["route"],
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
                                 registry=own)
        self.bundles = Gauge("vetohash_bundles", "Stored bundles, by status (active ones are used to screen).",
                             ["status"], registry=own, multiprocess_mode="livemax")
        self.expiry = Gauge("vetohash_bundle_expiry_timestamp_seconds",
                            "When each stored bundle expires (Unix time), with whether it is in force.",
                            ["authority", "list", "key_id", "status"], registry=own, multiprocess_mode="livemax")
        self.ready = Gauge("vetohash_ready", "1 once bundles and models are loaded and screening can answer.",
                           registry=own, multiprocess_mode="livemin")

    def loaded(self, found: Sequence[StoredBundle], ready: bool) -> None:
        """Record the bundles the engine just loaded."""
        for status in Status:
            self.bundles.labels(status.value).set(sum(s.status is status for s in found))
        if not self.multiprocess:
            self.expiry.clear()
        for s in found:
            self.expiry.labels(s.row.authority, s.row.list_name, s.row.key_id, s.status.value).set(s.row.expires)
        self.ready.set(1 if ready else 0)

    def text(self) -> bytes:
        return generate_latest(self.registry)


class Engine:
    """The database and the Screener, used from one thread only (sqlite3 and the network are not shared)."""

    def __init__(self, db: Path, batch: int, metrics: Metrics) -> None:
        self.db = db
        self.batch = batch
        self.metrics = metrics
        self.thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vetohash-engine")
        self._store: Store | None = None
        self._seen: object = None
        self._next_expiry = float("inf")
        self.screener: Screener | None = None
        self.found: list[StoredBundle] = []
        self.lapsed: list[str] = []  # records.lapsed_warnings of the bundles loaded, in every screen's record
        self.problem = "loading bundles"
        self.loaded = False  # set by the first refresh, from the engine thread

    async def call(self, work: Callable[[], Any]) -> Any:
        """Run `work` on the engine thread."""
        return await asyncio.get_running_loop().run_in_executor(self.thread, work)

    def store(self) -> Store:
        if self._store is None:
            self._store = Store.open(self.db)
        return self._store

    def refresh(self) -> None:
        """Reload the bundles when a bundle or trusted key changed, or when a bundle in force has expired."""
        store = self.store()
        seen = (store.keys(), store.bundle_digests())
        if seen == self._seen and time.time() < self._next_expiry:
            return
        now = time.time()
        found = stored_bundles(store, now)
        active = [s for s in found if s.status is Status.ACTIVE]
        try:
            self.screener = Screener(active, batch=self.batch)
            self.problem = ""
        except VetohashError as error:
            self.screener, self.problem = None, str(error)
        self.found = found
        self.lapsed = lapsed_warnings(found)
        self._seen = seen
        self._next_expiry = min((s.row.expires for s in active), default=float("inf"))
        self.metrics.loaded(found, self.screener is not None)
        self.loaded = True

    def screen(self, uploads: Sequence[Upload]) -> list[ImageResult]:
        """Screen images with the bundles in force now, logging matches as `platform screen` does."""
        screener = self._ready()
        results = list(screener.run(uploads))
        with MatchLog(self.store()) as log:
            for result in results:
                log.add(result)
        return results

    def hash(self, uploads: Sequence[Upload]) -> list[ImageResult]:
        """Hash images under every model in force now."""
        return list(self._ready().run(uploads, compare=False))

    def bundles(self) -> list[dict[str, Any]]:
        self.refresh()
        return [bundle_record(s) for s in self.found]

    def health(self) -> tuple[bool, dict[str, Any]]:
        """Whether screening can answer, and what is in force (expired and untrusted bundles named)."""
        self.refresh()
        counts = {status.value: sum(s.status is status for s in self.found) for status in Status}
        unused = [{"authority": s.row.authority, "list": s.row.list_name, "key_id": s.row.key_id,
                   "status": s.status.value, "expires": iso(s.row.expires), "reason": s.reason}
                  for s in self.found if s.status is not Status.ACTIVE]
        ready = self.screener is not None
        return ready, {"status": "ready" if ready else "not ready", "reason": self.problem or None,
                       "bundles": counts, "not_used": unused}

    def close(self) -> None:
        if self._store is not None:
            self.thread.submit(self._store.close).result()
        self.thread.shutdown()

    def _ready(self) -> Screener:
        self.refresh()
        if self.screener is None:
            raise Problem(503, "not_ready", self.problem)
        return self.screener


class Batcher:
    """Requests waiting for the engine; each engine pass takes all of them (up to the batch size) at once."""

    def __init__(self, engine: Engine, work: Callable[[Sequence[Upload]], list[ImageResult]],
                 max_pending: int) -> None:
        self.engine = engine
        self.work = work
        self.max_pending = max_pending
        self.queue: asyncio.Queue[tuple[Upload, asyncio.Future[ImageResult]]] = asyncio.Queue()
        self.pending = 0
        self.task: asyncio.Task[None] | None = None

    async def submit(self, upload: Upload, timeout_s: float) -> ImageResult:
        if self.pending >= self.max_pending:
            raise Problem(503, "busy", f"{self.pending} requests are already waiting; retry shortly")
        if self.task is None:
            self.task = asyncio.create_task(self._loop())
        future: asyncio.Future[ImageResult] = asyncio.get_running_loop().create_future()
        self.pending += 1
        try:
            await self.queue.put((upload, future))
            return await asyncio.wait_for(asyncio.shield(future), timeout_s)
        except TimeoutError:
            raise Problem(503, "timeout", f"no answer within {timeout_s:g} s; retry shortly") from None
        finally:
            self.pending -= 1

    async def _loop(self) -> None:
        while True:
            items = [await self.queue.get()]
            while len(items) < self.engine.batch and not self.queue.empty():
                items.append(self.queue.get_nowait())
            try:
                results = await self.engine.call(lambda: self.work([upload for upload, _ in items]))
            except Exception as error:  # noqa: BLE001 - every waiting request must hear of it
                for _, future in items:
                    if not future.done():
                        future.set_exception(error)
                continue
            for (_, future), result in zip(items, results, strict=True):
                if not future.done():
                    future.set_result(result)


async def read_upload(request: Request, max_bytes: int) -> Upload:
    """The image in a request: the raw body (image/* or application/octet-stream), or the one file of a
    multipart/form-data body. Sizes are bounded while reading."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    multipart = kind == "multipart/form-data"
    if not (multipart or kind.startswith("image/") or kind in RAW_TYPES):
        raise Problem(415, "wrong_content_type",
                      f"content type {kind or 'missing'!r} is not accepted: send the image bytes as image/* or "
                      "application/octet-stream, or one file as multipart/form-data")
    limit = max_bytes + (MULTIPART_SLACK if multipart else 0)
    body = await _bounded_body(request, limit)
    if not multipart:
        return _nonempty(Upload(UPLOAD, data=body))
    return _nonempty(await _multipart_file(request, body))


async def _bounded_body(request: Request, limit: int) -> bytes:
    too_large = Problem(413, "too_large", f"the request body is larger than {limit} bytes")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit + DRAIN_BYTES:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size <= limit:
            chunks.append(chunk)
        elif size > limit + DRAIN_BYTES:
            break
    if size > limit:
        raise too_large
    return b"".join(chunks)


async def _multipart_file(request: Request, body: bytes) -> Upload:
    async def replay() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form(max_files=1, max_fields=10)
    except (MultiPartException, ValueError) as error:
        raise Problem(400, "bad_multipart", f"the multipart body cannot be read: {error}") from None
    try:
        files = [value for _, value in form.multi_items() if not isinstance(value, str)]
        if not files:
            raise Problem(400, "no_file", "the multipart body holds no file: send the image as a file field")
        upload = files[0]
        return Upload(upload.filename or UPLOAD, data=await upload.read())
    finally:
        await form.close()


def _nonempty(upload: Upload) -> Upload:
    if not upload.data:
        raise Problem(400, "empty", "the image is empty (0 bytes)")
    return upload


def _refusal(result: ImageResult) -> Problem | None:
    """The 4xx for an image the Screener could not read: a decompression bomb, or not an image at all."""
    if result.error is None:
        return None
    if result.error_type is not None and issubclass(result.error_type, ImageTooLargeError):
        return Problem(422, "decompression_bomb", result.error)
    return Problem(422, "not_an_image", result.error)


def create_app(settings: Settings) -> Starlette:
    """The ASGI application for one worker process."""
    token = read_token(Path(settings.token_file)) if settings.token_file else None
    metrics = Metrics()
    engine = Engine(Path(settings.db), settings.batch, metrics)
    screens = Batcher(engine, engine.screen, settings.max_pending)
    hashes = Batcher(engine, engine.hash, settings.max_pending)

    def guarded(route: str, handler: Callable[[Request], Awaitable[Response]], public: bool = False
                ) -> Callable[[Request], Awaitable[Response]]:
        """Token check, problems as JSON, and the request's metrics."""

        async def endpoint(request: Request) -> Response:
            started = time.perf_counter()
            try:
                if token is not None and not public:
                    _check_token(request, token)
                response = await handler(request)
            except Problem as problem:
                metrics.errors.labels(problem.problem).inc()
                response = _problem(problem)
            except ClientDisconnect:
                metrics.errors.labels("client_disconnected").inc()
                response = Response(status_code=499)
            metrics.requests.labels(route, str(response.status_code)).inc()
            metrics.latency.labels(route).observe(time.perf_counter() - started)
            return response

        return endpoint

    async def image_upload(request: Request) -> Upload:
        return await _timed(read_upload(request, settings.max_bytes), settings.timeout_s)

    async def screen(request: Request) -> Response:
        result = await screens.submit(await image_upload(request), settings.timeout_s)
        refused = _refusal(result)
        if refused:
            raise refused
        record = screen_record(result, engine.lapsed)
        metrics.verdicts.labels(record["verdict"]).inc()
        return JSONResponse(record)

    async def hash_(request: Request) -> Response:
        result = await hashes.submit(await image_upload(request), settings.timeout_s)
        refused = _refusal(result)
        if refused:
            raise refused
        return JSONResponse(hash_record(result))

    async def bundles(_request: Request) -> Response:
        return JSONResponse(await engine.call(engine.bundles))

    async def healthz(_request: Request) -> Response:
        if not engine.loaded:  # answer a probe at once rather than after the models load
            return JSONResponse({"status": "not ready", "reason": engine.problem}, status_code=503)
        ready, body = await engine.call(engine.health)
        return JSONResponse(body, status_code=200 if ready else 503)

    async def metrics_text(_request: Request) -> Response:
        await engine.call(engine.refresh)  # so expiries show without waiting for a screening request
        return Response(metrics.text(), media_type=CONTENT_TYPE_LATEST)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        loading = asyncio.create_task(engine.call(engine.refresh))  # the first load, while requests come in
        try:
            yield
        finally:
            loading.cancel()
            for batcher in (screens, hashes):
                if batcher.task is not None:
                    batcher.task.cancel()
            await asyncio.to_thread(engine.close)

    async def not_found(request: Request, error: Exception) -> Response:
        status = error.status_code if isinstance(error, HTTPException) else 500
        name = {404: "not_found", 405: "method_not_allowed"}.get(status, "http_error")
        return _problem(Problem(status, name, f"{request.method} {request.url.path}: "
                                              f"{getattr(error, 'detail', 'internal error')}"))

    async def internal(_request: Request, error: Exception) -> Response:
        metrics.errors.labels("internal").inc()
        return _problem(Problem(500, "internal", f"internal error ({type(error).__name__}); see the server log"))

    return Starlette(routes=[
        Route("/v1/screen", guarded("/v1/screen", screen), methods=["POST"]),
        Route("/v1/hash", guarded("/v1/hash", hash_), methods=["POST"]),
        Route("/v1/bundles", guarded("/v1/bundles", bundles), methods=["GET"]),
        Route("/healthz", guarded("/healthz", healthz, public=True), methods=["GET"]),
        Route("/metrics", guarded("/metrics", metrics_text), methods=["GET"]),
    ], lifespan=lifespan, exception_handlers={HTTPException: not_found, Exception: internal})


def app_from_env() -> Starlette:
    """uvicorn's factory in each worker process."""
    return create_app(Settings.from_env())


async def _timed(work: Awaitable[Upload], timeout_s: float) -> Upload:
    try:
        return await asyncio.wait_for(work, timeout_s)
    except TimeoutError:
        raise Problem(408, "timeout", f"the request body did not arrive within {timeout_s:g} s") from None


def _check_token(request: Request, token: bytes) -> None:
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    # compare_digest takes the same time wherever the first differing byte is.
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token):
        raise Problem(401, "unauthorized", "a valid bearer token is required (Authorization: Bearer TOKEN)")


def _problem(problem: Problem) -> JSONResponse:
    headers = {"Retry-After": "1"} if problem.status == 503 else None
    if problem.status == 401:
        headers = {"WWW-Authenticate": "Bearer"}
    return JSONResponse({"error": str(problem), "problem": problem.problem}, status_code=problem.status,
                        headers=headers)

