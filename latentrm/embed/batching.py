"""The token budget of embedding: cut a text to `max_length` tokens from the prompt's left, and
group texts into batches that pad little.

Pure functions on token ids and lengths (no model): :class:`latentrm.embed.embedder.Embedder`
uses them, and the exported custom code (`hub/modeling_latentrm.py`) repeats `truncate_ids`.
"""

from __future__ import annotations

from collections.abc import Sequence


def truncate_ids(
    ids: Sequence[int], resp_start: int, max_length: int, n_head: int = 0, n_tail: int = 0
) -> list[int]:
    """Cut `ids` to `max_length` tokens, giving up prompt tokens before response tokens.

    ids = head (n_head leading special tokens, e.g. BOS/CLS) + prompt + response + tail (n_tail
    trailing special tokens, e.g. SEP); the response starts at index `resp_start`. Head and tail are
    always kept. Prompt tokens are dropped from the left (the turns nearest the response survive);
    only when the response alone does not fit is it cut, keeping its first tokens.
    """
    n = len(ids)
    if n <= max_length:
        return list(ids)
    if n_head + n_tail >= max_length:  # no room for any text: the frame goes first
        n_head = n_tail = 0
    start = max(resp_start, n_head)
    head, tail = list(ids[:n_head]), list(ids[n - n_tail :]) if n_tail else []
    prompt, resp = list(ids[n_head:start]), list(ids[start : n - n_tail])
    room = max_length - n_head - n_tail
    if len(resp) >= room:
        return head + resp[:room] + tail
    keep = room - len(resp)
    return head + prompt[len(prompt) - keep :] + resp + tail


def make_batches(lengths: Sequence[int], batch_size: int, max_batch_tokens: int) -> list[list[int]]:
    """Indices grouped longest-first so each batch pads little and holds <= max_batch_tokens padded
    tokens (a single over-long text still gets its own batch)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    cur: list[int] = []
    for i in order:
        # order is descending, so cur[0] is the longest text and sets the padded width
        if cur and (len(cur) >= batch_size or (len(cur) + 1) * lengths[cur[0]] > max_batch_tokens):
            batches.append(cur)
            cur = []
        cur.append(i)
    if cur:
        batches.append(cur)
    return batches
