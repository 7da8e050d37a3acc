"""Train IGR / Gumbel-Softmax models: `python train.py [vae|sop|approx|gumbolt] [flags]`.

Parses flags, builds data and model, fits with resumable checkpoints, evaluates, writes
`OUT/results.json` and TensorBoard logs. With no arguments it trains an IGR-I VAE on the packaged
`mnist_sample` (offline, a few minutes on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

# The paper's temperatures (SPEC §5) have one home; igr_tf.paper imports no TensorFlow.
from igr_tf.paper import APPROX_TEMPERATURE, VAE_TEMPERATURE

TASKS = ("vae", "sop", "approx", "gumbolt")
RELAXATIONS = ("igr_i", "igr_sb", "igr_planar", "gs")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: X)" to every flag's help unless the help already explains it."""

    def _get_help_string(self, action):
        if "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def build_parser():
    from igr_tf.cli import ArgumentParser  # no TensorFlow import: --help and flag errors are fast

    p = ArgumentParser(
        prog="train.py",
        description="Train discrete-latent models with IGR relaxations or the Gumbel-Softmax.",
        formatter_class=HelpFormatter,
    )
    p.add_argument(
        "task",
        nargs="?",
        default=None,
        choices=TASKS,
        help="what to train (default vae, or the config's task)",
    )
    p.add_argument(
        "--config",
        default=None,
        help="named config in experiments/configs (or a JSON path) giving flag defaults",
    )
    g = p.add_argument_group("common")
    g.add_argument("--dist", default="igr_i", choices=RELAXATIONS, help="relaxation")
    g.add_argument(
        "--temperature",
        type=float,
        default=None,
        help="relaxation temperature (default: the SPEC value for the task and dist)",
    )
    g.add_argument(
        "--dataset",
        default="mnist_sample",
        help="mnist_sample (packaged, offline), mnist, binarized_mnist, fashion_mnist, "
        "omniglot (TFDS, must be prepared)",
    )
    g.add_argument("--data-file", default=None, help="train on an npz with key 'images'")
    g.add_argument("--test-file", default=None, help="test npz for --data-file")
    g.add_argument("--data-dir", default=None, help="TFDS data directory")
    g.add_argument(
        "--binarization",
        default=None,
        choices=("static", "dynamic", "none"),
        help="override the dataset's default binarization",
    )
    g.add_argument("--epochs", type=int, default=10, help="training epochs (approx: steps/10)")
    g.add_argument("--batch-size", type=int, default=100, help="examples per step")
    g.add_argument(
        "--lr",
        type=float,
        default=None,
        help="Adam learning rate (default 1e-3; approx 1e-2 as in the paper)",
    )
    g.add_argument("--seed", type=int, default=0, help="seed of weights, sampling and shuffling")
    g.add_argument("--out", default=None, help="output directory (default runs/<task>_<dist>_...)")
    g.add_argument(
        "--strategy",
        default="default",
        choices=("default", "mirrored", "multiworker"),
        help="tf.distribute strategy",
    )
    g.add_argument(
        "--cpu-devices",
        type=int,
        default=0,
        help="split the CPU into this many logical devices (to test --strategy)",
    )
    g.add_argument("--no-jit", action="store_true", help="disable XLA compilation")
    g.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2), help="Keras verbosity")
    v = p.add_argument_group("vae")
    v.add_argument(
        "--arch",
        default=None,
        help="vae: linear|nonlinear|relax|conv (default nonlinear); "
        "sop: double_linear|triple_linear|nonlinear (default double_linear)",
    )
    v.add_argument("--num-vars", type=int, default=20, help="categorical latent variables V")
    v.add_argument("--num-categories", type=int, default=10, help="categories K per variable")
    v.add_argument(
        "--samples",
        type=int,
        default=1,
        help="samples per training step (VAE: S > 1 is the importance-weighted bound)",
    )
    v.add_argument(
        "--eval-samples",
        type=int,
        default=100,
        help="importance samples (VAE) / rounded samples (SOP) for the test metric",
    )
    v.add_argument(
        "--kl",
        default=None,
        choices=("closed", "sampled"),
        help="KL estimator (default: closed form where it exists)",
    )
    v.add_argument("--stl", action="store_true", help="sticking-the-landing gradient")
    v.add_argument(
        "--straight-through", action="store_true", help="one-hot forward, relaxed gradient"
    )
    v.add_argument(
        "--sb-adaptive",
        action="store_true",
        help="igr_sb: adaptive truncation with --num-categories as the cap",
    )
    v.add_argument(
        "--sb-threshold", type=float, default=0.99, help="igr_sb: stick mass to cover (adaptive)"
    )
    a = p.add_argument_group("approx")
    a.add_argument(
        "--target",
        default="discrete",
        choices=("poisson", "binomial", "negbinomial", "discrete"),
        help="target distribution",
    )
    a.add_argument(
        "--categories", type=int, default=None, help="K for poisson/negbinomial (default 20 / 40)"
    )
    a.add_argument("--rate", type=float, default=50.0, help="poisson rate")
    a.add_argument("--trials", type=int, default=12, help="binomial n")
    a.add_argument(
        "--prob", type=float, default=None, help="binomial p (0.3) / negbinomial p (0.6)"
    )
    a.add_argument("--successes", type=float, default=50.0, help="negbinomial r")
    a.add_argument("--mc-samples", type=int, default=10_000, help="relaxed samples per step")
    add_gumbolt_arguments(p)
    return p


CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "experiments", "configs")


def apply_config(p, argv: list[str] | None):
    """Parses argv with a config file's values as defaults (explicit flags still win)."""
    import json

    args = p.parse_args(argv)
    if args.config:
        path = (
            args.config
            if os.path.exists(args.config)
            else os.path.join(CONFIG_DIR, f"{args.config}.json")
        )
        if not os.path.exists(path):
            known = sorted(f[:-5] for f in os.listdir(CONFIG_DIR) if f.endswith(".json"))
            p.error(f"--config: no config {args.config!r}; known: {', '.join(known)}")
        try:
            values = json.loads(open(path).read())
        except (OSError, json.JSONDecodeError) as e:
            p.error(f"--config: cannot read {path}: {e}")
        values = {k: v for k, v in values.items() if not k.startswith("_")}
        unknown = sorted(set(values) - set(vars(args)))
        if unknown:
            p.error(f"--config {path}: unknown keys {', '.join(unknown)}")
        p.set_defaults(**values)
        args = p.parse_args(argv)
    if args.task is None:
        args.task = "vae"
    return args


def check_args(p, args) -> None:
    """Range checks argparse cannot express; errors are one line, exit status 2."""
    positive = ["epochs", "batch_size", "num_vars", "samples", "eval_samples", "mc_samples"]
    for name in positive:
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be ≥ 1; got {getattr(args, name)}")
    if args.num_categories < 2:
        p.error(f"--num-categories must be ≥ 2; got {args.num_categories}")
    if args.temperature is not None and not args.temperature > 0:
        p.error(f"--temperature must be > 0; got {args.temperature}")
    if args.lr is None:
        args.lr = 1e-2 if args.task == "approx" else 1e-3
    if not args.lr > 0:
        p.error(f"--lr must be > 0; got {args.lr}")
    if not 0 < args.sb_threshold <= 1:
        p.error(f"--sb-threshold must be in (0, 1]; got {args.sb_threshold}")
    if args.test_file and not args.data_file:
        p.error("--test-file needs --data-file")
    for path in (args.data_file, args.test_file):  # fail before the slow TensorFlow import
        if path and not os.path.isfile(path):
            p.error(f"{path}: no such file")


def default_out(args) -> str:
    data = os.path.splitext(os.path.basename(args.data_file))[0] if args.data_file else args.dataset
    name = args.target if args.task == "approx" else data
    return os.path.join("runs", f"{args.task}_{args.dist}_{name}_seed{args.seed}")


def relaxation_options(args) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if args.kl:
        options["kl"] = args.kl
    if args.stl:
        options["stick_the_landing"] = True
    if args.dist == "igr_sb" and args.sb_adaptive:
        options.update(adaptive=True, threshold=args.sb_threshold)
    return options


def load_data(args):
    from igr_tf import datasets

    return datasets.load(
        args.dataset,
        data_file=args.data_file,
        test_file=args.test_file,
        data_dir=args.data_dir,
        binarization=args.binarization,
        seed=args.seed,
    )


