"""The paper's own numbers (Elmahdy et al. 2024, arXiv 2408.10536), for notebook 04 §4."""
from __future__ import annotations

import pandas as pd

# The paper's Table 1 (mAP, macro means) and Table 2 (rank distance), arXiv 2408.10536.
PAPER = pd.DataFrame(
    [
        ("XLM-R", "X-X", .792, .674, .547, .648, .584, .473, 410, 288),
        ("XLM-R", "X-Y", .755, .700, .593, .626, .620, .508, 295, 227),
        ("XLM-R", "hybrid", .798, .705, .593, .648, .623, .512, 287, 227),
        ("LaBSE", "X-X", .808, .752, .652, .681, .656, .550, 262, 225),
        ("LaBSE", "X-Y", .801, .762, .679, .671, .677, .576, 225, 198),
        ("LaBSE", "hybrid", .817, .767, .682, .686, .681, .579, 221, 195),
    ],
    columns=["model", "training", "xquad-r mono", "xquad-r cross", "xquad-r multi",
             "mlqa-r mono", "mlqa-r cross", "mlqa-r multi", "xquad-r rank_distance", "mlqa-r rank_distance"],
)

def paper_table() -> pd.DataFrame:
    """The paper's numbers (XLM-R and LaBSE trained on in-house data; not our protocol; notebook 04 §4)."""
    return PAPER.set_index(["model", "training"])
