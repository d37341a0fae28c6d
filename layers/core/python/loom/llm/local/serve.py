"""The local chat model server process: ``python -I serve.py``, without the loom package.

Started by ``loom.llm.local.server``, never by hand. It reads the API key from the first
line of stdin, loads the GGUF file into xllamacpp's llama.cpp server (OpenAI-compatible,
127.0.0.1 only, a port the system picks), writes one JSON line ``{"address": ...}`` to
stdout once the model is loaded, and serves until stdin closes: when the parent stops it,
exits or is killed. llama.cpp logs errors only, to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

# Two slots decode together (continuous batching), so two concurrent requests are not
# served one after the other; they share one KV cache of n_ctx tokens.
PARALLEL_SLOTS = 2
# Half the CPUs: the model shares the machine with Postgres, the API and the engine.
MAX_AUTO_THREADS = 8
_LOG_ERRORS_ONLY = 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="serve.py")
    parser.add_argument("--model-file", required=True)
    parser.add_argument("--alias", required=True)
    parser.add_argument("--context", type=int, required=True)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args(argv)
    api_key = sys.stdin.readline().strip()
    if not api_key:
        sys.stderr.write("No API key on stdin.\n")
        return 2

    # OpenMP threads that sleep instead of spinning while they wait: on a busy machine
    # spinning ones slowed decoding from about 25 to 2-15 tokens/s (2 threads, 2 cores).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import xllamacpp

    threads = args.threads or max(1, min((os.cpu_count() or 2) // 2, MAX_AUTO_THREADS))
    params = xllamacpp.CommonParams()
    params.model.path = args.model_file
    params.model_alias = {args.alias}
    params.hostnames = ["127.0.0.1"]
    params.port = 0
    params.api_keys = [api_key]
    # Browsers may not call it from any page (CORS is on for one origin nobody serves).
    params.cors_origins = "http://127.0.0.1"
    params.n_ctx = args.context
    params.n_parallel = PARALLEL_SLOTS
    params.kv_unified = True
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.verbosity = _LOG_ERRORS_ONLY
    try:
        server = xllamacpp.Server(params)
    except RuntimeError as exc:
        sys.stderr.write(f"{exc}\n")
        return 1
    sys.stdout.write(json.dumps({"address": server.listening_address}) + "\n")
    sys.stdout.flush()
    sys.stdin.read()  # returns when the parent closes stdin, exits or dies
    return 0  # dropping ``server`` stops its threads


if __name__ == "__main__":
    sys.exit(main())
