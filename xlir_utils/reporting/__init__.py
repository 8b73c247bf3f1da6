"""Tables, comparisons, figures and the README block, from ``results/`` only (notebooks 04-05,
``make figures``): :mod:`.paper` (the paper's numbers), :mod:`.tables`, :mod:`.analysis` (which
systems are compared), :mod:`.redraw` (every figure) and :mod:`.readme`.
"""
from .analysis import adapter_comparisons, code_switching_comparisons, full_system, headline_comparisons, heatmap_systems
from .paper import PAPER, paper_table
from .readme import ADAPTER_MARKERS, BLOCKS, README_MARKERS, adapters_markdown, results_markdown, update_readme
from .redraw import make_figures, sampling_loss_curves
from .tables import (
    first_seed_logs,
    per_language,
    read_results,
    read_seed_means,
    table1,
    table1_with_intervals,
    table2,
    write_tables,
    xtreme_r_table,
)

__all__ = ["ADAPTER_MARKERS", "BLOCKS", "PAPER", "README_MARKERS", "adapters_markdown", "adapter_comparisons", "code_switching_comparisons", "first_seed_logs", "full_system", "headline_comparisons",
           "heatmap_systems", "make_figures", "paper_table", "per_language", "read_results", "read_seed_means",
           "results_markdown", "sampling_loss_curves", "table1", "table1_with_intervals", "table2", "update_readme", "write_tables",
           "xtreme_r_table"]
