"""The ``autoencoder`` command line (registered in :mod:`disclatent.cli`): train, encode,
decode.

* ``train --masks PATH --latent-dim K --out DIR``: isolate the discs of masks, hold out
  whole patients, train (or reuse) a model in ``DIR`` with the split in ``DIR/discs.csv``;
* ``encode --model DIR --masks PATH --out FILE.csv``: latent vectors of every disc, with its
  centre and reconstruction IoU;
* ``decode --model DIR --latent FILE.csv --out DIR``: one ``.mha`` mask per latent vector.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from disclatent.autoencoder.bottleneck import patient_split, split_table, write_split
from disclatent.autoencoder.config import AEConfig
from disclatent.autoencoder.cubes import load_discs
from disclatent.autoencoder.encoding import encode_masks
from disclatent.autoencoder.evaluation import train_or_load
from disclatent.autoencoder.training import DiscAE
from disclatent.conventions import Spacing, latent_columns
from disclatent.data.labels import DISC_LABEL_OFFSET
from disclatent.data.spider import parse_modalities
from disclatent.data.volume import Volume, write_csv_atomic, write_image


def _train_summary(ae: DiscAE, seconds: float, out: Path) -> str:
    m = ae.metrics
    held = (
        f"held-out IoU {m['heldout_iou']:.4f} ({m['n_heldout']} discs)"
        if m["n_heldout"]
        else "no held-out discs"
    )
    return (
        f"k={ae.config.latent_dim}: {m['epochs']} epochs, "
        f"{'converged' if m['converged'] else 'not converged'}, training IoU "
        f"{m['train_iou']:.4f} ({m['n_train']} discs), {held}; {seconds:.1f} s -> {out}"
    )


def cli_train(args: argparse.Namespace) -> int:
    """``autoencoder train --masks PATH --latent-dim K --out DIR [--profile P] ...``"""
    from disclatent.profiles import get_profile

    prof = get_profile(args.profile)
    # --threads overrides the profile's (and DISCLATENT_CPU_THREADS); fit() applies it
    cfg = AEConfig.from_profile(
        prof,
        args.latent_dim,
        max_epochs=args.max_epochs,
        encoder_epochs=args.encoder_epochs,
        seed=args.seed,
        cpu_threads=args.threads or None,
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    modalities = parse_modalities(args.modalities)
    discs = load_discs(args.masks, cfg, out / "discs.npz", modalities, progress=not args.quiet)
    frac = prof.ae_heldout_fraction if args.heldout_fraction is None else args.heldout_fraction
    tr, ho = patient_split(discs.table["patient"], frac, seed=cfg.seed)
    write_split(split_table(discs.table, ho), out)
    start = time.perf_counter()
    ae, _ = train_or_load(discs.cubes[tr], cfg, out, discs.cubes[ho], progress=not args.quiet)
    ae.save(
        out,
        {
            "n_heldout": int(ho.sum()),
            "n_skipped": int(len(discs.skipped)),
            "heldout_fraction": frac,
            "masks": str(Path(args.masks).resolve()),
        },
    )
    if not args.quiet:
        print(_train_summary(ae, time.perf_counter() - start, out))
    return 0


def cli_encode(args: argparse.Namespace) -> int:
    """``autoencoder encode --model DIR --masks PATH --out FILE.csv``: one task per series
    (:func:`disclatent.autoencoder.encoding.encode_masks`), kept in ``FILE.csv.series/`` so
    that a rerun encodes only new or changed series."""
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table, skipped = encode_masks(
            args.model,
            args.masks,
            parse_modalities(args.modalities),
            cache_dir=out.with_name(out.name + ".series"),
            progress=not args.quiet,
        )
    for w in caught:
        if not str(w.message).startswith("skipped: "):
            warnings.warn(w.message, stacklevel=2)  # notes about single discs, as raised
    if not len(table):
        print(f"error: {args.masks}: no disc could be encoded", file=sys.stderr)
        _print_skipped(skipped)
        return 2
    write_csv_atomic(table, out, float_format="%.6g")
    if not args.quiet:
        k = sum(c.startswith("latent_") for c in table.columns)
        print(
            f"encoded {len(table)} discs (k={k}, mean reconstruction IoU "
            f"{table['reconstruction_iou'].mean():.4f}) -> {out}"
        )
    _print_skipped(skipped)
    return 0


def _print_skipped(skipped: pd.DataFrame) -> None:
    if len(skipped):
        print(f"{len(skipped)} disc(s) or series left out:", file=sys.stderr)
        for reason in skipped["reason"]:
            print(f"  {reason}", file=sys.stderr)


def _decoded_name(row: pd.Series, i: int, columns: pd.Index) -> str:
    if {"series", "ivd_label"} <= set(columns):
        return f"{row['series']}_ivd{int(row['ivd_label'])}"
    return f"disc{i:04d}"


def cli_decode(args: argparse.Namespace) -> int:
    """``autoencoder decode --model DIR --latent FILE.csv --out DIR``: one mask per row.

    Each decoded cube is written as ``<out>/<name>.mha`` with the model's spacing, in LPS
    orientation, centred at ``centre_*_mm`` when the CSV has those columns (else at 0). The
    disc carries its SPIDER label ``200 + ivd_label`` when the CSV names the IVD label, else
    201 (IVD label 1).
    """
    ae = DiscAE.load(args.model)
    table = pd.read_csv(args.latent, dtype={"patient": str, "series": str})
    cols = latent_columns(ae.config.latent_dim)
    missing = [c for c in cols if c not in table]
    if missing:
        raise ValueError(
            f"{args.latent}: missing columns {', '.join(missing)} "
            f"(the model has k={ae.config.latent_dim})"
        )
    masks = ae.decode(table[cols].to_numpy(np.float32))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    spacing_xyz = Spacing(*ae.config.spacing_mm).xyz
    s = ae.config.size
    for i, row in table.iterrows():
        centre = np.array(
            [row.get("centre_x_mm", 0.0), row.get("centre_y_mm", 0.0), row.get("centre_z_mm", 0.0)],
            float,
        )
        origin = centre - (s - 1) / 2.0 * np.asarray(spacing_xyz)
        ivd = int(row["ivd_label"]) if "ivd_label" in table.columns else 1
        value = DISC_LABEL_OFFSET + ivd
        arr = masks[i].astype(np.int16) * value
        name = _decoded_name(row, int(i), table.columns)
        write_image(Volume(arr, spacing_xyz, tuple(origin)), out / f"{name}.mha")
    if not args.quiet:
        print(f"decoded {len(table)} latent vectors to {out}")
    return 0
