"""Sampling from a trained run: reproducible draws, argmax, top-k and top-p, seeds."""

import numpy as np
import pytest

from charrnn import generation, snapshot
from charrnn.errors import SeedError


@pytest.fixture(scope="module")
def loaded(trained_run):
    net, vocab, _ = snapshot.network(trained_run)
    return net, vocab


def test_same_random_seed_gives_same_sample(loaded):
    net, vocab = loaded
    a = generation.sample_text(net, vocab, "the ", 200, temperature=1.0, num_samples=2, random_seed=7)
    b = generation.sample_text(net, vocab, "the ", 200, temperature=1.0, num_samples=2, random_seed=7)
    c = generation.sample_text(net, vocab, "the ", 200, temperature=1.0, num_samples=2, random_seed=8)
    assert a == b
    assert a != c
    assert all(text.startswith("the ") and len(text) == 204 for text in a)


def test_argmax_is_deterministic_whatever_the_random_seed(loaded):
    net, vocab = loaded
    a = generation.sample_text(net, vocab, "café", 100, temperature=0, random_seed=1)
    b = generation.sample_text(net, vocab, "café", 100, temperature=0, random_seed=2)
    c = generation.sample_text(net, vocab, "café", 100, temperature=0)
    assert a == b == c


def test_top_k_1_equals_argmax(loaded):
    net, vocab = loaded
    argmax = generation.sample_text(net, vocab, "a", 100, temperature=0)
    for random_seed in (0, 1, 2):
        assert generation.sample_text(net, vocab, "a", 100, temperature=1.5, top_k=1, random_seed=random_seed) == argmax


def test_argmax_follows_the_logits_step_by_step(loaded):
    net, vocab = loaded
    [text] = generation.sample_text(net, vocab, "the", 20, temperature=0)
    state = net.initial_state(1)
    for c in "the":
        logits, state = net.step(np.array([vocab.char_to_index[c]]), state)
    for c in text[3:]:
        assert vocab.index_to_char[int(np.argmax(logits[0]))] == c
        logits, state = net.step(np.array([vocab.char_to_index[c]]), state)


def test_no_seed_starts_after_a_newline_that_is_not_printed(loaded):
    net, vocab = loaded
    texts = generation.sample_text(net, vocab, "", 50, random_seed=0, num_samples=3)
    assert [len(t) for t in texts] == [50, 50, 50]
    primed = generation.sample_text(net, vocab, "\n", 50, temperature=0)[0]
    assert generation.sample_text(net, vocab, "", 50, temperature=0)[0] == primed[1:]


def test_seed_characters_never_seen_are_named(loaded):
    net, vocab = loaded
    with pytest.raises(SeedError) as caught:
        generation.sample_text(net, vocab, "the Zebra €", 10)
    message = str(caught.value)
    assert "'Z'" in message and "'€'" in message
    assert "'t'" not in message


def test_choose_restricts_to_top_k_and_top_p():
    rng = np.random.default_rng(0)
    logits = np.log(np.array([[0.5, 0.3, 0.15, 0.05]] * 4000))
    drawn = generation.choose(logits, 1.0, None, None, rng)
    assert set(drawn.tolist()) == {0, 1, 2, 3}
    assert set(generation.choose(logits, 1.0, 2, None, rng).tolist()) == {0, 1}
    # top-p 0.6: the smallest set of most likely tokens covering 60% is {0, 1}.
    assert set(generation.choose(logits, 1.0, None, 0.6, rng).tolist()) == {0, 1}
    assert set(generation.choose(logits, 1.0, None, 0.45, rng).tolist()) == {0}
    assert generation.choose(logits, 0, None, None, rng).tolist() == [0] * 4000


def test_low_temperature_sharpens():
    rng = np.random.default_rng(0)
    logits = np.log(np.array([[0.6, 0.4]] * 4000))
    hot = np.mean(generation.choose(logits, 1.0, None, None, rng) == 0)
    cold = np.mean(generation.choose(logits, 0.1, None, None, rng) == 0)
    assert 0.55 < hot < 0.65 and cold > 0.95


def test_the_noise_drawn_at_once_is_bounded_for_a_large_vocabulary():
    draw = generation.Chooser(1.0, rng=np.random.default_rng(0))
    logits = np.zeros((4, 100_000), np.float32)
    logits[:, 7] = 50.0  # so likely that every draw takes it
    assert (draw(logits) == 7).all()
    assert 2 * draw.noise.nbytes <= generation.Chooser.NOISE_BYTES  # drawn as float64, kept as float32
    small = generation.Chooser(1.0, rng=np.random.default_rng(0))
    small(np.zeros((1, 65), np.float32))
    assert small.noise.shape[0] == generation.Chooser.BLOCK  # a small vocabulary keeps whole blocks
