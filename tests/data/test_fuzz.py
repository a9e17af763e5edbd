"""Fuzzing the readers (issue 23, done-when): random bytes in every file kind and random JSON
records through load_pairs / load_candidates / read_rows, and through the one message parser,
give a result or a LatentrmError with a one-line message, never another exception."""

from __future__ import annotations

import gzip
import json
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from latentrm.data import load_candidates, load_pairs
from latentrm.data.messages import as_prompt, as_response
from latentrm.data.readers import read_rows
from latentrm.errors import LatentrmError

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
KINDS = (".jsonl", ".json", ".csv", ".tsv", ".parquet", ".jsonl.gz", ".csv.gz")
# Keys the formats look for, so random records reach the parsers, not only the format check.
KEYS = (
    "prompt",
    "chosen",
    "rejected",
    "instruction",
    "candidates",
    "output",
    "gold",
    "role",
    "content",
    "info",
    "summaries",
    "choice",
    "text",
    "id",
    "response",
    "post",
    "type",
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=12),
    st.sampled_from(["\n\nHuman: q\n\nAssistant: a", "user", "assistant", "tool", " "]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(KEYS), inner, max_size=5)
    ),
    max_leaves=20,
)
records = st.dictionaries(st.sampled_from(KEYS), values, min_size=1, max_size=5)


def _one_line_or_result(fn: Any, *args: Any) -> None:
    try:
        fn(*args)
    except LatentrmError as e:
        assert "\n" not in str(e) and str(e), repr(e)


@FUZZ
@given(st.binary(max_size=400), st.sampled_from(KINDS))
def test_random_bytes_in_any_file_kind(data: bytes, kind: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"f{kind}"
        path.write_bytes(gzip.compress(data) if kind.endswith(".gz") else data)
        for read in (read_rows, load_pairs, load_candidates):
            _one_line_or_result(read, path)


@FUZZ
@given(st.lists(records, min_size=1, max_size=4), st.sampled_from([".jsonl", ".json", ".csv"]))
def test_random_json_records(recs: list[dict[str, Any]], kind: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"r{kind}"
        if kind == ".jsonl":
            path.write_text("".join(json.dumps(r) + "\n" for r in recs))
        elif kind == ".json":
            path.write_text(json.dumps(recs))
        else:
            import csv

            cols = sorted({k for r in recs for k in r})
            with open(path, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=cols)
                w.writeheader()
                for r in recs:
                    w.writerow(
                        {
                            k: json.dumps(v) if isinstance(v, (list, dict)) else v
                            for k, v in r.items()
                        }
                    )
        for read in (read_rows, load_pairs, load_candidates):
            _one_line_or_result(read, path)


@FUZZ
@given(values, values)
def test_random_values_through_the_message_parser(prompt: Any, reply: Any) -> None:
    def serve() -> None:
        as_response(reply, as_prompt(prompt, field="p"), field="r")

    _one_line_or_result(serve)
