"""The model's forward pass with a hand-written backward pass for the recurrences, for fast training.

`sequence_logits(model, cfg, x, training)` computes the same logits as `model(x, training=...)`
for the model of `charrnn.model.build_model`, from the model's own variables. What differs is how
TensorFlow differentiates it:

- The input projection of every timestep is one GEMM outside the loop (`X W + b`); for the first
  layer it is a row lookup in a (vocab, gates * units) table `E W + b`, whose gradient is one
  segment sum over the tokens instead of two GEMMs.
- Each recurrence is one `tf.custom_gradient` over the whole sequence. Its forward loop does only
  `h @ U` and the gate math, keeping the gate activations; its backward loop does only the
  pointwise derivatives and `dz @ U^T`, and `dU` is then one GEMM over all timesteps.

TensorFlow's own while-loop gradient instead does two small weight-gradient GEMMs per timestep
and accumulates them. Measured on a 2-core CPU, a whole train step is about twice as fast. The gate
layout (charrnn/cells.py) and math are Keras's (LSTM i f c o; GRU z r h with reset_after=True;
SimpleRNN tanh), so the weights are the Keras ones.
Tensors are time-major inside: (time, batch, features).
"""

import tensorflow as tf

from charrnn import cells


@tf.autograph.experimental.do_not_convert
def sequence_logits(model, cfg, x, training=False):
    """Logits (batch, time, vocab) for int tokens x (batch, time), as `model(x, training=training)`.

    Usable inside a `tf.function` (with or without jit_compile) under a `tf.GradientTape`: the
    gradients reach the model's trainable variables (the embedding's as a dense tensor). With
    cfg.dropout > 0 and training, the model's Dropout layers are applied, to time-major tensors
    (so the masks differ from Keras's, not their distribution).
    """
    return run_sequence(model, cfg, x, zero_state(cfg, tf.shape(x)[0]), training)[0]


@tf.autograph.experimental.do_not_convert
def run_sequence(model, cfg, x, state, training=False, scores=True):
    """(logits (batch, time, vocab), final state) for tokens x (batch, time) read from `state`;
    with `scores` False, the last layer's states (batch, time, units) instead of the logits.

    A state is (batch, *cells.state_shape(cfg)): per layer h, and for an LSTM h then c, in the
    rows cells.layer_rows gives. No gradient flows into the initial state: training with a
    carried state is truncated backpropagation, the state passed on as a constant.
    """
    state = tf.stop_gradient(state)
    h = tf.transpose(x)  # (time, batch) tokens, then (time, batch, units)
    final = []
    for i in range(cfg.layers):
        initial = [state[:, row] for row in cells.layer_rows(cfg, i)]
        h, last = _recurrent_layer(model, cfg, i, h, initial, training)
        final += last
        if cfg.dropout > 0 and training:
            h = _dropout(model.get_layer(f"dropout_{i}"), h)
    if not scores:
        return tf.transpose(h, [1, 0, 2]), tf.stop_gradient(tf.stack(final, axis=1))
    # (time, batch, vocab) -> (batch, time, vocab)
    logits = tf.transpose(model.get_layer("output")(h), [1, 0, 2])
    return logits, tf.stop_gradient(tf.stack(final, axis=1))


def zero_state(cfg, batch):
    """The zero state of `batch` streams: (batch, *cells.state_shape(cfg))."""
    return tf.zeros(tf.stack([batch, *cells.state_shape(cfg)]))


def _dropout(layer, h):
    """Inverted dropout at the rate of the Keras Dropout `layer`, with its seed generator.

    The mask is drawn with TensorFlow's stateless Philox generator: under XLA on a CPU, Keras's
    own dropout took 210 ms for a (100, 32, 256) tensor, Philox 0.4 ms.
    """
    keep = _kept(layer.seed_generator, layer.rate, tf.shape(h))
    return tf.where(keep, h / (1.0 - layer.rate), tf.zeros_like(h))


def _kept(seed_generator, rate, shape):
    """A boolean mask of `shape`, True (kept) with probability 1 - rate, drawn with Philox from the
    Keras `seed_generator` (advanced on every call)."""
    seed = seed_generator.next()  # (2,) int64
    return tf.random.stateless_uniform(shape, seed=seed, alg="philox") >= rate


def _recurrent_keep(cell, rate, h0):
    """() without recurrent dropout, else (keep,): the variational mask (batch, units) of one
    call, 0 or 1 / (1 - rate) per unit, the same at every step (Gal and Ghahramani 2016), drawn
    with the cell's seed generator. The fused recurrences apply it to the state that enters
    `h @ U` (one mask for all the gates; Keras's own cells draw one per gate)."""
    if not rate:
        return ()
    return (tf.where(_kept(cell.seed_generator, rate, tf.shape(h0)), 1.0 / (1.0 - rate), 0.0),)


