"""The OpenAI-compatible adapter, tested at the HTTP layer with realistic response bodies."""

from __future__ import annotations

import asyncio
import json
import logging
import re

import httpx
import pytest

from grader.backends.openai import OpenAIBackend, ServerMemory
from grader.backends.retry import RetryPolicy
from grader.errors import BackendError, BackendNotConfiguredError, GradingFailedError
from grader.grading.contract import GradeRequest
from grader.rubric import load_rubric
from tests.conftest import chat_body, ok, reply_for

ANSWER = (
    "I start by gathering logs, error messages and recent deployments. "
    "Then I reproduce the issue in a staging environment before I change any code."
)
GOOD = {
    "q01.gather-evidence": "gathering logs, error messages and recent deployments",
    "q01.reproduce": "I reproduce the issue in a staging environment",
}


def run(backend: OpenAIBackend, question, answer: str = ANSWER):
    return asyncio.run(backend.grade(GradeRequest(question, answer)))


def sent(route, i: int = -1) -> dict:
    return json.loads(route.calls[i].request.content)


def test_success_asks_for_strict_schema_and_builds_the_grade(api, make_backend, q1):
    route = api.post("/chat/completions").mock(return_value=ok(reply_for(q1, covered=GOOD, tier="mediocre")))
    grade = run(make_backend(), q1)

    body = sent(route)
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["strict"] is True
    schema = body["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["points"]["required"] == q1.point_ids
    assert list(schema["properties"]) == ["points", "red_flags", "justification", "tier"]
    assert body["temperature"] == 0 and body["seed"] == 42 and body["model"] == "test-model"
    assert body["logprobs"] is True
    assert route.calls[0].request.headers["authorization"] == "Bearer sk-test-secret"

    assert grade.tier.value == "mediocre"
    assert [p.id for p in grade.covered_points] == ["q01.gather-evidence", "q01.reproduce"]
    assert set(grade.missed_points) == set(q1.point_ids) - set(GOOD)
    assert grade.backend == "openai" and grade.model == "test-model"
    assert grade.usage.prompt_tokens == 900 and grade.usage.completion_tokens == 120
    assert grade.attempts == 1
    assert grade.confidence is None  # no logprobs in this reply, and never self-reported


def test_429_honours_retry_after_then_succeeds(api, make_backend, q1, waits):
    route = api.post("/chat/completions").mock(
        side_effect=[
            httpx.Response(429, headers={"retry-after": "7"}, json={"error": {"message": "Rate limit reached"}}),
            ok(reply_for(q1, covered=GOOD)),
        ]
    )
    grade = run(make_backend(), q1)
    assert route.call_count == 2
    assert waits == [7.0]
    assert grade.attempts == 2


def test_a_long_wait_is_said_as_it_starts_and_short_ones_are_not(api, make_backend, q1, waits, caplog):
    """A server's Retry-After of a minute made grader sit silent."""
    limited = {"error": {"message": "Rate limit reached"}}
    api.post("/chat/completions").mock(
        side_effect=[
            httpx.Response(429, headers={"retry-after": "60"}, json=limited),
            httpx.Response(429, headers={"retry-after": "2"}, json=limited),
            ok(reply_for(q1, covered=GOOD)),
        ]
    )
    with caplog.at_level(logging.WARNING, logger="grader.retry"):
        run(make_backend(), q1)
    assert waits == [60.0, 2.0]
    (said,) = [r.getMessage() for r in caplog.records if r.name == "grader.retry"]
    assert "HTTP 429: Rate limit reached; waiting 60 s before request 2 of 5" in said


def test_a_wait_longer_than_grader_ever_waits_stops_at_once(api, make_backend, q1, waits):
    """A daily quota's Retry-After: 86400 was waited 120 s four times (8 minutes) for each answer, then the hint
    said to raise --max-attempts."""
    route = api.post("/chat/completions").mock(
        return_value=httpx.Response(
            429, headers={"retry-after": "86400"}, json={"error": {"message": "Daily request limit reached"}}
        )
    )
    with pytest.raises(BackendError) as info:
        run(make_backend(), q1)
    assert route.call_count == 1 and waits == []
    assert info.value.status == 429 and info.value.failure_kind == "refused"  # every answer would get it: a run stops
    assert str(info.value).startswith(
        "http://llm.test/v1 asks for 24 h before the next request (HTTP 429: Daily request limit reached); "
        "grader waits at most 120 s (run it again later"
    )


def test_a_spent_quota_is_not_retried(api, make_backend, q1, waits):
    body = {"error": {"message": "You exceeded your current quota, please check your plan and billing details.",
                      "type": "insufficient_quota", "code": "insufficient_quota"}}  # fmt: skip
    route = api.post("/chat/completions").mock(return_value=httpx.Response(429, json=body))
    with pytest.raises(BackendError, match="no quota left"):
        run(make_backend(), q1)
    assert route.call_count == 1 and waits == []


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (400, "This model's maximum context length is 8192 tokens. However, your messages resulted in 9120 tokens."),
        (400, "the request exceeds the available context size, try increasing it"),  # llama.cpp
        (413, "Request Entity Too Large"),
    ],
)
def test_an_answer_too_long_for_the_model_fails_that_grade_and_the_run_goes_on(api, make_backend, q1, status, message):
    """One answer over the model's context stopped a whole batch (a refused request, like a bad key), and
    --resume stopped at the same row again."""
    from grader.grading.engine import Engine, Job

    def answer(request: httpx.Request) -> httpx.Response:
        if "very long answer" in request.content.decode():
            return httpx.Response(status, json={"error": {"message": message, "code": "context_length_exceeded"}})
        return ok(reply_for(q1, covered=GOOD))

    route = api.post("/chat/completions").mock(side_effect=answer)
    engine = Engine(make_backend(), rubric=load_rubric())
    graded = asyncio.run(
        engine.grade_all([Job(q1.id, ANSWER, tag=1), Job(q1.id, "A very long answer. " + ANSWER, tag=2)])
    )
    first, second = (g.outcome for g in graded)
    assert first.tier is not None  # graded
    assert second.kind == "answer_too_long" and second.attempts == 1
    assert "refused this answer as too long for the model's context" in second.message
    assert route.call_count == 2