def fit(model, train, test, args, out: str, image_fn=None) -> dict[str, Any]:
    """`model.fit` with resumable checkpoints, divergence guard, timing and TensorBoard logs."""
    from igr_tf import training

    # verbose=False: the divergence message is printed once, by `training.fail` below.
    ckpt = training.EpochCheckpoint(os.path.join(out, "checkpoint"), verbose=False)
    with args.strategy_obj.scope():  # optimizer variables must be created under the strategy
        training.build_for_restore(model)
        initial_epoch = training.restore_checkpoint(model, ckpt.directory)
    if initial_epoch:
        print(f"Resuming from epoch {initial_epoch} (checkpoint in {ckpt.directory}).")
        # The checkpoint restored the optimizer's learning-rate variable too: use --lr, as the
        # flags in results.json say. (A schedule has no such variable and raises TypeError; it
        # is rebuilt from the flags anyway.)
        try:
            model.optimizer.learning_rate = args.lr
        except TypeError:
            pass
    timer = training.SteadyTimer()
    logs = os.path.join(out, "logs")
    callbacks = [ckpt, timer, training.ScalarSummary(logs)]
    if image_fn is not None:
        callbacks.append(training.ImageSummary(logs, image_fn, name="samples"))
    history = model.fit(
        train,
        validation_data=test,
        epochs=args.epochs,
        initial_epoch=initial_epoch,
        callbacks=callbacks,
        verbose=args.verbose,
        shuffle=False,  # the tf.data pipeline reshuffles every epoch itself
    )
    if ckpt.diverged:
        training.fail(f"{ckpt.message}", prog="train.py")
    timing = timer.summary()
    return {
        "epochs_completed": args.epochs,
        "resumed_from_epoch": initial_epoch,
        "train_seconds": timing["wall_time_s"],
        # Train steps per second after the first step (which includes tracing/compilation).
        "steps_per_sec": timing["steady_steps_per_sec"] or timing["steps_per_sec"] or None,
        "timing": timing,
        "history": {k: [float(x) for x in v] for k, v in history.history.items()},
    }


def run_vae(args, out: str) -> dict[str, Any]:
    import keras
    import tensorflow as tf

    from igr_tf import datasets
    from models.vae import DiscreteVAE

    data = load_data(args)
    tau = args.temperature or VAE_TEMPERATURE[args.dist]
    train = datasets.pipeline(data.train, args.batch_size, seed=args.seed)
    test = datasets.pipeline(data.test, args.batch_size, shuffle=False)
    with args.strategy_obj.scope():
        model = DiscreteVAE(
            args.dist,
            args.num_vars,
            args.num_categories,
            tau,
            arch=args.arch or "nonlinear",
            image_shape=data.image_shape,
            likelihood=data.likelihood,
            num_samples=args.samples,
            relaxation_options=relaxation_options(args),
            straight_through=args.straight_through,
            seed=args.seed,
        )
        model.compile(optimizer=keras.optimizers.Adam(args.lr), jit_compile=not args.no_jit)
    x_show = next(iter(data.test.batch(8)))

    def images():  # originals, reconstructions and samples from the prior, side by side
        recon = tf.sigmoid(model(x_show, training=False)[:, : x_show.shape[1] * x_show.shape[2]])
        prior = model.latent.relaxation.prior(model.latent.temperature, num_vars=args.num_vars)
        z = prior.sample(x_show.shape[0], seed=args.seed)  # the test set may hold < 8
        gen = tf.sigmoid(
            model.decoder(tf.cast(z, tf.float32))[:, : x_show.shape[1] * x_show.shape[2]]
        )
        return tf.concat(
            [x_show, tf.reshape(recon, tf.shape(x_show)), tf.reshape(gen, tf.shape(x_show))], 0
        )

    info = fit(model, train, test, args, out, images)
    elbo = model.evaluate(test, verbose=0, return_dict=True)
    metrics = {"test_elbo": -elbo["loss"], "test_recon": elbo["recon"], "test_kl": elbo["kl"]}
    metrics.update(model.evaluate_loglik(test, args.eval_samples, seed=args.seed))
    metrics["temperature"] = tau
    model.save(os.path.join(out, "model.keras"))
    return {"metrics": metrics, **info}


