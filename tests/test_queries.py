"""Text queries on hand-made feature maps with a fake text encoder."""

from __future__ import annotations

import pytest
import torch

from ff3r_ns.core.queries import (
    CANONICAL_NEGATIVES,
    TextEncoder,
    TextQuery,
    encode_texts,
    relevancy,
    segment,
    segment_classes,
    select_gaussians,
)

# D = 5; query words on axes 0..2, the negatives share a direction of their own (axis 4) with a
# little of each class, unnormalised on purpose.
_VOCAB = {
    "chair": [2.0, 0.0, 0.0, 0.0, 0.0],
    "table": [0.0, 1.0, 0.0, 0.0, 0.0],
    "wall": [0.0, 0.0, 3.0, 0.0, 0.0],
    "object": [0.2, 0.2, 0.2, 0.0, 1.0],
    "things": [0.3, 0.1, 0.1, 0.0, 1.0],
    "stuff": [0.1, 0.3, 0.1, 0.0, 2.0],
    "texture": [0.1, 0.1, 0.3, 0.0, 1.0],
}


class FakeEncoder:
    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        self.calls.append(list(texts))
        return torch.tensor([_VOCAB[t] for t in texts])


def _unit(v: list[float]) -> torch.Tensor:
    t = torch.tensor(v)
    return t / t.norm()


def _feature_map() -> torch.Tensor:
    """``[4, 6, 5]``: chair-like on the left 3 columns, table-like on the right, scaled by 3."""
    f = torch.zeros(4, 6, 5)
    f[:, :3] = 3 * torch.tensor([1.0, 0.1, 0.0, 0.2, 0.0])
    f[:, 3:] = 3 * torch.tensor([0.1, 1.0, 0.0, -0.2, 0.0])
    return f


def test_fake_encoder_satisfies_protocol_and_one_call_per_query() -> None:
    enc = FakeEncoder()
    assert isinstance(enc, TextEncoder)
    q = TextQuery.encode(enc, "chair")
    assert enc.calls == [["chair", *CANONICAL_NEGATIVES]]
    torch.testing.assert_close(q.embedding, _unit(_VOCAB["chair"]))
    torch.testing.assert_close(q.negatives.norm(dim=-1), torch.ones(4))


def test_relevancy_matches_lerf_formula_and_picks_the_region() -> None:
    q = TextQuery.encode(FakeEncoder(), "chair", temperature=0.1)
    feats = _feature_map()
    rel = relevancy(feats, q)
    assert rel.shape == (4, 6)
    # LERF, written out: min over negatives of softmax([s_q, s_neg] / tau)[query]
    f = feats / feats.norm(dim=-1, keepdim=True)
    s_q = f @ q.embedding
    s_n = f @ q.negatives.T
    pairs = torch.stack([s_q[..., None].expand_as(s_n), s_n], dim=-1)
    expected = torch.softmax(pairs / 0.1, dim=-1)[..., 0].min(dim=-1).values
    torch.testing.assert_close(rel, expected, atol=1e-6, rtol=0)
    assert (rel[:, :3] > 0.9).all() and (rel[:, 3:] < 0.5).all()
    table = relevancy(feats, TextQuery.encode(FakeEncoder(), "table"))
    assert (table[:, 3:] > 0.9).all() and (table[:, :3] < 0.5).all()


def test_relevancy_channels_first_equals_channels_last() -> None:
    q = TextQuery.encode(FakeEncoder(), "table")
    feats = _feature_map()
    torch.testing.assert_close(relevancy(feats.permute(2, 0, 1), q, channel_dim=0), relevancy(feats, q))
    with pytest.raises(ValueError, match="does not match the text embedding width 5"):
        relevancy(feats.permute(2, 0, 1), q)  # forgot channel_dim


def test_segmentation_over_a_class_list() -> None:
    feats = _feature_map()
    feats[0, 0] = torch.tensor([0.0, 0.0, 0.5, 0.0, 0.1])  # one wall pixel
    labels = segment_classes(feats, FakeEncoder(), ["wall", "chair", "table"], label_offset=1)
    expected = torch.tensor([[2, 2, 2, 3, 3, 3]] * 4)
    expected[0, 0] = 1
    assert labels.dtype == torch.int64 and torch.equal(labels, expected)
    emb = encode_texts(FakeEncoder(), ["wall", "chair", "table"])
    assert torch.equal(segment(feats.permute(2, 0, 1), emb, channel_dim=0), expected - 1)


def test_select_gaussians() -> None:
    feats = torch.tensor(
        [
            [5.0, 0.0, 0.0, 0.0, 0.0],  # chair
            [0.0, 1.0, 0.0, 0.0, 0.0],  # table
            [1.0, 0.1, 0.0, 0.1, 0.0],  # chair-ish
            [0.1, 0.1, 0.1, 0.0, 1.0],  # "stuff": closer to the negatives
            [0.0, 0.0, 0.0, 1.0, 0.0],  # unrelated: orthogonal to everything, relevancy exactly 0.5
        ]
    )
    q = TextQuery.encode(FakeEncoder(), "chair")
    assert select_gaussians(feats, q, threshold=0.5).tolist() == [True, False, True, False, False]
    rel = relevancy(feats, q)
    assert rel[4].item() == pytest.approx(0.5)
    strict = select_gaussians(feats, q, threshold=float(rel[2]) + 1e-4)
    assert strict.tolist() == [True, False, False, False, False]
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        select_gaussians(feats[None], q)


def test_bad_encoder_output_is_reported() -> None:
    class Broken:
        def encode_text(self, texts: list[str]) -> torch.Tensor:
            return torch.zeros(len(texts) + 1, 5)

    with pytest.raises(ValueError, match=r"Broken.encode_text returned \(3, 5\), expected \[2, D\]"):
        encode_texts(Broken(), ["a", "b"])
    with pytest.raises(ValueError, match="at least one"):
        encode_texts(FakeEncoder(), [])
