#!/usr/bin/env python3
"""Proves ckptbridge.jax.restore with the real libraries (issue #17, "Must show" (a)).

On 8 virtual CPU devices (a 2x4 mesh, NamedShardings on every array that divides), from the
bundled MaxText-style fixture (tests/data/fixtures/maxtext_linen_nnx):
  1. Linen full training state -> the NNX abstract state {model, optimizer}: each array's
     sharding == the target's; values == Orbax's own restore of the fixture's expected NNX
     checkpoint (nnx_expected_pure: the Linen values in NNX layout, RNG filled as MaxText
     does); two training steps with nnx.Optimizer: losses == the Linen run's continued losses.
  2. Linen params-only -> the NNX model state {model}: shardings; weights == Orbax's restore
     of the Linen params; RNG leaves == the expected NNX checkpoint's; the loss on a batch
     == the Linen model's loss with Orbax-restored params.
  3. NNX (raw State) -> a Linen TrainState-shaped dict {step, params, opt_state}: shardings;
     values == Orbax's restore of the original Linen checkpoint; two apply_gradients steps:
     losses == the continued losses.
Training runs on one device (the restored values gathered there) so that the float sums are
those of the Linen run; the shardings are checked on the restored arrays themselves.
Usage: XLA_FLAGS=--xla_force_host_platform_device_count=8 verify_jax_restore.py FIXTURE_DIR
"""
import json
import os
import sys

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
import orbax.checkpoint as ocp  # noqa: E402
from flax import nnx  # noqa: E402
from flax.training import train_state  # noqa: E402
from jax.sharding import NamedSharding, PartitionSpec as P  # noqa: E402

import ckptbridge  # noqa: E402
import ckptbridge.jax  # noqa: E402

FAILS = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        FAILS.append(what)


