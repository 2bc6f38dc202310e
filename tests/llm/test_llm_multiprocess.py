"""The LLM families in prometheus_client's multiprocess mode (gunicorn, uWSGI workers): two
worker processes make instrumented calls, a third serves ``/metrics``.

Counters and histograms are summed over the workers' files; the configured budget is
served by the scraping worker (configuration, the same in all); spend today and learned
limits, being one process's window without Redis, are left out rather than showing one
worker's numbers (with ``APPMETRICS_REDIS_URL`` they are read from Redis: see
tests/system/test_llm_redis.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.support.gemini import FakeGemini

ROOT = Path(__file__).resolve().parents[2]

# One Python (importing google-genai costs seconds) that forks two workers, as a pre-fork
# server does, then scrapes as a third process would.
SERVER = """
import os
import sys
import traceback

from flask import Flask
from google import genai
from google.genai import types

from flask_appmetrics import FlaskMetrics
from flask_appmetrics.integrations.genai import instrument_client


def make_app():
    app = Flask("llm_worker")
    app.config["APPMETRICS_GEMINI_DAILY_BUDGET_USD"] = 5.0
    FlaskMetrics(app)
    options = types.HttpOptions(base_url=sys.argv[1], timeout=10_000)
    client = instrument_client(genai.Client(api_key="k", http_options=options))

    @app.post("/api/generate")
    def generate():
        client.models.generate_content(model="gemini-2.5-flash", contents="hi")
        chunks = client.models.generate_content_stream(model="gemini-2.5-flash", contents="hi")
        text = "".join(chunk.text or "" for chunk in chunks)
        try:
            client.models.generate_content(model="gemini-2.5-flash", contents="x [fake:429]")
        except genai.errors.ClientError:
            pass
        return text

    return app, client


for _ in range(2):
    pid = os.fork()
    if pid == 0:
        try:
            app, client = make_app()
            assert app.test_client().post("/api/generate").status_code == 200
            client.close()
        except BaseException:
            traceback.print_exc()
            os._exit(1)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "a worker failed"
app, client = make_app()
sys.stdout.write(app.test_client().get("/metrics").get_data(as_text=True))
client.close()
"""


def serve(directory: Path, url: str) -> str:
    """The page the scraping process serves after two workers' calls."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory), "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", SERVER, url],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_every_llm_family_across_worker_processes(tmp_path: Path) -> None:
    directory = tmp_path / "multiproc"
    directory.mkdir()
    with FakeGemini() as server:
        page = serve(directory, server.url)
    samples = {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(page)
        for sample in family.samples
    }

    def get(name: str, **labels: str) -> float | None:
        return samples.get((name, frozenset(labels.items())))

    labels = {"endpoint": "/api/generate", "model": "gemini-2.5-flash"}
    assert get("gemini_api_calls_total", **labels, status="success") == 4
    assert get("gemini_api_errors_total", **labels, error_type="RESOURCE_EXHAUSTED") == 2
    assert get("gemini_api_time_to_first_chunk_seconds_count", **labels) == 2
    assert get("gemini_api_output_tokens_per_second_count", **labels) == 2
    assert (
        get("gemini_api_finish_reasons_total", model="gemini-2.5-flash", finish_reason="STOP") == 4
    )
    assert get("quota_refused_total", model="gemini-2.5-flash", limit="rpm") == 2
    otel = {
        "gen_ai_operation_name": "generate_content",
        "gen_ai_provider_name": "gcp.gemini",
        "gen_ai_request_model": "gemini-2.5-flash",
        "gen_ai_response_model": "gemini-2.5-flash-001",
    }
    assert get("gen_ai_client_operation_duration_seconds_count", **otel, error_type="") == 4
    assert get("gen_ai_client_operation_time_to_first_chunk_seconds_count", **otel) == 2
    assert get("gen_ai_client_token_usage_count", **otel, gen_ai_token_type="output") == 4
    assert (get("gemini_api_cost_usd_total", **labels) or 0) > 0
    # Configuration: the scraping worker's, the same in every worker.
    assert get("gemini_api_daily_budget_usd") == 5.0
    # One process's windows: left out without Redis.
    names = {name for name, _ in samples}
    assert "gemini_api_spend_today_usd" not in names
    assert "gemini_api_budget_remaining_usd" not in names
    assert "quota_learned_limit" not in names