def test_a_500_that_only_names_the_schema_is_retried_not_taken_as_a_refusal(api, make_backend, q1, tmp_path, waits):
    """A transient 500 ('out of memory compiling the grammar for response_format json_schema') moved the server
    to JSON mode for good, saved in servers.json, and nobody was told."""
    memory = ServerMemory(tmp_path / "servers.json")
    oom = {"error": {"message": "CUDA out of memory while compiling the grammar for response_format json_schema"}}
    route = api.post("/chat/completions").mock(
        side_effect=[httpx.Response(500, json=oom), ok(reply_for(q1, covered=GOOD))]
    )
    run(make_backend(memory=memory), q1)
    assert route.call_count == 2 and len(waits) == 1
    assert [sent(route, i)["response_format"]["type"] for i in range(2)] == ["json_schema", "json_schema"]
    assert not (tmp_path / "servers.json").exists() or "json_object" not in (tmp_path / "servers.json").read_text()


def test_an_html_error_page_says_so_and_the_status_is_not_repeated(api, make_backend, q1, waits):
    """nginx's 502 page read 'HTTP 502: Error code: 502': the SDK's prefix, and nothing of the page."""
    page = "<html><head><title>502 Bad Gateway</title></head><body><center>nginx</center></body></html>"
    api.post("/chat/completions").mock(return_value=httpx.Response(502, text=page))
    with pytest.raises(GradingFailedError) as info:
        run(make_backend(policy=RetryPolicy(attempts=2)), q1)
    assert "HTTP 502: an HTML page, not a JSON error: is OPENAI_BASE_URL the API's address?" in str(info.value)
    assert "Error code" not in str(info.value)


