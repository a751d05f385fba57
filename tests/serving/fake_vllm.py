"""A stand-in for `vllm serve`: takes its command line, speaks its HTTP surface, runs as a real process.

    python tests/serving/fake_vllm.py serve MODEL --served-model-name NAME --port P [vLLM flags...]

It refuses any flag the pinned vLLM does not have (serving/vllm_flags.txt), as vLLM's own parser
would. Once "loaded" it listens on --host/--port and serves `GET /health`, `GET /v1/models`,
`GET /metrics` (Prometheus text, vLLM's gauge names) and streaming `POST /v1/chat/completions`
in vLLM's OpenAI format, with a Bearer key when VLLM_API_KEY is set.

Knobs, from `$FAKE_VLLM_DIR/<served name>.json` (read at start, and again on each /metrics):
    start_delay      seconds of "loading weights" before the port opens
    crash_after      seconds after the port opened, exit with code 1 at once
    health           "ok" (default) or "fail": /health answers 503, as vLLM does with a dead engine
    worker           start a worker process in the same process group, like vLLM's engine core
    ignore_sigterm   keep running after SIGTERM (only SIGKILL stops it)
    running, waiting, kv_cache   the gauges /metrics reports (running adds the streams in flight)
    text, token_delay            the answer streamed, word by word
Each start appends a line to `$FAKE_VLLM_DIR/<served name>.starts`: {"pid", "worker", "argv"}.
Standard library only, so it starts in a fraction of a second.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

FLAGS = Path(__file__).resolve().parents[2] / "serving" / "vllm_flags.txt"


def knobs(name: str) -> dict[str, Any]:
    path = Path(os.environ.get("FAKE_VLLM_DIR", ".")) / f"{name}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def parse(argv: list[str]) -> argparse.Namespace:
    known = {line for line in FLAGS.read_text().splitlines() if line.startswith("-")}
    for arg in argv:
        flag = arg.split("=", 1)[0]
        if flag.startswith("-") and flag not in known:
            sys.exit(f"vllm: error: unrecognized arguments: {arg}")
    parser = argparse.ArgumentParser(prog="vllm")
    parser.add_argument("command", choices=["serve"])
    parser.add_argument("model")
    parser.add_argument("--served-model-name")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max-model-len", type=int, default=4096)
    args, _ = parser.parse_known_args(argv)  # the other flags are valid vLLM flags with no effect here
    args.served_model_name = args.served_model_name or args.model
    return args


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        name = self.server.args.served_model_name
        if self.path == "/health":
            ok = knobs(name).get("health", "ok") == "ok"
            self.reply(200 if ok else 503, b"", "application/json")
        elif self.path == "/metrics":
            self.reply(200, self.server.metrics().encode(), "text/plain; version=0.0.4; charset=utf-8")
        elif self.path == "/v1/models":
            if not self.authorised():
                return
            model = {
                "id": name,
                "object": "model",
                "created": int(time.time()),
                "owned_by": "vllm",
                "root": self.server.args.model,
                "parent": None,
                "max_model_len": self.server.args.max_model_len,
            }
            self.reply_json(200, {"object": "list", "data": [model]})
        else:
            self.reply_json(404, {"detail": "Not Found"})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
        if self.path != "/v1/chat/completions":
            self.reply_json(404, {"detail": "Not Found"})
        elif not self.authorised():
            pass
        elif body.get("model") != self.server.args.served_model_name:
            self.reply_json(
                404,
                {
                    "object": "error",
                    "message": f"The model `{body.get('model')}` does not exist.",
                    "type": "NotFoundError",
                    "param": "model",
                    "code": 404,
                },
            )
        else:
            with self.server.lock:
                self.server.in_flight += 1
            try:
                self.stream(body)
            finally:
                with self.server.lock:
                    self.server.in_flight -= 1

    def authorised(self) -> bool:
        key = os.environ.get("VLLM_API_KEY")
        if not key or self.headers.get("authorization") == f"Bearer {key}":
            return True
        self.reply_json(401, {"error": "Unauthorized"})
        return False

    def reply(self, status: int, data: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def reply_json(self, status: int, body: dict[str, Any]) -> None:
        self.reply(status, json.dumps(body).encode(), "application/json")

    def stream(self, request: dict[str, Any]) -> None:
        settings = knobs(self.server.args.served_model_name)
        words = re.findall(r"\s*\S+", settings.get("text", "An answer from the local model."))
        finish = "stop"
        if isinstance(request.get("max_tokens"), int) and len(words) > request["max_tokens"]:
            words, finish = words[: request["max_tokens"]], "length"
        ident, created, name = f"chatcmpl-{os.getpid()}{time.time_ns()}", int(time.time()), request["model"]
        self.send_response(200)
        self.send_header("content-type", "text/event-stream; charset=utf-8")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()

        def send(data: str) -> None:
            raw = data.encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(raw), raw))
            self.wfile.flush()

        def chunk(delta: dict[str, Any], reason: str | None = None) -> str:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}
            if reason:
                choice["stop_reason"] = None
            body = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": name}
            return "data: " + json.dumps({**body, "choices": [choice]}) + "\n\n"

        send(chunk({"role": "assistant", "content": ""}))
        for word in words:
            time.sleep(float(settings.get("token_delay", 0)))
            send(chunk({"content": word}))
        send(chunk({"content": ""}, finish))
        if (request.get("stream_options") or {}).get("include_usage"):
            prompt = sum(len(str(m.get("content", "")).split()) for m in request.get("messages", []))
            usage = {
                "prompt_tokens": prompt,
                "total_tokens": prompt + len(words),
                "completion_tokens": len(words),
            }
            body = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": name}
            send("data: " + json.dumps({**body, "choices": [], "usage": usage}) + "\n\n")
        send("data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.lock = threading.Lock()
        self.in_flight = 0
        super().__init__((args.host, args.port), Handler)

    def metrics(self) -> str:
        settings = knobs(self.args.served_model_name)
        labels = f'{{engine="0",model_name="{self.args.served_model_name}"}}'
        gauges = (
            ("vllm:num_requests_running", "Number of requests in model execution batches.",
             self.in_flight + float(settings.get("running", 0))),
            ("vllm:num_requests_waiting", "Number of requests waiting to be processed.",
             float(settings.get("waiting", 0))),
            ("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.",
             float(settings.get("kv_cache", 0))),
        )  # fmt: skip
        lines = []
        for metric, help_text, value in gauges:
            lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} gauge", f"{metric}{labels} {value}"]
        return "\n".join(lines) + "\n"


def main() -> None:
    args = parse(sys.argv[1:])
    settings = knobs(args.served_model_name)
    if settings.get("ignore_sigterm"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    worker = None
    if settings.get("worker"):
        # Same process group, as vLLM's engine core: only a signal to the group reaches it.
        worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    record = Path(os.environ.get("FAKE_VLLM_DIR", ".")) / f"{args.served_model_name}.starts"
    with record.open("a") as starts:
        starts.write(
            json.dumps({"pid": os.getpid(), "worker": worker and worker.pid, "argv": sys.argv}) + "\n"
        )
    print(f"INFO loading {args.model}", flush=True)
    time.sleep(float(settings.get("start_delay", 0)))
    server = Server(args)
    if settings.get("crash_after") is not None:
        threading.Timer(float(settings["crash_after"]), os._exit, args=(1,)).start()
    print(f"INFO Started server process on http://{args.host}:{args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
