"""``predict.py --group-people``: the evaluation images grouped into people by appearance, and each group's
gender and age probabilities averaged before the 18-class argmax.

The competition has exactly 7 photos per person (5 masked, one worn incorrectly, one without), which share the
face, the clothes and the background. The models' backbone features of each image (``ClassifierModule.features``,
read in the same pass as the probabilities) are L2-normalised per model, centred and reduced by PCA, joined into
one embedding, and clustered into ``round(N / 7)`` groups: Ward linkage along a k-nearest-neighbour graph (made
connected), which keeps the groups near their target size and needs no N x N matrix (12,600 images: seconds).
Gender and age are the person's, so a group's average is a better estimate of each photo's; the mask state is
the photo's own and stays per image."""

from __future__ import annotations

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from sklearn.cluster import AgglomerativeClustering
from sklearn.neighbors import NearestNeighbors, kneighbors_graph
from sklearn.utils.extmath import randomized_svd

PER_PERSON = 7  # the competition's photos per person
NEIGHBOURS = 10  # the k of the nearest-neighbour graph the groups are merged along
DIM = 128  # the embedding's width after PCA
GROUPED_TASKS = ("gender", "age")  # averaged within a group; the mask is the photo's own


def unit_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def centred(x: np.ndarray, by: np.ndarray | None = None) -> np.ndarray:
    """``x`` less its mean row, or less the mean row of each row's label in ``by``."""
    x = np.asarray(x, dtype=np.float32)
    if by is None:
        return x - x.mean(0, keepdims=True)
    _, labels = np.unique(np.asarray(by), return_inverse=True)
    labels = labels.ravel()
    sums = np.zeros((labels.max() + 1, x.shape[1]), dtype=np.float64)
    np.add.at(sums, labels, x)
    return x - (sums / np.bincount(labels)[:, None]).astype(np.float32)[labels]


def reduced(x: np.ndarray, dim: int, by: np.ndarray | None = None) -> np.ndarray:
    """``x`` centred (see :func:`centred`), projected on its first ``dim`` principal axes when wider, and
    L2-normalised per row."""
    x = centred(x, by)
    width = min(dim, x.shape[0], x.shape[1])
    if width < x.shape[1]:
        u, s, _ = randomized_svd(x, width, n_iter=2, random_state=0)  # a few power iterations: ample for grouping
        x = u * s
    return unit_rows(x)


def combine_embeddings(features: list[np.ndarray], dim: int = DIM, by: np.ndarray | None = None) -> np.ndarray:
    """One embedding per image ``(N, <= dim)`` from several models' features (``[(N, D_m)]``): each model's
    L2-normalised rows centred and reduced (:func:`reduced`, so that every model weighs the same whatever its
    width), side by side, reduced again to ``dim`` and L2-normalised. Two images' dot product is then about the
    mean of their cosine similarities under each model. With ``by`` (each image's predicted mask state), each
    model's rows are centred on their mask state's mean: what the photos of one mask state share across people
    (the mask itself) is taken out, and what a person's photos share across mask states stays."""
    if not features:
        raise ValueError("no features to combine")
    parts = [reduced(unit_rows(f), dim, by) for f in features]
    joined = np.concatenate(parts, axis=1) / np.sqrt(len(parts))
    return reduced(joined, dim) if joined.shape[1] > dim else unit_rows(joined)


