"""Write GloVe-50 as an ann-benchmarks HDF5 file (glove-50-angular's layout): `train` (the 390,000 indexed vectors),
`test` (10,000 withheld, seed 0: the same split as the `glove-50` vector set), `neighbors` and `distances` (the top
100 by exact inner product on unit vectors, angular distance = 1 - cos), attribute `distance = "angular"`.

    python benchmarks/glove_hdf5.py .cache/glove-50-angular.hdf5      (make glove-hdf5)

Then `python -m bench scale configs/glove-hdf5.toml` runs it by config alone (its `neighbors` used as the truth,
checked against exact search)."""

from __future__ import annotations

import sys
from pathlib import Path

import h5py
import numpy as np

from bench.search.indexes import exact_neighbors
from bench.series.vectorsets import glove_50


def main(out: Path) -> None:
    vset = glove_50(10_000, 0)
    top = exact_neighbors(vset.vectors, vset.queries, 100, 2)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_suffix(".partial")
    with h5py.File(partial, "w") as f:
        f.attrs["distance"] = "angular"
        f.attrs["point_type"] = "float"
        f.create_dataset("train", data=vset.vectors)
        f.create_dataset("test", data=vset.queries)
        f.create_dataset("neighbors", data=top.ids.astype(np.int32))
        f.create_dataset("distances", data=(1.0 - top.scores).astype(np.float32))
    partial.replace(out)
    print(f"wrote {out}: train {vset.vectors.shape}, test {vset.queries.shape}, neighbors {top.ids.shape}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else ".cache/glove-50-angular.hdf5"))
