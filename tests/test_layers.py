"""Layers, the layer manager and the layer registry, against hand-computed references."""

from __future__ import annotations

import numpy as np
import pytest

from layers import LAYERS, BaseLayer, LayerManager, MiddleLayer, OutputLayer, get_layer, register_layer
from layers.registry import make_layer


def make(prev=3, n=2, act="identity", wb_width=0.5, seed=0, **kw):
    return MiddleLayer(prev=prev, n=n, act=act, wb_width=wb_width, rng=np.random.default_rng(seed), **kw)


def test_initial_parameters_are_scaled_standard_normal_draws_w_first():
    layer = make(prev=4, n=3, wb_width=0.25, seed=42)
    rng = np.random.default_rng(42)
    z_w, z_b = rng.standard_normal((4, 3)), rng.standard_normal(3)
    np.testing.assert_array_equal(layer.w, 0.25 * z_w)
    np.testing.assert_array_equal(layer.b, 0.25 * z_b)
    assert layer.num_params == 15


def test_weights_scale_exactly_with_wb_width_for_the_same_draws():
    a, b = make(prev=50, n=40, wb_width=1.0, seed=1), make(prev=50, n=40, wb_width=0.01, seed=1)
    np.testing.assert_allclose(a.w / b.w, 100.0, rtol=1e-14)
    np.testing.assert_allclose(a.b / b.b, 100.0, rtol=1e-14)


def test_forward_on_a_hand_computed_case():
    layer = make(prev=2, n=2, act="ReLU")
    layer.w = np.array([[1.0, -2.0], [3.0, 0.5]])
    layer.b = np.array([0.5, -1.0])
    x = np.array([[1.0, 1.0], [-1.0, 2.0]])
    # u = [[1+3+0.5, -2+0.5-1], [-1+6+0.5, 2+1-1]] = [[4.5, -2.5], [5.5, 2]]
    np.testing.assert_array_equal(layer.forward(x), [[4.5, 0.0], [5.5, 2.0]])
    out = np.empty((2, 2))
    assert layer.forward(x, out=out) is out
    np.testing.assert_array_equal(layer.linear(x), [[4.5, -2.5], [5.5, 2.0]])


def test_float32_layers_keep_float32():
    layer = make(prev=5, n=4, act="tanh", dtype="float32")
    assert layer.w.dtype == np.float32 and layer.b.dtype == np.float32
    y = layer.forward(np.ones((3, 5), dtype=np.float32))
    assert y.dtype == np.float32


def test_input_copy_is_kept_only_when_asked():
    x = np.ones((2, 3))
    plain, keeping = make(), make(keep_input=True)
    plain.forward(x)
    keeping.forward(x)
    assert plain.x is None
    assert keeping.x is not x and np.array_equal(keeping.x, x)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"prev": 0}, "prev=0: expected a positive int"),
        ({"n": 2.5}, "n=2.5: expected a positive int"),
        ({"n": True}, "n=True: expected a positive int"),
        ({"wb_width": float("nan")}, "wb_width=nan"),
        ({"wb_width": 0.0}, "wb_width=0.0"),
        ({"dtype": "int8"}, "dtype='int8'"),
    ],
)
def test_bad_layer_arguments_are_named(kwargs, words):
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")):
        make(**kwargs)


def test_output_and_middle_layers_share_forward():
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    mid = MiddleLayer(prev=3, n=3, act="sigmoid", rng=rng_a)
    out = OutputLayer(prev=3, n=3, act="sigmoid", rng=rng_b)
    x = np.linspace(-1, 1, 9).reshape(3, 3)
    np.testing.assert_array_equal(mid.forward(x), out.forward(x))
    assert (mid.kind, out.kind) == ("middle", "output")


def stack(seed=0):
    rng = np.random.default_rng(seed)
    return LayerManager([
        MiddleLayer(prev=4, n=5, act="tanh", name="h1", rng=rng),
        MiddleLayer(prev=5, n=3, act="ReLU", name="h2", rng=rng),
        OutputLayer(prev=3, n=2, act="identity", name="out", rng=rng),
    ])


def test_layer_manager_access_by_index_and_name():
    net = stack()
    assert len(net) == 3 and net.names == ["h1", "h2", "out"]
    assert net[1] is net["h2"] and net[-1] is net["out"]
    assert [layer.name for layer in net] == ["h1", "h2", "out"]
    with pytest.raises(KeyError, match="no layer named 'h3'; layers: h1, h2, out"):
        net["h3"]
    assert net.num_params == (4 * 5 + 5) + (5 * 3 + 3) + (3 * 2 + 2)
    assert sorted(net.params()) == ["b0", "b1", "b2", "w0", "w1", "w2"]