def test_500_until_attempts_run_out_raises_a_typed_error(api, make_backend, q1, waits):
    route = api.post("/chat/completions").mock(
        return_value=httpx.Response(500, json={"error": {"message": "upstream overloaded"}})
    )
    with pytest.raises(GradingFailedError) as info:
        run(make_backend(policy=RetryPolicy(attempts=4)), q1)
    assert route.call_count == 4
    assert info.value.attempts == 4
    assert info.value.failure_kind == "transport"
    assert len(waits) == 3 and all(w > 0 for w in waits)  # exponential backoff with jitter between tries


def test_timeouts_and_connection_errors_are_retried(api, make_backend, q1):
    route = api.post("/chat/completions").mock(
        side_effect=[httpx.ReadTimeout("timed out"), httpx.ConnectError("refused"), ok(reply_for(q1, covered=GOOD))]
    )
    grade = run(make_backend(), q1)
    assert route.call_count == 3 and grade.attempts == 3


def test_invalid_json_is_reasked_with_the_error_and_usage_is_summed(api, make_backend, q1):
    route = api.post("/chat/completions").mock(
        side_effect=[ok('{"points": {"q01.reproduce": '), ok(reply_for(q1, covered=GOOD))]
    )
    grade = run(make_backend(), q1)
    assert route.call_count == 2
    reask = sent(route, 1)["messages"]
    assert reask[-2] == {"role": "assistant", "content": '{"points": {"q01.reproduce": '}
    assert "not valid JSON" in reask[-1]["content"]
    assert grade.attempts == 2
    assert grade.usage.prompt_tokens == 1800 and grade.usage.completion_tokens == 240


def test_an_empty_reply_is_called_empty_not_invalid_json(api, make_backend, q1):
    no_choices = {**chat_body("x"), "choices": []}
    route = api.post("/chat/completions").mock(
        side_effect=[httpx.Response(200, json=no_choices), ok(reply_for(q1, covered=GOOD))]
    )
    run(make_backend(mode="holistic"), q1)
    assert "the reply is empty (no choices, or a message with no content)" in sent(route, 1)["messages"][-1]["content"]


def test_unknown_point_id_is_reasked(api, make_backend, q1):
    bad = reply_for(q1, covered=GOOD)
    bad["points"]["q01.invented"] = {"evidence": "", "covered": False}
    route = api.post("/chat/completions").mock(side_effect=[ok(bad), ok(reply_for(q1, covered=GOOD))])
    grade = run(make_backend(), q1)
    assert route.call_count == 2
    assert "q01.invented" in sent(route, 1)["messages"][-1]["content"]
    assert "q01.invented" not in grade.missed_points


def test_missing_verdicts_are_reasked(api, make_backend, q1):
    empty = {"points": {}, "red_flags": [], "justification": "ok", "tier": "great"}
    route = api.post("/chat/completions").mock(side_effect=[ok(empty), ok(reply_for(q1, covered=GOOD))])
    run(make_backend(), q1)
    assert "missing a verdict" in sent(route, 1)["messages"][-1]["content"]


def test_fabricated_evidence_is_reasked_then_accepted(api, make_backend, q1):
    fake = reply_for(q1, covered={"q01.blameless-postmortem": "I always run blameless post-mortems"})
    route = api.post("/chat/completions").mock(side_effect=[ok(fake), ok(reply_for(q1, covered=GOOD))])
    grade = run(make_backend(), q1)
    assert route.call_count == 2
    assert "not a verbatim quote" in sent(route, 1)["messages"][-1]["content"]
    assert not grade.needs_review


def test_quote_matching_ignores_case_whitespace_and_quote_characters(api, make_backend, q1):
    answer = "I check the logs, then I \u201creproduce\u201d  the   issue\nlocally."
    quote = {"q01.reproduce": 'i "reproduce" the issue locally'}
    api.post("/chat/completions").mock(return_value=ok(reply_for(q1, covered=quote)))
    grade = run(make_backend(), q1, answer)
    assert grade.covered_points[0].evidence == 'i "reproduce" the issue locally'
    assert not grade.notes


