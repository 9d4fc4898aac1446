#!/usr/bin/env python3
"""Proves that `adapt --layout linen --optax NAME` output restores with real Orbax into the Linen
TrainState of runs trained with optax chains that end in stateless transforms (issue #18 item 5).

Needs jax, flax, optax, orbax-checkpoint (the GPU host). Usage:
  verify_optax_chain.py CKPTBRIDGE_CLI WORK_DIR
For each optimizer (sgd, sgd(momentum), adam, adamw, adamw+schedule):
  1. the Linen reference: the fixture generator's MaxText-named decoder
     (tests/data/fixtures/gen/make_fixtures.py, linen_model), a flax TrainState trained STEPS
     steps, then two more `apply_gradients` steps whose losses are the reference;
  2. the NNX run: the same weights as nnx.Param, nnx.Optimizer(tx, wrt=nnx.Param), trained the
     same STEPS steps on the same batches, saved as a raw nnx.State
     {model, optimizer} with PyTreeCheckpointHandler(use_ocdbt=True, use_zarr3=True);
  3. `ckptbridge adapt NNX OUT --layout linen --optax NAME`, restored by Orbax into the
     TrainState target, two `apply_gradients` steps: losses compared with == to step 1;
  4. the same without --optax: the warning is printed, and for chains with trailing stateless
     entries Orbax's refusal ("tree structures do not match") is shown to be the reason.
Prints one line per check; exit 0 when all hold.
"""
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from flax import nnx
from flax.training import train_state

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "data", "fixtures", "gen"))
from make_fixtures import linen_model  # noqa: E402

CFG = dict(vocab=64, emb=16, heads=2, head_dim=8, mlp=32, layers=2, scan_axis=1)
STEPS, SEED = 3, 0
OPTIMIZERS = {  # --optax name -> the optax call (optax/_src/alias.py)
    "sgd": lambda: optax.sgd(1e-2),
    "sgd(momentum)": lambda: optax.sgd(1e-2, momentum=0.9),
    "adam": lambda: optax.adam(1e-2),
    "adamw": lambda: optax.adamw(1e-2, weight_decay=0.01),
    "adamw+schedule": lambda: optax.adamw(optax.linear_schedule(1e-2, 1e-3, 10), weight_decay=0.01),
}


