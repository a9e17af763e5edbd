"""The token budget: left-cut truncation and batching (latentrm.embed.batching)."""

from latentrm.embed.batching import make_batches, truncate_ids


def test_truncate_ids_keeps_response_and_frame():
    ids = list(range(10))  # 0 = BOS (head), 1..5 prompt, 6..8 response, 9 = SEP (tail)
    assert truncate_ids(ids, 6, 10, 1, 1) == ids  # fits: untouched
    # 7 tokens: head + tail + all 3 response tokens leave room for the 2 prompt tokens nearest them
    assert truncate_ids(ids, 6, 7, 1, 1) == [0, 4, 5, 6, 7, 8, 9]
    assert truncate_ids(ids, 6, 5, 1, 1) == [0, 6, 7, 8, 9]  # exactly the response
    assert truncate_ids(ids, 6, 4, 1, 1) == [0, 6, 7, 9]  # response too long: keep its start
    assert truncate_ids(ids, 6, 2, 1, 1) == [6, 7]  # no room for the frame: response first
    assert truncate_ids(ids, 6, 4) == [6, 7, 8, 9]  # no frame: the last 4 are all response


def test_make_batches_longest_first_and_token_cap():
    lengths = [5, 1, 9, 3, 7]
    assert make_batches(lengths, 2, 100) == [[2, 4], [0, 3], [1]]
    # cap 15 padded tokens: 9+9 > 15 so 9 sits alone; 7*2 = 14 fits; 3*2 = 6 fits
    assert make_batches(lengths, 4, 15) == [[2], [4, 0], [3, 1]]
    assert make_batches([50], 4, 15) == [[0]]  # an over-long text still gets a batch
