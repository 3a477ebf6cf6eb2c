"""Train the demo digits flow net and its FID classifier on CPU; write their weights and the FID reference.

    python -m jobs.train_demo [--out DIR] [--steps N] [--seed S] [--threads T]

Deterministic for a given seed and thread count. Needs scikit-learn (for the digits data).
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from pipeline.fid.reference import DIGITS_REFERENCE_FILE, write_digits_reference
from pipeline.models.checkpoint import save_state_dict
from pipeline.models.digits import WEIGHTS_FILE as FLOW_FILE
from pipeline.models.digits import shipped_weights_path, train_flow
from pipeline.models.digits_classifier import WEIGHTS_FILE as CLASSIFIER_FILE
from pipeline.models.digits_classifier import train_classifier


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=os.path.dirname(shipped_weights_path(FLOW_FILE)),
                        help="output directory (default: the package's weights directory)")
    parser.add_argument("--steps", type=int, default=4000, help="flow training steps (default 4000)")
    parser.add_argument("--classifier-epochs", type=int, default=60, help="classifier epochs (default 60)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.classifier_epochs < 1:
        parser.error(f"--steps and --classifier-epochs must be >= 1, got {args.steps}, {args.classifier_epochs}")

    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    os.makedirs(args.out, exist_ok=True)
    t0 = time.perf_counter()

    clf, clf_loss, acc = train_classifier(epochs=args.classifier_epochs, seed=args.seed)
    path = os.path.join(args.out, CLASSIFIER_FILE)
    save_state_dict(clf.state_dict(), path, metadata={"seed": str(args.seed), "heldout_accuracy": f"{acc:.4f}"})
    print(f"classifier: final loss {clf_loss:.4f}, held-out accuracy {acc:.4f} -> {path}", flush=True)
    ref = os.path.join(args.out, DIGITS_REFERENCE_FILE)
    stats = write_digits_reference(ref, weights=path)
    print(f"digits FID reference: {stats.n} images, {stats.dim} features -> {ref}", flush=True)

    net, flow_loss = train_flow(steps=args.steps, seed=args.seed, log=lambda s: print(s, flush=True))
    path = os.path.join(args.out, FLOW_FILE)
    save_state_dict(net.state_dict(), path, metadata={"seed": str(args.seed), "steps": str(args.steps)})
    print(f"flow: final loss {flow_loss:.4f} (mean of last 10% steps) -> {path}", flush=True)
    print(f"done in {time.perf_counter() - t0:.0f}s", flush=True)


if __name__ == "__main__":
    main()
