"""Object-detection ops: NonMaxSuppression."""
from __future__ import annotations

import numpy as np

from ..ir import dtypes
from .infer import InferContext, TensorType
from .registry import op


def _corners(boxes: np.ndarray, center_point_box: int) -> np.ndarray:
    """[..., 4] boxes -> (y_min, x_min, y_max, x_max) whatever corner order or format they use."""
    b = boxes.astype(np.float64)
    if center_point_box:
        xc, yc, w, h = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
        return np.stack([yc - h / 2, xc - w / 2, yc + h / 2, xc + w / 2], axis=-1)
    y1, x1, y2, x2 = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
    return np.stack([np.minimum(y1, y2), np.minimum(x1, x2), np.maximum(y1, y2),
                     np.maximum(x1, x2)], axis=-1)


def _iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Intersection over union of one corner box against an [n, 4] array of them."""
    y0 = np.maximum(box[0], others[:, 0])
    x0 = np.maximum(box[1], others[:, 1])
    y1 = np.minimum(box[2], others[:, 2])
    x1 = np.minimum(box[3], others[:, 3])
    inter = np.maximum(y1 - y0, 0) * np.maximum(x1 - x0, 0)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    union = area + areas - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def _select(boxes: np.ndarray, scores: np.ndarray, limit: int, iou_threshold: float,
            score_threshold) -> list[int]:
    """Greedy NMS over one (batch, class): the kept box indices, best score first."""
    order = np.argsort(-scores, kind="stable")
    if score_threshold is not None:
        order = order[scores[order] > score_threshold]
    kept: list[int] = []
    while order.size and len(kept) < limit:
        best = int(order[0])
        kept.append(best)
        rest = order[1:]
        order = rest[_iou(boxes[best], boxes[rest]) <= iou_threshold]
    return kept


def _infer_nms(ctx: InferContext):
    return [TensorType(dtypes.i64, (None, 3))]


def _scalar(x, default):
    return default if x is None or np.size(x) == 0 else np.asarray(x).reshape(-1)[0].item()


@op("NonMaxSuppression", inputs=["boxes", "scores", "max_output_boxes_per_class?",
                                 "iou_threshold?", "score_threshold?"],
    outputs=["selected_indices"], attrs=dict(center_point_box=0), infer=_infer_nms)
def non_max_suppression(boxes, scores, max_output_boxes_per_class=None, iou_threshold=None,
                        score_threshold=None, *, center_point_box):
    """Greedy per-class suppression of boxes overlapping a better one by IoU > iou_threshold."""
    limit = int(_scalar(max_output_boxes_per_class, 0))
    iou_t = float(_scalar(iou_threshold, 0.0))
    score_t = None if score_threshold is None else float(_scalar(score_threshold, 0.0))
    corners = _corners(boxes, center_point_box)
    out = []
    for b in range(scores.shape[0]):
        for c in range(scores.shape[1]):
            for i in _select(corners[b], scores[b, c], limit, iou_t, score_t):
                out.append((b, c, i))
    return np.array(out, dtype=np.int64).reshape(-1, 3)