def test_evidence_still_wrong_after_reasks_is_dropped_and_flagged(api, make_backend, q1):
    fake = reply_for(q1, covered={**GOOD, "q01.blameless-postmortem": "blameless post-mortems every time"})
    route = api.post("/chat/completions").mock(return_value=ok(fake))
    grade = run(make_backend(policy=RetryPolicy(reasks=2)), q1)
    assert route.call_count == 3
    dropped = {p.id: p.evidence for p in grade.covered_points}
    assert dropped["q01.blameless-postmortem"] is None
    assert dropped["q01.reproduce"] == GOOD["q01.reproduce"]
    assert grade.needs_review is True
    assert any("q01.blameless-postmortem" in n for n in grade.notes)


def test_other_errors_still_fail_after_reasks(api, make_backend, q1):
    api.post("/chat/completions").mock(return_value=ok('{"tier": "excellent"}'))
    with pytest.raises(GradingFailedError) as info:
        run(make_backend(policy=RetryPolicy(reasks=1)), q1)
    assert info.value.attempts == 2
    assert info.value.last_output == '{"tier": "excellent"}'
    assert info.value.usage.completion_tokens == 240


LLAMA_CPP_REJECTION = {
    "error": {
        "code": 500,
        "message": "[{'type': 'literal_error', 'loc': ('body', 'response_format', 'type'), "
        "'msg': \"Input should be 'text' or 'json_object'\", 'input': 'json_schema'}]",
        "type": "server_error",
    }
}


def test_server_rejecting_json_schema_gets_json_mode_and_it_is_remembered(api, make_backend, q1, tmp_path):
    memory = ServerMemory(tmp_path / "servers.json")
    route = api.post("/chat/completions").mock(
        side_effect=[httpx.Response(500, json=LLAMA_CPP_REJECTION), ok(reply_for(q1, covered=GOOD))]
    )
    grade = run(make_backend(memory=memory), q1)
    assert route.call_count == 2 and grade.attempts == 2
    second = sent(route, 1)
    assert second["response_format"]["type"] == "json_object"
    assert second["response_format"]["schema"]["properties"]["points"]["required"] == q1.point_ids
    assert '"q01.reproduce"' in second["messages"][0]["content"]  # the schema is spelled out in the prompt

    route.reset()
    route.side_effect = [ok(reply_for(q1, covered=GOOD))]
    run(make_backend(memory=memory), q1)  # a new process: it asks in JSON mode straight away
    assert route.call_count == 1 and sent(route)["response_format"]["type"] == "json_object"


def test_auth_failure_is_not_retried(api, make_backend, q1):
    route = api.post("/chat/completions").mock(
        return_value=httpx.Response(401, json={"error": {"message": "Incorrect API key provided"}})
    )
    with pytest.raises(BackendError) as info:
        run(make_backend(), q1)
    assert route.call_count == 1
    assert "sk-test-secret" not in str(info.value)
    assert info.value.status == 401  # as its docstring says: a bad key, told apart from an unknown model (404)


def test_logprobs_give_the_confidence_of_the_chosen_tier(api, make_backend, q1):
    reply = json.dumps(reply_for(q1, covered=GOOD, tier="great"))
    head, tail = reply.split('"tier": "', 1)
    # llama.cpp style: the quote is fused with the first letter of the value.
    tokens = [
        {"token": head + '"tier": ', "logprob": -0.01, "top_logprobs": []},
        {
            "token": '"g',
            "logprob": -0.3567,
            "top_logprobs": [
                {"token": '"g', "logprob": -0.3567},
                {"token": '"m', "logprob": -1.204},
                {"token": '"p', "logprob": -3.0},
            ],
        },
        {"token": tail[1:], "logprob": 0.0, "top_logprobs": []},
    ]
    api.post("/chat/completions").mock(return_value=httpx.Response(200, json=chat_body(reply, logprobs=tokens)))
    grade = run(make_backend(), q1)
    assert grade.confidence_source == "logprobs"
    assert grade.confidence == pytest.approx(0.7 / (0.7 + 0.3 + 0.0498), abs=1e-3)