def main():
    cli, work = sys.argv[1:3]
    os.makedirs(work, exist_ok=True)
    model = linen_model(CFG)
    rng = np.random.default_rng(SEED)
    tokens = jnp.asarray(rng.integers(0, CFG["vocab"], (4, 6)), jnp.int32)
    batches = [jnp.asarray(rng.integers(0, CFG["vocab"], (4, 6)), jnp.int32) for _ in range(STEPS + 2)]
    variables = model.init(jax.random.key(SEED), tokens)

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

    def continue_linen(state, bs):
        losses = []
        for b in bs:
            loss, g = jax.value_and_grad(loss_fn)(state.params, b)
            losses.append(float(loss))
            state = state.apply_gradients(grads=g)
        return losses, state

    def restore(path, target):
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
        with ocp.Checkpointer(ocp.PyTreeCheckpointHandler()) as c:
            return c.restore(path, args=ocp.args.PyTreeRestore(
                item=abstract, restore_args=ocp.checkpoint_utils.construct_restore_args(abstract)))

    print(f"jax {jax.__version__}, flax {__import__('flax').__version__}, optax {optax.__version__}, "
          f"orbax-checkpoint {ocp.__version__}")
    ok = True
    for name, make_tx in OPTIMIZERS.items():
        tag = name.replace("(", "_").replace(")", "").replace("+", "_")
        fresh = lambda: train_state.TrainState.create(apply_fn=model.apply, params=variables, tx=make_tx())
        # 1. the Linen reference
        _, trained = continue_linen(fresh(), batches[:STEPS])
        want, _ = continue_linen(trained, batches[STEPS:])
        # 2. the NNX run, saved as a raw nnx.State
        m = build(jax.tree.map(np.asarray, variables["params"]))
        opt = nnx.Optimizer(m, make_tx(), wrt=nnx.Param)
        for b in batches[:STEPS]:
            params = {"params": nnx.to_pure_dict(nnx.state(m, nnx.Param))}
            g = jax.grad(loss_fn)(params, b)
            grads = nnx.state(m, nnx.Param)
            nnx.replace_by_pure_dict(grads, g["params"])
            opt.update(m, grads)
        nnx_dir = os.path.join(work, f"nnx_{tag}")
        with ocp.Checkpointer(ocp.PyTreeCheckpointHandler(use_ocdbt=True, use_zarr3=True)) as c:
            c.save(nnx_dir, args=ocp.args.PyTreeSave({"model": nnx.state(m), "optimizer": nnx.state(opt)}), force=True)
        keys = sorted(nnx.to_pure_dict(nnx.state(opt)).get("opt_state", {}))  # a chain of stateless entries has none
        target = {"step": 0, "params": fresh().params, "opt_state": fresh().opt_state}
        # 3. adapt with --optax, restore into the TrainState, two more steps
        out = os.path.join(work, f"linen_{tag}")
        r = subprocess.run([cli, "adapt", nnx_dir, out, "--layout", "linen", "--optax", name, "--overwrite", "-q"],
                           capture_output=True, text=True)
        if r.returncode != 0:
            ok = False
            print(f"FAIL {name}: adapt --optax exited {r.returncode}: {r.stderr.strip()}")
            continue
        try:
            got = restore(out, target)
            state = fresh().replace(step=got["step"], params=got["params"], opt_state=got["opt_state"])
            losses, state = continue_linen(state, batches[STEPS:])
            same = losses == want and int(state.step) == STEPS + 2
            if not same:  # where the restored state differs from the Linen run's after STEPS steps
                lin = {"params": trained.params, "opt_state": trained.opt_state}
                got_t = {"params": got["params"], "opt_state": got["opt_state"]}
                diffs = [f"{jax.tree_util.keystr(p)}: max|d|={float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)))):.3g}"
                         for (p, a), b in zip(jax.tree_util.tree_leaves_with_path(lin), jax.tree_util.tree_leaves(got_t))
                         if np.asarray(a).shape == np.asarray(b).shape and not np.array_equal(np.asarray(a), np.asarray(b))]
                print(f"     {name}: leaves of the restored state != the Linen run's: {len(diffs)}; {diffs[:6]}")
            print(f"{'ok  ' if same else 'FAIL'} {name} (NNX opt_state keys {keys}): Orbax restored --optax output into "
                  f"the TrainState; losses {losses} {'==' if same else '!='} Linen run {want}; step {int(state.step)}")
            ok &= same
        except Exception as e:  # noqa: BLE001 - reported as the check's failure
            ok = False
            print(f"FAIL {name}: Orbax refused the --optax output: {str(e)[:300]}")
        # 4. without --optax: a warning, and (for trailing stateless entries) Orbax's refusal
        bare = os.path.join(work, f"linen_{tag}_bare")
        r = subprocess.run([cli, "adapt", nnx_dir, bare, "--layout", "linen", "--overwrite", "-q"],
                           capture_output=True, text=True)
        warned = "warning:" in r.stderr and "--optax" in r.stderr
        n_entries = len(fresh().opt_state) if isinstance(fresh().opt_state, tuple) else None
        trailing = n_entries is not None and (not keys or max(int(k) for k in keys) + 1 < n_entries)
        try:
            restore(bare, target)
            refused = False
        except Exception as e:  # noqa: BLE001
            refused = "do not match" in str(e) or "structure" in str(e)
        fine = r.returncode == 0 and warned and refused == trailing
        ok &= fine
        print(f"{'ok  ' if fine else 'FAIL'} {name} without --optax: warned={warned}, Orbax refused={refused} "
              f"(chain of {n_entries}, trailing stateless entries: {trailing})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
