"""`make demo`: serve the built tiny-llama, stream one chat completion with the openai client, stop.

Run as `python -m trtpipe.demo` after `trtpipe build tiny-llama`. It starts `trtpipe serve` as a child
process (as a user would in another terminal), waits for readiness, prints the completion as it streams
with time to first token and tokens/s, then stops the server with SIGTERM and checks it exited cleanly.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

READY_TIMEOUT_S = 180


def _wait_ready(base: str, server: subprocess.Popen) -> None:
    from trtpipe.serve.process.launcher import wait_http_ok

    outcome = wait_http_ok(f"{base}/health/ready", READY_TIMEOUT_S, server, interval_s=0.25)
    if outcome == "exited":
        sys.exit(f"demo: trtpipe serve exited with code {server.returncode} before it was ready (see above)")
    if outcome == "timeout":
        sys.exit(f"demo: the server was not ready after {READY_TIMEOUT_S} s")


def main() -> int:
    from openai import OpenAI

    port = int(os.environ.get("TRTPIPE_DEMO_PORT", "9000"))
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "trtpipe", "serve", "--port", str(port)])
    try:
        _wait_ready(base, server)
        client = OpenAI(base_url=f"{base}/v1", api_key=os.environ.get("TRTPIPE_API_KEY", "not-needed"))
        print("\n>>> user: Tell me a story about a small robot.\n<<< assistant (tiny-llama has random weights, "
              "so expect gibberish):\n", flush=True)
        t0 = time.perf_counter()
        ttft, chunks, usage = None, 0, None
        stream = client.chat.completions.create(
            model="tiny-llama", messages=[{"role": "user", "content": "Tell me a story about a small robot."}],
            max_tokens=64, temperature=0.8, seed=7, stream=True, stream_options={"include_usage": True})
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                if ttft is None:
                    ttft = time.perf_counter() - t0
                chunks += 1
                print(chunk.choices[0].delta.content, end="", flush=True)
            if chunk.usage:
                usage = chunk.usage
        total = time.perf_counter() - t0
        tokens = usage.completion_tokens if usage else chunks
        print(f"\n\nTTFT {1000 * (ttft or total):.1f} ms, {tokens} tokens in {total:.2f} s "
              f"({tokens / total:.1f} tokens/s)", flush=True)
        return 0
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            code = server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            code = server.wait()
        print(f"demo: server stopped (exit code {code})", flush=True)
        if code != 0:
            sys.exit(f"demo: trtpipe serve did not shut down cleanly (exit code {code})")


if __name__ == "__main__":
    sys.exit(main())