def test_not_configured_is_a_clear_error():
    with pytest.raises(BackendNotConfiguredError):
        OpenAIBackend()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        # Each was retried as a network failure for 12 s, then "cannot connect" (exit 10).
        ("127.0.0.1:8080/v1", "is not an http(s) URL"),
        ("not a url", "is not an http(s) URL"),
        ("ftp://models.example/v1", "is not an http(s) URL"),
        ("http://", "is not an http(s) URL"),
        ("http://[::1/v1", "is not an http(s) URL"),  # a crash: urlsplit's ValueError (exit 70)
        ("http://127.0.0.1:99999/v1", "is not an http(s) URL"),  # retried 12 s as "cannot connect"
        ("http://user:secret@models.example/v1", "holds credentials"),
    ],
)
def test_a_server_url_that_cannot_work_is_refused_before_any_request(url, message):
    with pytest.raises(BackendNotConfiguredError, match=re.escape(message)):
        OpenAIBackend(api_key="k", base_url=url)


def test_the_whitespace_a_shell_or_env_file_leaves_on_the_url_is_no_part_of_it():
    for url in ("http://127.0.0.1:8080/v1\n", " http://127.0.0.1:8080/v1", "http://127.0.0.1:8080/v1/\t"):
        assert OpenAIBackend(api_key="k", base_url=url).base_url == "http://127.0.0.1:8080/v1"


@pytest.mark.parametrize(
    ("response", "where"),
    [
        (httpx.Response(200, text="<html>login page</html>"), "the body"),
        (httpx.Response(200, json={"object": "list", "data": []}), "choices"),
        (httpx.Response(200, json={"choices": [{"message": {"content": 7}}]}), "choices.0.message.content"),
    ],
)
def test_a_reply_that_is_not_a_chat_completion_is_a_clear_grading_failure(api, make_backend, q1, response, where):
    api.post("/chat/completions").mock(return_value=response)
    with pytest.raises(GradingFailedError) as info:
        run(make_backend(), q1)
    assert info.value.failure_kind == "invalid_response"
    assert "not a chat completion" in str(info.value) and where in str(info.value)


def test_by_default_requests_go_through_the_sdks_aiohttp_transport():
    import openai

    backend = OpenAIBackend(base_url="http://127.0.0.1:9/v1", api_key="sk-x")
    assert isinstance(backend.client._client, openai.DefaultAioHttpClient)
    asyncio.run(backend.aclose())


def test_a_batch_result_is_checked_and_built_by_the_method_the_direct_path_uses(api, make_backend, q1):
    reply = json.dumps(reply_for(q1, covered=GOOD))
    api.post("/chat/completions").mock(return_value=ok(reply))
    backend = make_backend()
    request = GradeRequest(q1, ANSWER)
    direct = run(backend, q1)
    from_batch = backend.grade_completion(request, backend.completion_from(chat_body(reply)))
    assert from_batch.model_dump() == direct.model_dump()

    bad = chat_body('{"tier": "excellent"}')
    with pytest.raises(GradingFailedError) as info:
        backend.grade_completion(request, backend.completion_from(bad), attempts=1)
    assert info.value.failure_kind == "invalid_output" and info.value.attempts == 1
    assert info.value.last_output == '{"tier": "excellent"}' and info.value.usage.completion_tokens == 120


# --- one deadline for a grade: requests, pauses and re-asks ---------------------------------------------


def test_the_deadline_stops_before_a_pause_that_would_pass_it(api, make_backend, q1, waits):
    """Five requests of 120 s each and pauses of up to 120 s: a grade could take 18 minutes, unbounded."""
    limited = {"error": {"message": "Rate limit reached"}}
    route = api.post("/chat/completions").mock(
        return_value=httpx.Response(429, headers={"retry-after": "30"}, json=limited)
    )
    with pytest.raises(GradingFailedError) as info:
        run(make_backend(policy=RetryPolicy(deadline=45)), q1)
    assert route.call_count == 2 and waits == [30.0]  # a second pause would end at 60 s
    assert info.value.failure_kind == "transport" and info.value.attempts == 2
    assert str(info.value).startswith("no grade from http://llm.test/v1 within the deadline of 45 s; the last request")
    assert "Rate limit reached" in str(info.value) and "--deadline" in info.value.hint


