"""Text queries on hand-made feature maps with a fake text encoder."""

from __future__ import annotations

import itertools

import pytest
import torch

from ff3r_ns.core.queries import (
    CANONICAL_NEGATIVES,
    TextEncoder,
    TextQuery,
    encode_texts,
    expressible,
    relevancy,
    segment,
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
    emb = encode_texts(FakeEncoder(), ["wall", "chair", "table"])
    labels = segment(feats, emb, label_offset=1)
    expected = torch.tensor([[2, 2, 2, 3, 3, 3]] * 4)
    expected[0, 0] = 1
    assert labels.dtype == torch.int64 and torch.equal(labels, expected)
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


def _biased_decoder() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """D = 4, a linear decoder F = 2 whose span holds class 0 fully and only 0.4 of class 1.

    Returns ``(weight [4, 2], e0 [4], e1 [4])``; the span is ``{e0, u}`` with ``u = 0.4 e1 + sqrt(0.84) e2``.
    """
    e = torch.eye(4)
    u = 0.4 * e[1] + 0.84**0.5 * e[2]
    weight = torch.stack([2.0 * e[0] + u, -u], dim=1)  # any basis of the span, not orthonormal on purpose
    return weight, e[0], e[1]


def test_expressible_is_the_projection_onto_the_decoder_span() -> None:
    g = torch.Generator().manual_seed(0)
    weight, bias = torch.randn(16, 8, generator=g), torch.randn(16, generator=g)
    emb = torch.randn(5, 16, generator=g)
    basis = torch.cat([weight, bias[:, None]], dim=1).double()
    reference = torch.nn.functional.normalize((basis @ torch.linalg.pinv(basis) @ emb.double().T).T, dim=-1)
    out = expressible(emb, weight, bias)
    torch.testing.assert_close(out.double(), reference, atol=1e-6, rtol=0)
    # Projected embeddings lie in the span, and features there score cos(x, e) / |P e| against them.
    x = torch.randn(7, 8, generator=g) @ weight.T + bias
    p_norm = (basis @ torch.linalg.pinv(basis) @ emb.double().T).T.norm(dim=-1) / emb.double().norm(dim=-1)
    raw = torch.nn.functional.normalize(x.double(), dim=-1) @ torch.nn.functional.normalize(emb.double(), dim=-1).T
    torch.testing.assert_close(torch.nn.functional.normalize(x.double(), dim=-1) @ out.double().T, raw / p_norm, atol=1e-6, rtol=0)
    # A decoder that spans the whole space changes nothing but the norm.
    full = torch.randn(16, 16, generator=g)
    torch.testing.assert_close(expressible(emb, full), torch.nn.functional.normalize(emb, dim=-1), atol=1e-5, rtol=0)


def test_expressible_readout_undoes_a_decoders_bias_at_mixed_pixels() -> None:
    """A pixel that is mostly class 1 decodes to the projection of its mixed target; the raw cosine readout gives
    it to class 0 (which the decoder represents better), the expressible one to class 1."""
    weight, e0, e1 = _biased_decoder()
    span = torch.linalg.qr(weight)[0]
    classes = torch.stack([e0, e1])
    for c in (0.75, 0.8, 0.85):  # share of class 1: raw readout switches at 0.862, expressible at 0.714
        decoded = span @ (span.T @ ((1 - c) * e0 + c * e1))  # what a decoder trained on the mixture produces
        assert int(segment(decoded, classes)) == 0
        assert int(segment(decoded, expressible(classes, weight))) == 1
    # Pure pixels are right either way.
    for k, e in enumerate((e0, e1)):
        assert int(segment(span @ (span.T @ e), expressible(classes, weight))) == k


def test_the_viewers_readout_segments_and_queries_against_expressible_embeddings() -> None:
    """SemanticReadout (segmentation image, relevancy) reads a mostly-class-1 pixel as class 1 through a biased
    decoder, where the raw cosine readout would give it to class 0."""
    from ff3r_ns.core.semantics import SemanticReadout

    weight, e0, e1 = _biased_decoder()
    readout = SemanticReadout(2, 4, ["unlabeled", "chair", "table"])
    with torch.no_grad():
        readout.decoder.proj.weight.copy_(weight)
        readout.decoder.proj.bias.zero_()
        readout.class_embeddings.copy_(torch.stack([torch.zeros(4), e0, e1]))
    mixed = 0.2 * e0 + 0.8 * e1
    f = torch.linalg.lstsq(weight, mixed[:, None]).solution[:, 0]  # the feature whose decoding is closest to it
    assert int(segment(readout.decode(f), readout.class_embeddings[1:], label_offset=1)) == 1  # raw: class 0 + 1
    assert int(readout.segment(f)) == 2
    assert float(readout.relevancy(f, "table")) > 0.5 > float(readout.relevancy(f, "chair"))


def test_expressible_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="weight"):
        expressible(torch.randn(3, 16), torch.randn(8, 16))


def test_segment_labels_and_class_query_match_a_slow_reference() -> None:
    """The one semantic readout against a pixel-by-pixel loop: each feature gets the scored class (id >= 1) of
    largest cosine, never the ignore class 0 even where it is the closest; a class query's negatives are exactly
    the other scored classes."""
    from ff3r_ns.core.semantics import class_query, segment_labels

    g = torch.Generator().manual_seed(3)
    emb = torch.nn.functional.normalize(torch.randn(5, 6, generator=g), dim=-1)
    feats = torch.randn(4, 3, 6, generator=g)
    feats[0, 0] = emb[0] * 2.0  # closest to the ignore class: must still get a scored class
    got = segment_labels(feats, emb)
    for idx in itertools.product(range(4), range(3)):
        f = feats[idx]
        sims = [float(f @ emb[c] / f.norm()) for c in range(1, 5)]
        assert int(got[idx]) == 1 + max(range(4), key=lambda c: sims[c]), idx
    assert int(got[0, 0]) != 0 and got.min() >= 1
    classes = ["void", "wall", "chair", "table", "sofa"]
    q = class_query("chairs", classes, emb)
    assert q is not None and torch.equal(q.embedding, emb[2]) and torch.equal(q.negatives, emb[[1, 3, 4]])
    assert class_query("lamp", classes, emb) is None
    with pytest.raises(ValueError, match="another class"):
        class_query("wall", ["void", "wall"], emb[:2])