def run_sop(args, out: str) -> dict[str, Any]:
    import keras

    from igr_tf import datasets, training
    from models.sop import StructuredOutputPredictor

    data = load_data(args)
    tau = args.temperature or 1.0
    train = datasets.pipeline(data.train, args.batch_size, seed=args.seed)
    test = datasets.pipeline(data.test, args.batch_size, shuffle=False)
    with args.strategy_obj.scope():
        model = StructuredOutputPredictor(
            args.dist,
            architecture=args.arch or "double_linear",
            temperature=tau,
            num_train_samples=args.samples,
            num_test_samples=args.eval_samples,
            relaxation_options=relaxation_options(args),
            seed=args.seed,
        )
        lr = training.InverseTimeDecayFloor(initial_learning_rate=args.lr)
        model.compile(optimizer=keras.optimizers.Adam(lr), jit_compile=not args.no_jit)
    info = fit(model, train, test, args, out)
    metrics = {
        "test_nll": model.test_nll(test, args.eval_samples, seed=args.seed),
        "temperature": tau,
    }
    model.save(os.path.join(out, "model.keras"))
    return {"metrics": metrics, **info}


def run_approx(args, out: str) -> dict[str, Any]:
    from igr_tf import approx, training

    targets = {  # SPEC §5's targets; K applies to the unbounded ones
        "poisson": lambda: approx.poisson(args.rate, args.categories or 20),
        "binomial": lambda: approx.binomial(args.trials, args.prob or 0.3),
        "negbinomial": lambda: approx.negative_binomial(
            args.successes, args.prob or 0.6, args.categories or 40
        ),
        "discrete": approx.discrete,
    }
    target = targets[args.target]()
    tau = args.temperature or APPROX_TEMPERATURE[args.dist]
    start = time.perf_counter()
    result = approx.fit_approximation(
        args.dist,
        target,
        tau,
        num_samples=args.mc_samples,
        steps=args.epochs * 10,
        lr=args.lr,
        seed=args.seed,
    )
    seconds = time.perf_counter() - start
    writer_dir = os.path.join(out, "logs")
    import tensorflow as tf

    with tf.summary.create_file_writer(writer_dir).as_default():
        for step, value in enumerate(result.losses):
            training.write_scalar_summary("loss", float(value), step)
    return {
        "metrics": {
            "final_loss": float(result.losses[-1]),
            "total_variation": float(result.total_variation),
            "temperature": tau,
        },
        "train_seconds": seconds,
        "steps_per_sec": len(result.losses) / seconds,
        "target": [float(t) for t in target],
        "argmax_pmf": [float(t) for t in result.argmax_pmf],
        "losses": [float(x) for x in result.losses],
    }


# --- gumbolt: a discrete VAE with a Boltzmann-machine prior (models/gumbolt.py) -----------------
def add_gumbolt_arguments(p) -> None:
    """gumbolt's own flags; it also reads --dist (gs, igr_i, igr_sb), --temperature, --arch
    (linear|nonlinear), --samples (k of the training bound) and --eval-samples."""
    g = p.add_argument_group("gumbolt")
    g.add_argument(
        "--prior",
        default="rbm",
        choices=("rbm", "factorial"),
        help="gumbolt: RBM prior, or the factorial Bernoulli baseline of the same size",
    )
    g.add_argument(
        "--latent-sizes",
        type=int,
        nargs=2,
        default=[20, 20],
        metavar=("N1", "N2"),
        help="gumbolt: binary latents in the RBM's two groups",
    )
    g.add_argument("--num-chains", type=int, default=100, help="gumbolt: persistent Gibbs chains")
    g.add_argument(
        "--gibbs-steps", type=int, default=1, help="gumbolt: Gibbs sweeps of the chains per step"
    )
    g.add_argument(
        "--igr-learn-scale",
        action="store_true",
        help="gumbolt, igr_*: learn the Gaussian scale too (degenerate with GumBolt's proxy "
        "posterior; otherwise it is 1)",
    )
    g.add_argument("--ais-chains", type=int, default=100, help="gumbolt: AIS runs for log Z")
    g.add_argument(
        "--ais-betas", type=int, default=10_000, help="gumbolt: AIS intermediate distributions"
    )