def test_layer_manager_forward_equals_layers_applied_in_turn():
    net = stack()
    x = np.random.default_rng(9).standard_normal((7, 4))
    h = np.tanh(x @ net[0].w + net[0].b)
    h = np.maximum(h @ net[1].w + net[1].b, 0)
    expected = h @ net[2].w + net[2].b
    np.testing.assert_allclose(net.forward(x), expected, rtol=1e-13)
    # A smaller batch reuses the buffers and still gives the rows' own results.
    np.testing.assert_allclose(net.forward(x[:3]), expected[:3], rtol=1e-13)


def test_layer_manager_reports_u_when_asked():
    net = stack()
    x = np.random.default_rng(2).standard_normal((6, 4))
    seen = []
    net.forward(x, keep_u=True, observe=lambda i, u, y: seen.append((i, u.copy(), y.copy())))
    assert [i for i, _, _ in seen] == [0, 1, 2]
    np.testing.assert_allclose(seen[0][1], x @ net[0].w + net[0].b, rtol=1e-13)
    np.testing.assert_allclose(seen[0][2], np.tanh(seen[0][1]), rtol=1e-13)
    np.testing.assert_allclose(seen[1][2], np.maximum(seen[1][1], 0), rtol=0)


def test_forward_makes_no_per_layer_input_copy():
    net = stack()
    x = np.ones((8, 4))
    net.forward(x)
    first = [np.shares_memory(net._buffers[i], net.forward(x)) for i in range(3)]
    assert first == [False, False, True]
    assert all(layer.x is None for layer in net)


def test_layer_manager_rejects_a_broken_chain_and_duplicate_names():
    rng = np.random.default_rng(0)
    net = LayerManager([MiddleLayer(prev=4, n=5, name="a", rng=rng)])
    with pytest.raises(ValueError, match="layer 'b' has prev=4, which does not match layer 'a' n=5"):
        net.append(OutputLayer(prev=4, n=1, name="b", rng=rng))
    with pytest.raises(ValueError, match="layer name 'a' is used twice"):
        net.append(OutputLayer(prev=5, n=1, name="a", rng=rng))


def test_registry_register_lookup_and_unknown_name():
    assert get_layer("middle") is MiddleLayer and get_layer("output") is OutputLayer

    @register_layer(name="test_scaled")
    class Scaled(MiddleLayer):
        pass

    try:
        assert get_layer("test_scaled") is Scaled
        layer = make_layer("test_scaled", prev=2, n=2, act="identity", rng=np.random.default_rng(0))
        assert isinstance(layer, Scaled)
        with pytest.raises(ValueError, match="already registered"):
            register_layer(type("Other", (BaseLayer,), {}), name="test_scaled")
    finally:
        LAYERS.pop("test_scaled")
    with pytest.raises(ValueError) as err:
        get_layer("midle")
    assert str(err.value) == "unknown layer kind 'midle'; closest: middle; allowed: middle, output"


def _blas_threads() -> int:
    """Threads of the BLAS that NumPy calls. Others may be loaded later and stay as they are
    (numba's first compilation loads SciPy's own OpenBLAS, which the layers never call)."""
    import os

    from threadpoolctl import threadpool_info

    blas = [p for p in threadpool_info() if p["user_api"] == "blas"]
    numpy_dir = os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy")
    ours = [p for p in blas if p["filepath"].startswith(numpy_dir)]  # numpy/ or numpy.libs/
    return max(p["num_threads"] for p in (ours or blas))


def test_forward_holds_blas_at_one_thread_and_restores_it():
    # The layers' own pool runs the row blocks; BLAS threads inside them would oversubscribe.
    from threadpoolctl import threadpool_limits

    net = stack()
    x = np.random.default_rng(3).standard_normal((5, 4))
    seen = []
    with threadpool_limits(limits=2, user_api="blas"):
        net.forward(x, observe=lambda i, u, y: seen.append(_blas_threads()))
        after = _blas_threads()
    assert seen == [1, 1, 1]
    assert after == 2


def test_forward_does_not_depend_on_the_thread_count():
    from layers.activations import get_num_threads, set_num_threads

    rng = np.random.default_rng(4)
    net = LayerManager([MiddleLayer(prev=300, n=300, act="tanh", rng=rng),
                        OutputLayer(prev=300, n=7, act="softmax", rng=rng)])
    x = rng.standard_normal((3000, 300))  # several row blocks, each big enough for BLAS threads
    before = get_num_threads()
    try:
        set_num_threads(1)
        one = net.forward(x).copy()
        set_num_threads(2)
        two = net.forward(x).copy()
    finally:
        set_num_threads(before)
    assert one.tobytes() == two.tobytes()


