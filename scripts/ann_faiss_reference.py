#!/usr/bin/env python3
"""FAISS `IndexHNSWFlat` (f32) on the store benchmark's vectors, as a reference for the embedded
store's index (BENCHMARKS.md, "Keeping pruned connections"). Same queries and recall as
`examples/ann_centering.rs`: 200 indexed rows, one at a time on one thread, recall@10 against the
exact top 10 (FAISS's f32 distances need no re-scoring).

    pip install faiss-cpu numpy
    python3 scripts/ann_faiss_reference.py .cache/bench/store/clip-like-1000000-512-s0-v1.f32 300000 16 128
"""
import sys
import time

import faiss
import numpy as np

DIM, QUERIES = 512, 200


def main() -> None:
    path, n, m, ef_construction = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    x = np.fromfile(path, dtype="<f4", count=n * DIM).reshape(n, DIM)
    q = x[[(i * 7919 + 13) % n for i in range(QUERIES)]]
    truth = np.argsort(-(q @ x.T), axis=1)[:, :10]
    faiss.omp_set_num_threads(2)
    index = faiss.IndexHNSWFlat(DIM, m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = ef_construction
    t = time.time()
    index.add(x)
    print(f"build {time.time() - t:.0f} s", flush=True)
    faiss.omp_set_num_threads(1)
    for ef in (64, 128, 256, 512):
        index.hnsw.efSearch = ef
        times = []
        hits = 0
        for i in range(QUERIES):
            t = time.perf_counter()
            _, found = index.search(q[i:i + 1], 50)
            times.append(time.perf_counter() - t)
            hits += len(set(found[0, :10]) & set(truth[i]))
        print(f"faiss M={m} efConstruction={ef_construction} ef={ef}: recall@10 {hits / (10 * QUERIES):.3f}, "
              f"p50 {1e3 * sorted(times)[QUERIES // 2]:.2f} ms", flush=True)


if __name__ == "__main__":
    main()