def run_gumbolt(args, out: str) -> dict[str, Any]:
    import keras
    import tensorflow as tf

    from igr_tf import datasets
    from igr_tf.boltzmann.posterior import BINARY_RELAXATIONS
    from models.gumbolt import DEFAULT_TEMPERATURE, GumBoltVAE

    if args.dist not in BINARY_RELAXATIONS:
        raise ValueError(
            f"--dist {args.dist}: gumbolt's binary relaxations are {', '.join(BINARY_RELAXATIONS)}"
        )
    for name in ("num_chains", "gibbs_steps", "ais_chains", "ais_betas"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be ≥ 1; got {getattr(args, name)}")
    if min(args.latent_sizes) < 1:
        raise ValueError(f"--latent-sizes must be ≥ 1; got {args.latent_sizes}")
    data = load_data(args)
    if data.likelihood != "bernoulli":
        raise ValueError(f"gumbolt needs binary images; {data.name} is continuous")
    tau = args.temperature or DEFAULT_TEMPERATURE
    train = datasets.pipeline(data.train, args.batch_size, seed=args.seed)
    test = datasets.pipeline(data.test, args.batch_size, shuffle=False)
    with args.strategy_obj.scope():
        model = GumBoltVAE(
            args.dist,
            tuple(args.latent_sizes),
            args.prior,
            tau,
            arch=args.arch or "nonlinear",
            image_shape=data.image_shape,
            num_samples=args.samples,
            num_chains=args.num_chains,
            gibbs_steps=args.gibbs_steps,
            learn_scale=args.igr_learn_scale,
            seed=args.seed,
        )
        model.compile(optimizer=keras.optimizers.Adam(args.lr), jit_compile=not args.no_jit)
    x_show = next(iter(data.test.batch(8)))

    def images():  # originals, reconstructions and decoded samples of the prior
        recon = tf.reshape(tf.sigmoid(model(x_show, training=False)), tf.shape(x_show))
        gen = model.generate(x_show.shape[0], num_steps=200, seed=(args.seed, 2))
        return tf.concat([x_show, recon, gen], 0)

    info = fit(model, train, test, args, out, images)
    relaxed = model.evaluate(test, verbose=0, return_dict=True)
    log_z = model.log_partition("ais", args.ais_chains, args.ais_betas, seed=(args.seed, 1))
    metrics = {"log_z_ais": log_z["log_z"], "log_z_ais_se": log_z["log_z_se"]}
    loglik = model.evaluate_loglik(test, log_z["log_z"], args.eval_samples, seed=args.seed)
    metrics.update(loglik)
    if min(args.latent_sizes) <= 20 or args.prior == "factorial":  # 2^20 states: about a second
        exact = model.log_partition("exact")["log_z"]
        metrics["log_z_exact"] = exact
        metrics["test_loglik_exact_log_z"] = loglik["test_loglik"] + log_z["log_z"] - exact
    # The relaxed training objective on the test set, normalized with the AIS log Z.
    metrics["test_relaxed_bound"] = -relaxed["loss"] - log_z["log_z"]
    metrics["temperature"] = tau
    model.save(os.path.join(out, "model.keras"))
    return {"metrics": metrics, **info}


RUNNERS = {"vae": run_vae, "sop": run_sop, "approx": run_approx, "gumbolt": run_gumbolt}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = apply_config(parser, argv)
    check_args(parser, args)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    from igr_tf import training
    from igr_tf.datasets import DataError

    if args.cpu_devices > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * args.cpu_devices
        )
    args.strategy_obj = training.make_strategy(args.strategy)
    tf.keras.utils.set_random_seed(args.seed)
    out = args.out or default_out(args)
    os.makedirs(out, exist_ok=True)
    start = time.perf_counter()
    try:
        result = RUNNERS[args.task](args, out)
    except (DataError, ValueError) as e:
        training.fail(str(e), prog="train.py")
    flags = {k: v for k, v in vars(args).items() if k != "strategy_obj"}
    result.update(
        flags=flags,
        seed=args.seed,
        replicas=args.strategy_obj.num_replicas_in_sync,
        wall_seconds=time.perf_counter() - start,
        environment=training.run_metadata(),
    )
    training.write_json_atomic(os.path.join(out, "results.json"), result)
    shown = {k: v for k, v in result["metrics"].items()}
    print(
        "Test metrics:",
        ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in shown.items()),
    )
    print(f"Results written to {os.path.join(out, 'results.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
