#!/usr/bin/env python3
"""A plain NumPy implementation of `visionquery eval`'s figures, for checking it.

Reads the embeddings `visionquery eval --dump-embeddings FILE` wrote and prints the same JSON
object `visionquery eval --json` prints (without the counts it cannot know better than the dump):

    python3 scripts/eval_reference.py embeddings.json

Ranking as /search ranks: dot products of the float32 unit vectors, best first; ties between
images broken by their key (image id, then file name), ties between captions by file order.
"""
import json
import sys

import numpy as np


def scores_from_ranks(ranks):
    ranks = np.asarray(ranks, dtype=np.float64)
    return {
        "recall@1": float(np.mean(ranks <= 1)),
        "recall@5": float(np.mean(ranks <= 5)),
        "recall@10": float(np.mean(ranks <= 10)),
        "median_rank": float(np.median(ranks)),
        "mrr": float(np.mean(1.0 / ranks)),
        "queries": int(ranks.size),
    }


def rank(scores, target, tie_before):
    """1 + how many candidates come before `target`; tie_before[i] says i wins a tie with it."""
    own = scores[target]
    before = (scores > own) | ((scores == own) & tie_before)
    before[target] = False
    return 1 + int(before.sum())


def main():
    dump = json.load(open(sys.argv[1]))
    keys = np.array(dump["image_keys"])
    images = np.array(dump["image_vectors"], dtype=np.float32)
    captions = np.array(dump["caption_vectors"], dtype=np.float32)
    owner = np.array(dump["caption_images"])

    text_to_image = [rank(images @ c, owner[i], keys < keys[owner[i]]) for i, c in enumerate(captions)]
    order = np.arange(len(captions))
    image_to_text = []
    for j, v in enumerate(images):
        own = np.flatnonzero(owner == j)
        if own.size:
            s = captions @ v
            image_to_text.append(min(rank(s, c, order < c) for c in own))
    print(json.dumps({
        "text_to_image": scores_from_ranks(text_to_image),
        "image_to_text": scores_from_ranks(image_to_text),
        "images": int(len(keys)),
        "captions": int(len(captions)),
    }))


if __name__ == "__main__":
    main()
