"""The two HTTP baselines, each served by uvicorn exactly as an emitted service is.

``python -m bench.servers KIND --project DIR --package PKG --port PORT`` serves:

- ``fastapi``: the idiomatic endpoint, the emitted project's own pydantic model as
  its body parameter, answering 202 with an id;
- ``starlette``: a bare Starlette route that reads the body and answers 202.

Both take the model from the emitted project (``PKG.schemas.Order``), so FastAPI
validates exactly what the emitted endpoint validates. uvicorn gets the settings
the emitted ``serve()`` gives it: one process, its default loop and HTTP
implementation, ``log_level="warning"``, lifespan on, 127.0.0.1 only.

(No ``from __future__ import annotations`` here: FastAPI must see the model class
itself in the endpoint's signature, not the name of a local variable.)
"""

import argparse
import importlib
import sys
import uuid
from typing import Any

import uvicorn
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

ROUTE = "/orders"


def fastapi_app(model: Any) -> FastAPI:
    """The idiomatic FastAPI endpoint: ``order: Order`` in, 202 out."""
    app = FastAPI()

    async def ingest(order: model) -> dict[str, str]:  # type: ignore[valid-type]
        return {"id": str(uuid.uuid4())}

    app.add_api_route(ROUTE, ingest, methods=["POST"], status_code=202)
    return app


def starlette_app() -> Starlette:
    """A bare Starlette endpoint: read the body, answer 202."""

    async def ingest(request: Request) -> Response:
        await request.body()
        return Response(status_code=202)

    return Starlette(routes=[Route(ROUTE, ingest, methods=["POST"])])


def uvicorn_config(app: Any, port: int) -> uvicorn.Config:
    """What the emitted ``serve()`` configures, at log level WARNING."""
    return uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"
    )


def main(argv: list[str] | None = None) -> None:
    """Serve one baseline until SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m bench.servers")
    parser.add_argument("kind", choices=("fastapi", "starlette"))
    parser.add_argument("--project", required=True)
    parser.add_argument("--package", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    sys.path.insert(0, args.project)
    model = importlib.import_module(f"{args.package}.schemas").Order
    app = fastapi_app(model) if args.kind == "fastapi" else starlette_app()
    uvicorn.Server(uvicorn_config(app, args.port)).run()


if __name__ == "__main__":
    main()
