r"""A Keras model as a course model: pure functions of one flat parameter vector.

:func:`keras` wraps a function that builds a ``keras.Model`` (a small MLP,
softmax regression, ...) so that it runs through the same round as the
course's numpy models: parties send flat vectors, the server averages flat
vectors. :meth:`KerasModel.flatten` and :meth:`KerasModel.unflatten` go between
the flat :math:`\theta` and the Keras weights, layer after layer in the order of
``model.trainable_variables`` (for ``Dense`` layers: kernel, then bias, so
unlike the GLMs the intercepts come *last*).

The loss and its gradient are one compiled ``tf.function`` each, traced once
(every size ``None`` in the input signature): the weights are assigned from
:math:`\theta`, the loss is the mean of the Keras loss over the batch, and
``tf.GradientTape`` gives the gradient. TensorFlow is imported on first use,
never by ``import fl_helpers``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


class KerasModel:
    """A Keras model seen as ``init / predict / loss / gradient`` of a flat ``theta``.

    Parameters
    ----------
    model_fn : callable or keras.Model
        Builds the model (``model_fn()`` -> ``keras.Model``, with a known input
        shape); its initial weights are :meth:`init`'s.
    loss : str or callable
        A Keras loss, e.g. ``"mse"`` or ``"sparse_categorical_crossentropy"``.
        Prefer the name: a loss *object* computes in float32 even for float64 layers.
    """

    name = "keras"

    def __init__(self, model_fn: Callable, *, loss="mse"):
        if not callable(model_fn):
            raise TypeError(f"model_fn must be a keras.Model or a function returning one, "
                            f"got {type(model_fn).__name__}")
        if not (isinstance(loss, str) or callable(loss)):
            raise TypeError(f"loss must be a Keras loss name (e.g. 'mse') or callable, got {type(loss).__name__}")
        self.model_fn, self.loss_name = model_fn, loss
        self._built = None

    def __repr__(self) -> str:
        name = getattr(self.model_fn, "__name__", type(self.model_fn).__name__)
        return f"models.keras({name}, loss={self.loss_name!r})"

    # --- the Keras side, built once ---------------------------------------------------

    @property
    def model(self):
        """The ``keras.Model`` (built on first use; its weights are scratch space)."""
        return self._state()["model"]

    def _state(self) -> dict:
        if self._built is None:
            self._built = _build(self.model_fn, self.loss_name)
        return self._built

    @property
    def dtype(self) -> np.dtype:
        """The dtype the model computes in (float32 unless its layers say float64)."""
        return np.dtype(self._state()["dtype"].as_numpy_dtype)

    def flatten(self, weights) -> np.ndarray:
        """One float64 vector of the weights (``model.trainable_variables`` order)."""
        return np.concatenate([np.ravel(np.asarray(w)) for w in weights]).astype(np.float64)

    def unflatten(self, theta) -> list[np.ndarray]:
        """Cut ``theta`` into arrays shaped and typed like the model's weights."""
        out, start = [], 0
        for shape, size in zip(self._state()["shapes"], self._state()["sizes"], strict=True):
            out.append(np.asarray(theta[start:start + size], dtype=self.dtype).reshape(shape))
            start += size
        return out

    # --- the model interface ------------------------------------------------------------

    def n_params(self, n_features: int | None = None, *, n_classes=None) -> int:
        """Number of trainable numbers in the model."""
        return int(sum(self._state()["sizes"]))

    def expected_params(self, n_features: int, n_given: int) -> int:
        return self.n_params()

    def layout(self, n_features: int) -> str:
        return ", the Keras model's trainable weights layer after layer"

    def init(self, n_features: int | None = None, *, n_classes=None, seed=None) -> np.ndarray:
        """The weights ``model_fn`` built, flattened (``seed`` is the initialisers' business)."""
        return self._state()["initial"].copy()

    def predict(self, theta, X) -> np.ndarray:
        """The model's output at ``theta``."""
        s = self._state()
        return s["predict"](s["tf"].constant(theta, s["dtype"]), s["tf"].constant(X, s["dtype"])).numpy()

    def classify(self, theta, X) -> np.ndarray:
        """Predicted labels: the most probable class of a K-output model, output > 1/2 for one output."""
        out = np.asarray(self.predict(theta, X))
        if out.ndim == 2 and out.shape[1] > 1:
            return out.argmax(axis=1)
        return (out.reshape(len(out)) > 0.5).astype(np.int64)

    def loss(self, theta, X, y) -> float:
        """Mean Keras loss over ``(X, y)`` at ``theta``."""
        s = self._state()
        tf = s["tf"]
        return float(s["loss"](tf.constant(theta, s["dtype"]), tf.constant(X, s["dtype"]),
                               tf.constant(y, s["dtype"])))

    def loss_and_gradient(self, theta, X, y, *, want_loss: bool = True):
        """``(loss, gradient)``, as :meth:`loss` and :meth:`gradient` (the loss ``None`` if not wanted)."""
        return (self.loss(theta, X, y) if want_loss else None), self.gradient(theta, X, y)

    def gradient(self, theta, X, y) -> np.ndarray:
        """Gradient of :meth:`loss` with respect to ``theta`` (``tf.GradientTape``), as float64."""
        s = self._state()
        tf = s["tf"]
        g = s["gradient"](tf.constant(theta, s["dtype"]), tf.constant(X, s["dtype"]), tf.constant(y, s["dtype"]))
        return g.numpy().astype(np.float64)


