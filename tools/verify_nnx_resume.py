#!/usr/bin/env python3
"""Proves that the real libraries accept `ckptbridge adapt` output and that training resumes
bit for bit (issue: Flax Linen <-> NNX).

Needs jax, flax, optax, orbax-checkpoint. Usage:
  verify_nnx_resume.py FIXTURE_DIR NNX_RAW NNX_PURE LINEN
FIXTURE_DIR is tests/data/fixtures/maxtext_linen_nnx (model.json: config, seed, the Linen run's
continued losses); NNX_RAW / NNX_PURE are `adapt linen_full --layout nnx [--pure]` outputs and
LINEN an `adapt nnx_expected_raw --layout linen` output (Orbax item directories).

For each: Orbax restores it into the abstract state of the model (raw nnx.State, pure dict,
or flax TrainState), two more training steps run on the same batches the fixture's Linen run
used, and the losses are compared with model.json's continued_losses with ==.
The model is the fixture generator's MaxText-named Linen decoder (nn.scan, params on axis 1,
imported from tests/data/fixtures/gen/make_fixtures.py so it is the very same); the NNX
side is a module tree of nnx.Param with the same paths plus nnx.Rngs / nnx.Dropout state, and
nnx.Optimizer(wrt=nnx.Param) does the updates, as in MaxText's NNX train state.
"""
import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from flax import nnx
from flax.training import train_state


def decoder(fixture, cfg):
    """The fixture's own model: its generator's linen_model (tests/data/fixtures/gen)."""
    sys.path.insert(0, os.path.join(fixture, "..", "gen"))
    from make_fixtures import linen_model
    return linen_model(cfg)


def main():
    fixture, nnx_raw, nnx_pure, linen = sys.argv[1:5]
    info = json.load(open(f"{fixture}/model.json"))
    cfg, steps, seed = info["config"], info["steps"], info["batches_seed"]
    want = info["continued_losses"]
    model = decoder(fixture, cfg)
    rng = np.random.default_rng(seed)
    tokens = jnp.asarray(rng.integers(0, cfg["vocab"], (4, 6)), jnp.int32)
    batches = [jnp.asarray(rng.integers(0, cfg["vocab"], (4, 6)), jnp.int32) for _ in range(steps + 2)]
    tx = lambda: optax.adamw(optax.linear_schedule(1e-2, 1e-3, 10), weight_decay=0.01)
    variables = model.init(jax.random.key(seed), tokens)

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

    def nnx_train_state():
        m = build(jax.tree.map(np.asarray, variables["params"]))
        m.rngs = nnx.Rngs(params=1, dropout=2)
        m.decoder.dropout = nnx.Dropout(0.1, rngs=nnx.Rngs(dropout=3))
        return m, nnx.Optimizer(m, tx(), wrt=nnx.Param)

    def continue_nnx(m, opt):
        losses = []
        for b in batches[steps:]:
            params = {"params": nnx.to_pure_dict(nnx.state(m, nnx.Param))}
            loss, g = jax.value_and_grad(loss_fn)(params, b)
            losses.append(float(loss))
            grads = nnx.state(m, nnx.Param)
            nnx.replace_by_pure_dict(grads, g["params"])
            opt.update(m, grads)
        return losses

    def restore(path, target):
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
        ckptr = ocp.Checkpointer(ocp.PyTreeCheckpointHandler())
        return ckptr.restore(path, args=ocp.args.PyTreeRestore(
            item=abstract, restore_args=ocp.checkpoint_utils.construct_restore_args(abstract)))

    results = {}
    # 1. raw nnx.State: restored straight into the abstract State of model and optimizer
    m, opt = nnx_train_state()
    got = restore(nnx_raw, {"model": nnx.state(m), "optimizer": nnx.state(opt)})
    nnx.update(m, got["model"])
    nnx.update(opt, got["optimizer"])
    results["nnx raw State -> nnx.Optimizer"] = (continue_nnx(m, opt), int(opt.step.get_value()))

    # 2. pure dict: restored without a target, then nnx.replace_by_pure_dict
    m, opt = nnx_train_state()
    got = ocp.Checkpointer(ocp.PyTreeCheckpointHandler()).restore(nnx_pure)
    ms, os_ = nnx.state(m), nnx.state(opt)
    nnx.replace_by_pure_dict(ms, got["model"])
    nnx.replace_by_pure_dict(os_, got["optimizer"])
    nnx.update(m, ms)
    nnx.update(opt, os_)
    results["nnx pure dict -> nnx.Optimizer"] = (continue_nnx(m, opt), int(opt.step.get_value()))

    # 3. Linen TrainState from NNX: restored into the TrainState target, apply_gradients
    state = train_state.TrainState.create(apply_fn=model.apply, params=variables, tx=tx())
    got = restore(linen, {"step": 0, "params": state.params, "opt_state": state.opt_state})
    state = state.replace(step=got["step"], params=got["params"], opt_state=got["opt_state"])
    losses = []
    for b in batches[steps:]:
        loss, g = jax.value_and_grad(loss_fn)(state.params, b)
        losses.append(float(loss))
        state = state.apply_gradients(grads=g)
    results["linen TrainState -> apply_gradients"] = (losses, int(state.step))

    ok = True
    print(f"jax {jax.__version__}, flax {__import__('flax').__version__}, optax {optax.__version__}, "
          f"orbax-checkpoint {ocp.__version__}")
    print(f"Linen run's continued losses (model.json): {want}")
    for name, (losses, step) in results.items():
        same = losses == want
        ok &= same and step == steps + 2
        print(f"{'ok  ' if same else 'FAIL'} {name}: losses {losses} {'== ' if same else '!= '}model.json; step after 2 updates = {step}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