def connect(x: np.ndarray, graph) -> coo_matrix:
    """``graph`` (a sparse neighbour graph over the rows of ``x``) with edges added until it is connected: each
    component linked to the component with the nearest centroid, through the two members nearest each other's
    centroid. Each round at least halves the components."""
    graph = coo_matrix(graph)
    rows, cols = list(graph.row), list(graph.col)
    n_comp, labels = connected_components(graph, directed=False)
    while n_comp > 1:
        counts = np.bincount(labels, minlength=n_comp)
        centroids = np.zeros((n_comp, x.shape[1]))
        np.add.at(centroids, labels, x)
        centroids /= counts[:, None]
        _, nearest = NearestNeighbors(n_neighbors=2).fit(centroids).kneighbors(centroids)
        members = [np.flatnonzero(labels == c) for c in range(n_comp)]
        for c in range(n_comp):
            d = nearest[c, 1] if nearest[c, 1] != c else nearest[c, 0]
            a = members[c][np.argmin(((x[members[c]] - centroids[d]) ** 2).sum(1))]
            b = members[d][np.argmin(((x[members[d]] - centroids[c]) ** 2).sum(1))]
            rows += [a, b]
            cols += [b, a]
        graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(x), len(x)))
        n_comp, labels = connected_components(graph, directed=False)
    return graph


def cluster_people(embedding: np.ndarray, per_person: int = PER_PERSON, neighbours: int = NEIGHBOURS) -> np.ndarray:
    """A group id per image ``(N,)``, ``round(N / per_person)`` groups (at least one), numbered in the order of
    their first image: Ward linkage on the L2-normalised ``embedding`` (Euclidean distance on unit vectors
    orders pairs as the cosine distance does), merging only along its ``neighbours``-nearest-neighbour graph."""
    x = unit_rows(embedding)
    n = len(x)
    clusters = max(1, round(n / per_person))
    if clusters == 1 or clusters >= n:
        return np.zeros(n, dtype=int) if clusters == 1 else np.arange(n)
    graph = connect(x, kneighbors_graph(x, min(neighbours, n - 1), include_self=False))
    labels = AgglomerativeClustering(n_clusters=clusters, linkage="ward", connectivity=graph).fit_predict(x)
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))  # group rank by its first image
    return order[inverse.ravel()]


def average_within_groups(probs: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Each image's row replaced by the mean row of its group."""
    probs = np.asarray(probs, dtype=np.float64)
    _, groups = np.unique(np.asarray(groups), return_inverse=True)
    groups = groups.ravel()
    sums = np.zeros((groups.max() + 1, probs.shape[1]))
    np.add.at(sums, groups, probs)
    return (sums / np.bincount(groups)[:, None])[groups]


def group_heads(probs: dict[str, np.ndarray], groups: np.ndarray) -> dict[str, np.ndarray]:
    """The heads' probabilities (``task -> (images, classes)``) with gender and age averaged within each group
    and the mask left per image (a person's 7 photos have different mask states)."""
    return {t: average_within_groups(p, groups) if t in GROUPED_TASKS else p for t, p in probs.items()}


def group_sizes(groups: np.ndarray, per_person: int = PER_PERSON) -> dict:
    _, sizes = np.unique(np.asarray(groups), return_counts=True)
    return {
        "images": int(len(groups)),
        "groups": int(len(sizes)),
        "size_min": int(sizes.min()),
        "size_median": float(np.median(sizes)),
        "size_max": int(sizes.max()),
        f"share_of_size_{per_person}": round(float(np.mean(sizes == per_person)), 4),
    }


def grouping_scores(groups: np.ndarray, person: np.ndarray) -> dict:
    """How well the groups match the true people: ``purity``, the share of images whose group's most common
    person is their own; ``people_whole``, the share of people whose photos all fall in one group; and
    ``pure_groups``, the share of groups holding one person only."""
    _, groups = np.unique(np.asarray(groups), return_inverse=True)
    groups = groups.ravel()
    _, person = np.unique(np.asarray(person), return_inverse=True)
    person = person.ravel()
    counts = np.zeros((groups.max() + 1, person.max() + 1), dtype=int)
    np.add.at(counts, (groups, person), 1)
    return {
        "purity": round(float(counts.max(1).sum() / len(groups)), 4),
        "people_whole": round(float(np.mean((counts > 0).sum(0) == 1)), 4),
        "pure_groups": round(float(np.mean((counts > 0).sum(1) == 1)), 4),
    }