def main():
    fixture = os.path.abspath(sys.argv[1])
    info = json.load(open(f"{fixture}/model.json"))
    cfg, steps, seed, want = info["config"], info["steps"], info["batches_seed"], info["continued_losses"]
    sys.path.insert(0, os.path.join(fixture, "..", "gen"))
    from make_fixtures import linen_model
    model = linen_model(cfg)
    rng = np.random.default_rng(seed)
    tokens = jnp.asarray(rng.integers(0, cfg["vocab"], (4, 6)), jnp.int32)
    batches = [jnp.asarray(rng.integers(0, cfg["vocab"], (4, 6)), jnp.int32) for _ in range(steps + 2)]
    tx = lambda: optax.adamw(optax.linear_schedule(1e-2, 1e-3, 10), weight_decay=0.01)  # noqa: E731
    variables = model.init(jax.random.key(seed), tokens)
    devices = jax.devices()
    check(len(devices) == 8, f"{len(devices)} devices ({devices[0].platform})")
    mesh = jax.sharding.Mesh(np.array(devices).reshape(2, 4), ("x", "y"))
    one = jax.sharding.SingleDeviceSharding(devices[0])

    def spec_for(shape):  # shard the first axis over x and the second over y where they divide
        s = [None] * len(shape)
        if len(shape) >= 1 and shape[0] % 2 == 0:
            s[0] = "x"
        if len(shape) >= 2 and shape[1] % 4 == 0:
            s[1] = "y"
        return P(*s)

    def abstract(tree):
        def leaf(x):
            if isinstance(x, (int, float)) and not hasattr(x, "shape"):
                return x
            return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=NamedSharding(mesh, spec_for(x.shape)))
        return jax.tree.map(leaf, tree)

    def name(k):  # Orbax restores int dict keys as strings: compare paths as text
        return str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k))))

    def leaves(tree):
        return {"/".join(name(k) for k in p): v for p, v in jax.tree_util.tree_leaves_with_path(tree)}

    def host(x):
        if hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
            x = jax.random.key_data(x)
        return np.asarray(x)

    def same_values(got, ref, what):
        g, r = leaves(got), leaves(ref)
        common = set(g) & set(r)
        bad = [k for k in sorted(common) if not np.array_equal(host(g[k]), host(r[k]))
               or host(g[k]).dtype != host(r[k]).dtype]
        check(set(g) == set(r) and not bad, f"{what}: {len(common)} leaves equal to Orbax's restore"
              + (f" (only in ours: {sorted(set(g) - set(r))[:5]}, only in Orbax's: {sorted(set(r) - set(g))[:5]})"
                 if set(g) != set(r) else "") + (f"; differ: {bad[:5]}" if bad else ""))

    def same_shardings(got, target, what):
        g, t = leaves(got), leaves(target)
        bad = [k for k, v in t.items() if hasattr(v, "sharding") and getattr(g[k], "sharding", None) != v.sharding]
        sharded = sum(1 for v in t.values() if hasattr(v, "sharding") and any(v.sharding.spec))
        check(not bad, f"{what}: every array's sharding equals the target's ({sharded} of {len(t)} split over the mesh)"
              + (f"; differ: {bad[:5]}" if bad else ""))

    def to_one(tree):
        return jax.tree.map(lambda x: jax.device_put(x, one) if isinstance(x, jax.Array) else x, tree)

    def orbax(path):
        return ocp.Checkpointer(ocp.PyTreeCheckpointHandler()).restore(path)

    def loss_fn(params, toks):
        logits = model.apply(params, toks[:, :-1])
        return optax.softmax_cross_entropy_with_integer_labels(logits, toks[:, 1:]).mean()

    class Node(nnx.Module):
        pass

    def build(tree):
        n = Node()
        for k, v in tree.items():
            setattr(n, k, build(v) if isinstance(v, dict) else nnx.Param(jnp.asarray(v)))
        return n

    def nnx_model_opt():
        m = build(jax.tree.map(np.asarray, variables["params"]))
        m.rngs = nnx.Rngs(params=1, dropout=2)
        m.decoder.dropout = nnx.Dropout(0.1, rngs=nnx.Rngs(dropout=3))
        return m, nnx.Optimizer(m, tx(), wrt=nnx.Param)

    linen_full = f"{fixture}/linen_full/{steps}/items"
    linen_params = f"{fixture}/linen_params/0/items"
    nnx_raw = f"{fixture}/nnx_expected_raw/{steps}/items"
    nnx_pure = f"{fixture}/nnx_expected_pure/{steps}/items"
    print(f"jax {jax.__version__}, flax {__import__('flax').__version__}, optax {optax.__version__}, "
          f"orbax-checkpoint {ocp.__version__}, ckptbridge {ckptbridge.__version__}")
    print(f"Linen run's continued losses (model.json): {want}")

    # 1. Linen full state -> NNX {model, optimizer}
    m, opt = nnx_model_opt()
    target = abstract({"model": nnx.to_pure_dict(nnx.state(m)), "optimizer": nnx.to_pure_dict(nnx.state(opt))})
    got, rep = ckptbridge.jax.restore(linen_full, target, return_report=True)
    print("  engine notes:", rep["notes"])
    same_shardings(got, target, "linen full -> nnx")
    same_values(got, orbax(nnx_pure), "linen full -> nnx")
    got = to_one(got)
    ms, os_ = nnx.state(m), nnx.state(opt)
    nnx.replace_by_pure_dict(ms, got["model"])
    nnx.replace_by_pure_dict(os_, got["optimizer"])
    nnx.update(m, ms)
    nnx.update(opt, os_)
    losses = []
    for b in batches[steps:]:
        params = {"params": nnx.to_pure_dict(nnx.state(m, nnx.Param))}
        loss, g = jax.value_and_grad(loss_fn)(params, b)
        losses.append(float(loss))
        grads = nnx.state(m, nnx.Param)
        nnx.replace_by_pure_dict(grads, g["params"])
        opt.update(m, grads)
    check(losses == want, f"linen full -> nnx: two nnx.Optimizer steps: losses {losses} == {want}")
    check(int(opt.step.get_value()) == steps + 2, f"linen full -> nnx: step after two updates = {int(opt.step.get_value())}")

    # 1b. the same target given as an nnx.State comes back as an nnx.State
    m2, opt2 = nnx_model_opt()
    st = nnx.state(m2)
    st_abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=NamedSharding(mesh, spec_for(x.shape))), st)
    got_state = ckptbridge.jax.restore(linen_params, {"model": st_abstract})["model"]
    check(isinstance(got_state, nnx.State), f"nnx.State target restored as {type(got_state).__name__}")

    # 2. Linen params-only -> NNX {model}
    m, _ = nnx_model_opt()
    target = abstract({"model": nnx.to_pure_dict(nnx.state(m))})
    got, rep = ckptbridge.jax.restore(linen_params, target, return_report=True)
    print("  engine notes:", rep["notes"])
    same_shardings(got, target, "linen params -> nnx model")
    ref = orbax(linen_params)
    ref_model = dict(ref["params"]["params"])
    exp = orbax(nnx_pure)["model"]
    for k, v in exp.items():  # RNG state: what the expected NNX checkpoint holds
        if k not in ref_model:
            ref_model[k] = v
    for k, v in exp.get("decoder", {}).items():
        if k not in ref_model.get("decoder", {}):
            ref_model["decoder"][k] = v
    same_values(got, {"model": ref_model}, "linen params -> nnx model")
    got = to_one(got)
    ms = nnx.state(m)
    nnx.replace_by_pure_dict(ms, got["model"])
    nnx.update(m, ms)
    ours = float(loss_fn({"params": nnx.to_pure_dict(nnx.state(m, nnx.Param))}, batches[0]))
    theirs = float(loss_fn({"params": ref["params"]["params"]}, batches[0]))
    check(ours == theirs, f"linen params -> nnx model: loss {ours} == Linen model with Orbax-restored params {theirs}")

    # 3. NNX raw State -> Linen TrainState dict
    state = train_state.TrainState.create(apply_fn=model.apply, params=variables, tx=tx())
    target = abstract({"step": 0, "params": state.params, "opt_state": state.opt_state})
    got, rep = ckptbridge.jax.restore(nnx_raw, target, return_report=True)
    print("  engine notes:", rep["notes"])
    same_shardings(got, target, "nnx -> linen TrainState")
    ref = orbax(linen_full)
    same_values({"params": got["params"], "opt_state": got["opt_state"]},
                {"params": ref["params"], "opt_state": ref["opt_state"]}, "nnx -> linen TrainState")
    check(int(got["step"]) == int(ref["step"]), f"nnx -> linen: step {got['step']} == {ref['step']}")
    got = to_one(got)
    state = state.replace(step=got["step"], params=got["params"], opt_state=got["opt_state"])
    losses = []
    for b in batches[steps:]:
        loss, g = jax.value_and_grad(loss_fn)(state.params, b)
        losses.append(float(loss))
        state = state.apply_gradients(grads=g)
    check(losses == want, f"nnx -> linen TrainState: two apply_gradients steps: losses {losses} == {want}")

    # strictness: a target leaf the checkpoint lacks is named; partial=True restores the rest
    target = abstract({"model": {**nnx.to_pure_dict(nnx.state(m)), "extra": jnp.zeros((4,), jnp.float32)}})
    try:
        ckptbridge.jax.restore(linen_params, target)
        check(False, "strict restore with an extra target leaf raised")
    except ckptbridge.MappingError as e:
        check(any("model/extra" in p for p in e.problems), f"strict: MappingError names model/extra ({len(e.problems)} problem(s))")
    got, rep = ckptbridge.jax.restore(linen_params, target, partial=True, return_report=True)
    check(isinstance(got["model"]["extra"], jax.ShapeDtypeStruct) and rep["missing"] + rep["problems"],
          f"partial: model/extra left as given; listed: {rep['missing'] or rep['problems'][:2]}")
    print("ALL OK" if not FAILS else f"{len(FAILS)} FAILED")
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