def _recurrent_layer(model, cfg, i, inputs, initial, training=False):
    """Layer rnn_{i} over inputs (tokens (time, batch) for i = 0, else (time, batch, units)) from
    the `initial` state ([h] or [h, c], each (batch, units)). Returns (h_t for every t, final
    state)."""
    cell = model.get_layer(cells.layer_name(i)).cell
    keep = _recurrent_keep(cell, cfg.recurrent_dropout, initial[0]) if training else ()
    kernel, recurrent_kernel, bias = cell.kernel.value, cell.recurrent_kernel.value, cell.bias.value
    units = cfg.units
    if cfg.model == "lstm":
        # The c gate's columns doubled (exact in floating point), so that one sigmoid covers all
        # four gates: tanh(z) = 2 sigmoid(2 z) - 1.
        ones = tf.ones([units], kernel.dtype)
        scale = tf.concat([2 * ones if gate == "c" else ones for gate in cells.GATE_ORDER["lstm"]], 0)
        kernel, recurrent_kernel, bias = kernel * scale, recurrent_kernel * scale, bias * scale
    elif cfg.model == "gru":
        # The recurrent biases of z and r join the input bias; only h's stays in the loop.
        bias, recurrent_bias = cells.split_bias("gru", bias)
        h_columns = cells.gate_columns("gru", "h", units)
        bias = bias + tf.concat([recurrent_bias[: h_columns.start], tf.zeros([units], bias.dtype)], 0)
        recurrent_bias = recurrent_bias[h_columns]

    if i == 0:
        # Every character's input projection, computed once: (vocab, gates * units).
        table = tf.matmul(model.get_layer("embedding").embeddings.value, kernel) + bias
        projected = tf.gather(table, inputs)
    else:
        flat = tf.nn.bias_add(tf.matmul(tf.reshape(inputs, [-1, inputs.shape[-1]]), kernel), bias)
        projected = tf.reshape(flat, tf.concat([tf.shape(inputs)[:2], [kernel.shape[1]]], 0))
    # (time, batch, gates * units)

    if cfg.model == "lstm":
        hs, c = lstm_recurrence(projected, recurrent_kernel, *initial, *keep)
        return hs, [hs[-1], c]
    if cfg.model == "gru":
        hs = gru_recurrence(projected, recurrent_kernel, recurrent_bias, *initial, *keep)
    else:
        hs = rnn_recurrence(projected, recurrent_kernel, *initial, *keep)
    return hs, [hs[-1]]


def _loop(steps, body, state, num_outputs, reverse=False, final=False):
    """Runs `state, outputs = body(t, *state)` for t in range(steps), or reversed, and returns the
    outputs of every step as TensorArrays (the backward pass reads them without stacking), and
    with `final`, then the last state's values."""
    arrays = [tf.TensorArray(state[0].dtype, size=steps) for _ in range(num_outputs)]

    def step(i, *loop_vars):
        t = steps - 1 - i if reverse else i
        carried, arrays_in = loop_vars[: len(state)], loop_vars[len(state) :]
        new_state, values = body(t, *carried)
        return (i + 1, *new_state, *(a.write(t, v) for a, v in zip(arrays_in, values)))

    result = tf.while_loop(lambda i, *_: i < steps, step, (tf.constant(0), *state, *arrays))
    outputs = list(result[1 + len(state) :])
    return outputs + list(result[1 : 1 + len(state)]) if final else outputs


def _recurrent_grad(hs, dz, h0, keep=()):
    """sum over t of h_{t-1}^T dz_t (h_{-1} = h0, the initial state; each masked by `keep`, the
    recurrent dropout's (keep,) or ()) as one GEMM: (units, gates * units)."""
    h_prev = _masked(tf.concat([h0[None], hs[:-1]], 0), keep)
    flat_h = tf.reshape(h_prev, [-1, hs.shape[-1]])
    return tf.matmul(flat_h, tf.reshape(dz, [-1, dz.shape[-1]]), transpose_a=True)


def _masked(h, keep):
    """h times the recurrent dropout's mask, when `keep` holds one: the state as `h @ U` reads it."""
    return h * keep[0] if keep else h


def _no_grads(keep):
    return [tf.zeros_like(k) for k in keep]


