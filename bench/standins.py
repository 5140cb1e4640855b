"""The Graph API and OpenAI stand-ins in a process of their own, so a benchmark's figures are the server's.

Run as `python -m bench.standins --port N`: one uvicorn process serves tests/fakes' FakeGraph under /graph and
FakeOpenAI under /openai, plus /bench/* to set the model latency, the Graph stand-in's templates and where it posts
`sent` statuses (bench.broadcast), and to read back what reached them. Times are
time.monotonic() of this process: CLOCK_MONOTONIC, the same clock in every process of this machine.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from tests.fakes.graph import FakeGraph
from tests.fakes.openai import FakeOpenAI
from tests.processes import free_port, server_process


def build_app() -> Starlette:
    graph, llm = FakeGraph(), FakeOpenAI()

    async def latency(request: Request) -> JSONResponse:
        llm.latency_seconds = float((await request.json())["seconds"])
        return JSONResponse({"seconds": llm.latency_seconds})

    async def reset(request: Request) -> JSONResponse:
        graph.calls.clear()
        llm.requests.clear()
        llm.classifier_requests.clear()
        return JSONResponse({"ok": True})

    async def record(request: Request) -> JSONResponse:
        return JSONResponse({"texts": [[call.body["to"], call.received_at] for call in graph.texts()],
                             "graph_calls": len(graph.calls), "model_calls": len(llm.requests),
                             "classifier_calls": len(llm.classifier_requests)})

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def templates(request: Request) -> JSONResponse:
        body = await request.json()
        graph.templates[body["waba_id"]] = body["templates"]
        return JSONResponse({"templates": len(body["templates"])})

    async def statuses(request: Request) -> JSONResponse:
        body = await request.json()
        graph.post_statuses(body["urls"], body["waba_id"], body["app_secret"])
        return JSONResponse({"ok": True})

    async def template_sends(request: Request) -> JSONResponse:
        sends = graph.template_sends()
        if request.query_params.get("count"):  # polled while a broadcast runs: the number only
            return JSONResponse({"count": len(sends)})
        return JSONResponse({"count": len(sends), "sends": [[call.body["to"], call.received_at] for call in sends]})

    return Starlette(routes=[
        Route("/bench/latency", latency, methods=["POST"]),
        Route("/bench/reset", reset, methods=["POST"]),
        Route("/bench/record", record),
        Route("/bench/templates", templates, methods=["POST"]),
        Route("/bench/statuses", statuses, methods=["POST"]),
        Route("/bench/template_sends", template_sends),
        Route("/health", health),
        Mount("/graph", app=graph.app),
        Mount("/openai", app=llm.app),
    ])


@dataclass(frozen=True)
class Record:
    """What reached the stand-ins: each text sent (recipient, monotonic time) and the model calls."""

    texts: list[tuple[str, float]]
    graph_calls: int
    model_calls: int
    classifier_calls: int


@dataclass(frozen=True)
class StandIns:
    url: str

    @property
    def graph_url(self) -> str:
        return self.url + "/graph"

    @property
    def openai_url(self) -> str:
        return self.url + "/openai/v1"

    def set_latency(self, seconds: float) -> None:
        httpx.post(self.url + "/bench/latency", json={"seconds": seconds}, timeout=10).raise_for_status()

    def reset(self) -> None:
        httpx.post(self.url + "/bench/reset", timeout=10).raise_for_status()

    def set_templates(self, waba_id: str, templates: list[dict[str, Any]]) -> None:
        """The message templates the Graph stand-in lists for `waba_id`."""
        httpx.post(self.url + "/bench/templates", json={"waba_id": waba_id, "templates": templates},
                   timeout=10).raise_for_status()

    def post_statuses(self, urls: list[str], waba_id: str, app_secret: str) -> None:
        """From now on the Graph stand-in posts each send's signed `sent` status to `urls` (FakeGraph.post_statuses)."""
        httpx.post(self.url + "/bench/statuses", json={"urls": urls, "waba_id": waba_id, "app_secret": app_secret},
                   timeout=10).raise_for_status()

    def template_send_count(self) -> int:
        return int(httpx.get(self.url + "/bench/template_sends", params={"count": 1}, timeout=10).json()["count"])

    def template_sends(self) -> list[tuple[str, float]]:
        """Each template send that reached the Graph stand-in: (recipient, monotonic receive time), in arrival order."""
        data: dict[str, Any] = httpx.get(self.url + "/bench/template_sends", timeout=60).json()
        return [(to, at) for to, at in data["sends"]]

    def record(self) -> Record:
        data: dict[str, Any] = httpx.get(self.url + "/bench/record", timeout=30).json()
        return Record([(to, at) for to, at in data["texts"]], data["graph_calls"], data["model_calls"],
                      data["classifier_calls"])


@contextmanager
def standins_process(log_path: Path) -> Iterator[StandIns]:
    """Start the stand-ins' process on a free port (its output into `log_path`); stop it when the block ends."""
    port = free_port()
    command = [sys.executable, "-m", "bench.standins", "--port", str(port)]
    with server_process(command, port, {}, log_path) as server:
        yield StandIns(server.url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(build_app(), host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