def test_without_a_deadline_the_same_server_gets_every_attempt(api, make_backend, q1, waits):
    limited = {"error": {"message": "Rate limit reached"}}
    route = api.post("/chat/completions").mock(
        return_value=httpx.Response(429, headers={"retry-after": "30"}, json=limited)
    )
    with pytest.raises(GradingFailedError, match="kept failing"):
        run(make_backend(), q1)
    assert route.call_count == 5 and waits == [30.0] * 4


def test_a_reask_is_not_sent_past_the_deadline(api, make_backend, q1, waits):
    def slow_and_malformed(request):
        waits.append(100.0)  # the clock moves on 100 s while the server answers
        return ok('{"points": {"q01.reproduce": ')

    route = api.post("/chat/completions").mock(side_effect=slow_and_malformed)
    with pytest.raises(GradingFailedError) as info:
        run(make_backend(policy=RetryPolicy(deadline=60)), q1)
    assert route.call_count == 1  # two re-asks by default, none sent
    hint = " (raise --deadline (deadline= in Python), or check the server)"
    assert str(info.value) == "no grade from http://llm.test/v1 within the deadline of 60 s" + hint
    assert info.value.attempts == 1


def test_a_request_still_waiting_at_the_deadline_is_cut(q1):
    import httpx2

    async def never(request: httpx2.Request) -> httpx2.Response:
        await asyncio.Event().wait()  # a server that accepted the request and says nothing
        raise AssertionError("unreachable")

    backend = OpenAIBackend(
        base_url="http://llm.test/v1",
        api_key="k",
        model="m",
        policy=RetryPolicy(deadline=0.5),  # long enough to be sent on a busy machine (0.05 s was not, under -n 8)
        http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(never)),
    )
    with pytest.raises(GradingFailedError) as info:
        run(backend, q1)
    assert str(info.value).startswith(
        "no grade from http://llm.test/v1 within the deadline of 0.5 s; a request was still waiting for its answer ("
    )


@pytest.mark.parametrize("spelt", ["Great", " GREAT ", "great\n"])
def test_a_tier_in_another_case_is_the_tier(api, make_backend, q1, spelt):
    """JSON mode has no enum: a model's "Great" was re-asked twice, then the grade failed."""
    reply = {**reply_for(q1, covered=GOOD), "tier": spelt}
    route = api.post("/chat/completions").mock(return_value=ok(reply))
    grade = run(make_backend(), q1)
    assert grade.tier.value == "great" and route.call_count == 1


def test_a_word_that_is_no_tier_is_still_refused(api, make_backend, q1):
    route = api.post("/chat/completions").mock(return_value=ok({**reply_for(q1, covered=GOOD), "tier": "excellent"}))
    with pytest.raises(GradingFailedError):
        run(make_backend(), q1)
    assert route.call_count == 3  # asked, then re-asked twice


@pytest.mark.parametrize(
    "message", ["Unknown error while applying response_format", "An unexpected error (json_schema)"]
)
def test_an_ordinary_500_naming_the_schema_is_no_refusal(api, make_backend, q1, waits, message):
    """'unknown' and 'expected' read as a validation refusal and moved the server to JSON mode for good."""
    route = api.post("/chat/completions").mock(
        side_effect=[httpx.Response(500, json={"error": {"message": message}}), ok(reply_for(q1, covered=GOOD))]
    )
    run(make_backend(memory=ServerMemory(None)), q1)
    assert [sent(route, i)["response_format"]["type"] for i in range(2)] == ["json_schema", "json_schema"]


def test_a_completion_budget_over_the_context_is_no_answer_too_long(api, make_backend, q1):
    """vLLM counts max_tokens in: a five-word answer failed as 'too long, shorten it', row after row."""
    message = (
        "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens (1000 in the "
        "messages, 4000 in the completion). Please reduce the length of the messages or completion."
    )
    api.post("/chat/completions").mock(return_value=httpx.Response(400, json={"error": {"message": message}}))
    with pytest.raises(BackendError, match="rejected the request \\(HTTP 400\\)"):
        run(make_backend(), q1)


def test_a_deadline_must_be_above_zero():
    with pytest.raises(ValueError, match="above 0, not 0"):
        RetryPolicy(deadline=0)