@tf.autograph.experimental.do_not_convert
@tf.custom_gradient
def lstm_recurrence(projected, recurrent_kernel, h0, c0, *keep):
    """LSTM from the state h0, c0 (batch, units): projected (time, batch, 4 * units) holds
    x_t W + b per step, gates i f c o, with the c gate's columns of W, b and U doubled; `keep`,
    the recurrent dropout's mask or nothing. Returns (h_t (time, batch, units), the last c). The
    initial state gets no gradient."""
    steps = tf.shape(projected)[0]
    zeros = tf.zeros_like(h0)

    def forward(t, h, c):
        gates = tf.sigmoid(projected[t] + tf.matmul(_masked(h, keep), recurrent_kernel))
        i, f, g, o = tf.split(gates, 4, axis=1)
        c_prev, c = c, f * c + i * (2 * g - 1)
        tanh_c = tf.tanh(c)
        h = o * tanh_c
        return (h, c), (h, gates, tanh_c, c_prev)

    hs, gates, tanh_cs, c_prevs, _, c_last = _loop(steps, forward, (h0, c0), 4, final=True)
    hs = hs.stack()

    def grad(dhs, dc_last):  # dc_last: none flows back (the final state is passed on as a constant)
        # A transposed copy: TF's CPU MatMul with transpose_b is several times slower in a loop.
        recurrent_transposed = tf.transpose(recurrent_kernel)

        # All pointwise work stays in the loop, on (batch, units) tensors that fit in cache.
        def backward(t, dh_next, dc_next):
            dh = dhs[t] + dh_next
            gates_t, tanh_c = gates.read(t), tanh_cs.read(t)
            i, f, g, o = tf.split(gates_t, 4, axis=1)
            dc = dc_next + dh * o * (1 - tanh_c * tanh_c)
            # sigmoid'(z) = s (1 - s); the c gate is 2 sigmoid(z) - 1 of its doubled z.
            d_gates = tf.concat([dc * (2 * g - 1), dc * c_prevs.read(t), 2 * dc * i, dh * tanh_c], 1)
            dz = d_gates * gates_t * (1 - gates_t)
            return (_masked(tf.matmul(dz, recurrent_transposed), keep), dc * f), (dz,)

        (dz,) = _loop(steps, backward, (zeros, zeros), 1, reverse=True)
        dz = dz.stack()
        return dz, _recurrent_grad(hs, dz, h0, keep), zeros, zeros, *_no_grads(keep)

    return (hs, c_last), grad


@tf.autograph.experimental.do_not_convert
@tf.custom_gradient
def gru_recurrence(projected, recurrent_kernel, recurrent_bias, h0, *keep):
    """GRU (reset_after=True) from the state h0 (batch, units): projected (time, batch, 3 * units)
    holds x_t W + input bias + recurrent bias of z and r; recurrent_bias (units,) is h's; `keep`,
    the recurrent dropout's mask or nothing. Returns h_t, (time, batch, units). The initial state
    gets no gradient."""
    units = recurrent_kernel.shape[0]
    steps = tf.shape(projected)[0]
    zeros = tf.zeros_like(h0)

    def forward(t, h):
        x_t = projected[t]
        inner = tf.matmul(_masked(h, keep), recurrent_kernel)
        update_reset = tf.sigmoid(x_t[:, : 2 * units] + inner[:, : 2 * units])
        z, r = tf.split(update_reset, 2, axis=1)
        inner_h = inner[:, 2 * units :] + recurrent_bias
        candidate = tf.tanh(x_t[:, 2 * units :] + r * inner_h)
        h_prev, h = h, candidate + z * (h - candidate)
        return (h,), (h, update_reset, candidate, inner_h, h_prev)

    hs, update_resets, candidates, inner_hs, h_prevs = _loop(steps, forward, (h0,), 5)
    hs = hs.stack()

    def grad(dhs):
        recurrent_transposed = tf.transpose(recurrent_kernel)

        def backward(t, dh_next):
            dh = dhs[t] + dh_next
            z, r = tf.split(update_resets.read(t), 2, axis=1)
            candidate = candidates.read(t)
            d_candidate = dh * (1 - z) * (1 - candidate * candidate)
            d_update = dh * (h_prevs.read(t) - candidate) * z * (1 - z)
            d_reset = d_candidate * inner_hs.read(t) * r * (1 - r)
            d_inner = tf.concat([d_update, d_reset, d_candidate * r], 1)
            dh_prev = dh * z + _masked(tf.matmul(d_inner, recurrent_transposed), keep)
            return (dh_prev,), (tf.concat([d_update, d_reset, d_candidate], 1), d_inner)

        d_projected, d_inner = _loop(steps, backward, (zeros,), 2, reverse=True)
        d_projected, d_inner = d_projected.stack(), d_inner.stack()
        d_recurrent_bias = tf.reduce_sum(tf.reshape(d_inner, [-1, 3 * units]), 0)[2 * units :]
        return d_projected, _recurrent_grad(hs, d_inner, h0, keep), d_recurrent_bias, zeros, *_no_grads(keep)

    return hs, grad


@tf.autograph.experimental.do_not_convert
@tf.custom_gradient
def rnn_recurrence(projected, recurrent_kernel, h0, *keep):
    """SimpleRNN (tanh) from the state h0 (batch, units): projected (time, batch, units) holds
    x_t W + b; `keep`, the recurrent dropout's mask or nothing. Returns h_t, (time, batch, units).
    The initial state gets no gradient."""
    steps = tf.shape(projected)[0]
    zeros = tf.zeros_like(h0)

    def forward(t, h):
        h = tf.tanh(projected[t] + tf.matmul(_masked(h, keep), recurrent_kernel))
        return (h,), (h,)

    (hs,) = _loop(steps, forward, (h0,), 1)
    hs = hs.stack()

    def grad(dhs):
        recurrent_transposed = tf.transpose(recurrent_kernel)

        def backward(t, dh_next):
            h = hs[t]
            da = (dhs[t] + dh_next) * (1 - h * h)
            return (_masked(tf.matmul(da, recurrent_transposed), keep),), (da,)

        (da,) = _loop(steps, backward, (zeros,), 1, reverse=True)
        da = da.stack()
        return da, _recurrent_grad(hs, da, h0, keep), zeros, *_no_grads(keep)

    return hs, grad
