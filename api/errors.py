"""Every error leaves the gateway as JSON ``{"error": code, "message": ...}`` that names what is wrong.

User mistakes are :class:`~phonereader.imageio.InputError` (4xx with its own status). Redis being away
is :class:`Unavailable` (503 with ``Retry-After``): the client may simply try again. Anything else is
a bug: it is logged with its traceback and answered with a plain 500 that leaks nothing.
"""

from __future__ import annotations

import logging

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException
from starlette.types import ASGIApp, Receive, Scope, Send

from phonereader.imageio import InputError

log = logging.getLogger(__name__)

UNAVAILABLE_RETRY_S = 2
STATUS_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                405: "method_not_allowed", 406: "not_acceptable", 409: "conflict", 413: "too_large",
                415: "unsupported_type", 422: "invalid_request", 429: "too_many_requests"}


class Unavailable(Exception):
    """The service cannot take this request now (Redis down, queue full); the client should retry."""

    def __init__(self, code: str, message: str, retry_after_s: int = UNAVAILABLE_RETRY_S, status: int = 503):
        super().__init__(message)
        self.code, self.message, self.retry_after_s, self.status = code, message, retry_after_s, status


class BodyTooLarge(Exception):
    pass


def error(status: int, code: str, message: str, headers: dict | None = None, **extra) -> JSONResponse:
    return JSONResponse({"error": code, "message": message, **extra}, status_code=status, headers=headers)


def _cause(exc: BaseException, kind: type) -> BaseException | None:
    while exc is not None:
        if isinstance(exc, kind):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def _field(loc: tuple) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "request"


def install(app: FastAPI, max_body_bytes: int) -> None:
    @app.exception_handler(InputError)
    async def _input_error(request: Request, exc: InputError):
        return error(exc.status, exc.code, exc.message)

    @app.exception_handler(Unavailable)
    async def _unavailable(request: Request, exc: Unavailable):
        return error(exc.status, exc.code, exc.message, headers={"Retry-After": str(exc.retry_after_s)})

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        problems = []
        code = "invalid_field"
        for e in exc.errors():
            field = _field(tuple(e.get("loc", ())))
            if e.get("type") == "missing":
                code = "missing_field"
                problems.append(f"{field}: field required")
            elif "UploadFile" in str(e.get("msg", "")):
                problems.append(f"{field}: expected a file upload (a multipart part with a file name)")
            else:
                problems.append(f"{field}: {e.get('msg', 'invalid')}")
        return error(422, code, "; ".join(problems) or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        if _cause(exc, BodyTooLarge):
            return _too_large(max_body_bytes)
        multipart = _cause(exc, MultiPartException)
        if multipart is not None:
            return _multipart_error(multipart)
        code = STATUS_CODES.get(exc.status_code, "error")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        if exc.status_code == 404 and message == "Not Found":
            message = f"no such path: {request.url.path}"
        return error(exc.status_code, code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(BodyTooLarge)
    async def _body_too_large(request: Request, exc: BodyTooLarge):
        return _too_large(max_body_bytes)

    @app.exception_handler(MultiPartException)
    async def _multipart(request: Request, exc: MultiPartException):
        return _multipart_error(exc)

    @app.exception_handler(redis.RedisError)
    async def _redis(request: Request, exc: redis.RedisError):
        log.warning("Redis unavailable during %s %s: %s", request.method, request.url.path, exc)
        return error(503, "unavailable", "the job store is unavailable; try again shortly",
                     headers={"Retry-After": str(UNAVAILABLE_RETRY_S)})

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception):
        if _cause(exc, BodyTooLarge):
            return _too_large(max_body_bytes)
        if _cause(exc, redis.RedisError) or _is_broker_error(exc):
            return await _redis(request, exc)
        log.exception("unhandled error in %s %s", request.method, request.url.path)
        return error(500, "internal_error", "the server failed on this request; it has been logged")


def _is_broker_error(exc: BaseException) -> bool:
    from kombu.exceptions import OperationalError

    return _cause(exc, OperationalError) is not None or _cause(exc, ConnectionError) is not None


def _too_large(limit: int) -> JSONResponse:
    return error(413, "too_large", f"the request body is larger than the limit of {limit:,} bytes")


def _multipart_error(exc: BaseException) -> JSONResponse:
    text = str(getattr(exc, "message", exc))
    if "Too many files" in text:
        return error(413, "too_many_files", f"files: {text}")
    if "Too many fields" in text:
        return error(413, "too_many_fields", text)
    return error(400, "bad_multipart", f"the multipart body cannot be parsed: {text}")


class BodyLimit:
    """ASGI middleware: refuse a body over ``max_bytes`` before reading it (Content-Length) or while
    reading it (chunked uploads), so an oversized upload costs neither memory nor disk."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            return await self.app(scope, receive, send)
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    too_big = int(value) > self.max_bytes
                except ValueError:
                    too_big = False
                if too_big:
                    return await _too_large(self.max_bytes)(scope, receive, send)
        seen = 0

        async def limited() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge()
            return message

        await self.app(scope, limited, send)