@pytest.fixture
def two_threads():
    from layers.activations import get_num_threads, set_num_threads

    before = get_num_threads()
    set_num_threads(2)
    yield
    set_num_threads(before)


def chained_stack(dtype="float64"):
    # block_rows: 100 units -> 2048 rows, 300 -> 512, 7 -> 8192; so chains [0, 1], [2, 3], [4]
    rng = np.random.default_rng(5)
    widths = [20, 100, 100, 300, 300, 7]
    acts = ["tanh", "ReLU", "GELU", "softplus", "softmax"]
    return LayerManager([MiddleLayer(prev=a, n=b, act=act, rng=rng, dtype=dtype)
                         for a, b, act in zip(widths, widths[1:], acts)])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_chained_layers_give_the_bits_of_layers_applied_alone(dtype, two_threads):
    net = chained_stack(dtype)
    assert net._chains() == [[0, 1], [2, 3], [4]]
    x = np.random.default_rng(6).standard_normal((5000, 20)).astype(dtype)  # partial last blocks
    alone = x
    for layer in net:
        alone = layer.forward(alone)
    assert net.forward(x).tobytes() == alone.tobytes()


def test_chained_forward_reports_each_layer_once_in_order(two_threads):
    net = chained_stack()
    x = np.random.default_rng(7).standard_normal((9000, 20))
    seen = []
    net.forward(x, observe=lambda i, u, y: seen.append((i, u, y.copy())))
    assert [i for i, _, _ in seen] == [0, 1, 2, 3, 4]
    assert all(u is None for _, u, _ in seen)
    h = x
    for (_, _, y), layer in zip(seen, net):
        h = layer.forward(h)
        assert y.tobytes() == h.tobytes()


def test_a_layer_with_its_own_forward_runs_alone(two_threads):
    class Doubled(MiddleLayer):
        def forward(self, x, out=None):
            y = super().forward(x, out=out)
            y *= 2
            return y

    rng = np.random.default_rng(8)
    net = LayerManager([MiddleLayer(prev=3, n=4, act="identity", rng=rng),
                        Doubled(prev=4, n=4, act="identity", rng=rng),
                        MiddleLayer(prev=4, n=4, act="identity", rng=rng)])
    assert net._chains() == [[0], [1], [2]]
    x = np.random.default_rng(9).standard_normal((6, 3))
    h = x @ net[0].w + net[0].b
    h = 2 * (h @ net[1].w + net[1].b)
    np.testing.assert_allclose(net.forward(x), h @ net[2].w + net[2].b, rtol=1e-13)


def test_chained_layers_keep_their_inputs_when_asked():
    rng = np.random.default_rng(10)
    net = LayerManager([MiddleLayer(prev=3, n=4, act="tanh", rng=rng, keep_input=True),
                        MiddleLayer(prev=4, n=4, act="tanh", rng=rng, keep_input=True)])
    assert net._chains() == [[0, 1]]
    x = np.random.default_rng(11).standard_normal((5, 3))
    net.forward(x)
    np.testing.assert_array_equal(net[0].x, x)
    assert net[0].x is not x
    np.testing.assert_array_equal(net[1].x, net[0].forward(x))


def test_an_observer_may_run_a_network_itself(two_threads):
    # observe can be called on one of the layers' threads; a forward pass inside it runs its
    # blocks inline instead of waiting for the pool it is running on
    import threading

    net, inner = chained_stack(), chained_stack()
    x = np.random.default_rng(12).standard_normal((9000, 20))
    expected = inner.forward(x).copy()
    got = []
    runner = threading.Thread(
        target=lambda: net.forward(x, observe=lambda i, u, y: got.append(inner.forward(x).copy())),
        daemon=True)
    runner.start()
    runner.join(timeout=60)
    assert not runner.is_alive(), "forward deadlocked"
    assert len(got) == 5 and all(g.tobytes() == expected.tobytes() for g in got)


def test_forward_on_another_thread_holds_blas_at_one_thread_too():
    # threadpoolctl lets one thread at a time change OpenBLAS's thread count; a forward pass
    # started on any thread must still run its blocks on single-threaded BLAS, with the bits
    # of a pass on the main thread
    import threading

    rng = np.random.default_rng(13)
    net = LayerManager([MiddleLayer(prev=300, n=300, act="tanh", rng=rng)])
    x = rng.standard_normal((3000, 300))
    main = net.forward(x).copy()
    seen = {}

    def run():
        seen["y"] = net.forward(x, observe=lambda i, u, y: seen.setdefault("threads", _blas_threads())).copy()

    worker = threading.Thread(target=run)
    worker.start()
    worker.join()
    assert seen["threads"] == 1
    assert seen["y"].tobytes() == main.tobytes()
