"""Pictures that more than one family saves: the confusion matrix (vision classes, spoken languages)."""

from pathlib import Path

import numpy as np
import torch


def save_confusion_matrix(confusion: torch.Tensor, names: list[str], path: Path) -> None:
    """Row-normalised confusion matrix (rows: true class, columns: predicted) as a PNG, via the Agg canvas
    directly so no global matplotlib backend is switched."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rates = confusion.float() / confusion.sum(dim=1, keepdim=True).clamp(min=1)
    side = max(4.0, 0.45 * len(names) + 2)
    figure = Figure(figsize=(side, side))
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    ax.imshow(rates.numpy(), cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=90)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if len(names) <= 30:
        for (i, j), count in np.ndenumerate(confusion.numpy()):
            if count:
                ax.text(j, i, str(count), ha="center", va="center", fontsize=7,
                        color="white" if rates[i, j] > 0.5 else "black")
    ax.set_title(f"confusion matrix ({int(confusion.sum())} images)")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