def keras(model_fn: Callable, *, loss="mse") -> KerasModel:
    """Wrap a Keras model builder as a course model: ``Party(X, y, model=models.keras(build, loss=...))``."""
    return KerasModel(model_fn, loss=loss)


def _build(model_fn, loss) -> dict:
    from ..tf_env import import_keras, import_tensorflow

    tf, keras = import_tensorflow(), import_keras()
    model = model_fn if isinstance(model_fn, keras.Model) else model_fn()
    if not isinstance(model, keras.Model):
        raise TypeError(f"model_fn must return a keras.Model, got {type(model).__name__}")
    if model.non_trainable_variables:
        raise ValueError("models.keras supports models whose weights are all trainable, got "
                         f"{len(model.non_trainable_variables)} non-trainable variable(s)")
    per_sample = keras.losses.get(loss) if isinstance(loss, str) else loss
    variables = list(model.trainable_variables)
    shapes = [tuple(v.shape) for v in variables]
    sizes = [int(np.prod(s)) for s in shapes]
    dtype = tf.as_dtype(variables[0].dtype)
    vector, matrix = tf.TensorSpec([None], dtype), tf.TensorSpec([None, None], dtype)

    def assign(theta):
        for v, piece, shape in zip(variables, tf.split(theta, sizes), shapes, strict=True):
            v.assign(tf.reshape(piece, shape))

    def mean_loss(X, y):
        out = model(X, training=True)
        if out.shape[-1] == 1:                 # one output: labels (m,) as a column, like the outputs (m, 1)
            y = tf.reshape(y, [-1, 1])
        return tf.reduce_mean(per_sample(y, out))

    @tf.function(input_signature=[vector, matrix])
    def predict(theta, X):
        assign(theta)
        return model(X, training=False)

    @tf.function(input_signature=[vector, matrix, vector])
    def loss_fn(theta, X, y):
        assign(theta)
        return mean_loss(X, y)

    @tf.function(input_signature=[vector, matrix, vector])
    def gradient(theta, X, y):
        assign(theta)
        with tf.GradientTape() as tape:
            value = mean_loss(X, y)
        grads = tape.gradient(value, variables)
        return tf.concat([tf.reshape(g, [-1]) for g in grads], axis=0)

    initial = np.concatenate([np.ravel(v.numpy()) for v in variables]).astype(np.float64)
    return dict(tf=tf, model=model, dtype=dtype, shapes=shapes, sizes=sizes, initial=initial,
                predict=predict, loss=loss_fn, gradient=gradient)
