"""MAD-X style language adapters and a shared task adapter for a bi-encoder (notebook 03).

**MAD-X** (Pfeiffer et al. 2020): one *language adapter* per language (an invertible
bottleneck, ``seq_bn_inv``) is trained with masked-language modelling (MLM) on monolingual
text and then frozen; a *task adapter* (``seq_bn``) is trained on top of it
(``Stack(lang, "task")``); at test time the target language's adapter is swapped in.

**In a bi-encoder** each side is routed through the adapter of *its own* language: the
query through ``Stack(la_<lang(q)>, "task")``, the passage through
``Stack(la_<lang(p)>, "task")``. The rows of one side are grouped by their adapter set-up
and every group runs its own forward pass inside ``AdapterSetup(...)``; the outputs are put
back into the original row order. (Measured with adapters 1.3.0, the pinned version: this
is exact, whereas ``Stack(BatchSplit(a, b), "task")`` applies the first language's invertible
adapter to every row, and ``BatchSplit(Stack(..), Stack(..))`` gives wrong outputs.)

Modules, in the order notebook 03 uses them:

* :mod:`.plumbing` - adapter names and configurations, :func:`enable_adapters`;
* :mod:`.corpus` - monolingual MLM text per language (NTREX-128 + the training set), evaluation
  text (LAReQA and Tatoeba) removed, a held-out share kept aside;
* :mod:`.mlm` - the shared MLM head e5-small lacks (trained on cached states), BERT masking, the
  MLM losses and loop;
* :mod:`.head_study` - the candidate heads and the choice among them by held-out loss;
* :mod:`.lang_training` - the head and one language adapter per language (or AdapterHub's), with
  held-out MLM loss before and after;
* :mod:`.cross_mlm` - held-out MLM loss, language adapter by language: did each adapter learn its language?
* :mod:`.routing` - which set-up each language goes through, routed embedding and encoding;
* :mod:`.learning_rate` - the adapters' learning rate, chosen on the dev set (one seed);
* :mod:`.variants` - the variants (task-only, MLM per-side, joint per-side, a shared control,
  English), trained with hybrid batches above the frozen prefix, saved and reloaded.

Traps of adapters 1.3 / sentence-transformers 5 handled here: ``train_adapter("task")`` resets the active
set-up, so it is called first and the routing is applied per forward pass;
``SentenceTransformer(folder)`` drops adapter weights, so adapters are saved and loaded
with ``save_adapter``/``load_adapter`` only.
"""
from .corpus import evaluation_texts, mlm_corpus, mlm_texts, question_corpus, split_heldout
from .head_study import HeadCandidate, choose_head, head_candidates
from .lang_training import (
    HEAD_DIR,
    adapter_mlm_matrix,
    adapter_recipe,
    head_recipe,
    head_record,
    head_study_table,
    language_adapters_dir,
    load_hub_language_adapters,
    train_language_adapter,
    train_language_adapters,
    train_mlm_head,
)
from .learning_rate import GRID_VARIANTS, chosen_rates, lr_grid
from .mlm import MLMHead, heldout_mlm, mask_tokens, mlm_loss, mlm_training_loop, new_mlm_head
from .plumbing import (
    FORMAT_VERSION,
    HUB_ADAPTERS,
    LANG_CONFIG,
    MANIFEST,
    TASK,
    TASK_CONFIG,
    adapter_parameters,
    drop_invertible,
    enable_adapters,
    lang_adapter_name,
    without_invertible,
)
from .routing import PER_SIDE, UNSEEN_OPTIONS, VARIANTS, Routing, encode_routed, group_by_setup, make_routing, routed_embed_fn
from .variants import (
    MLM_VARIANTS,
    adapter_languages,
    control_reduction_factor,
    grid_run_dir,
    joint_init,
    load_variant,
    saved_routing,
    trained_language_adapters,
    untrained_routes,
    prepare_variant,
    save_variant,
    train_variant,
    variant_languages,
    variant_lr,
    variant_run_dirs,
    variant_run_name,
    variants_summary,
)
from .cross_mlm import cross_language_mlm, learned_adapters
from .diagnostics import hidden_shift

__all__ = [
    "FORMAT_VERSION", "HEAD_DIR", "HUB_ADAPTERS", "LANG_CONFIG", "MANIFEST", "MLM_VARIANTS", "PER_SIDE", "TASK",
    "TASK_CONFIG", "UNSEEN_OPTIONS", "VARIANTS", "MLMHead", "Routing", "adapter_languages", "adapter_parameters",
    "adapter_recipe", "control_reduction_factor", "drop_invertible", "enable_adapters", "encode_routed",
    "evaluation_texts", "group_by_setup", "head_recipe", "head_record", "head_study_table", "HeadCandidate",
    "choose_head", "head_candidates", "question_corpus", "heldout_mlm", "joint_init",
    "lang_adapter_name", "language_adapters_dir", "load_hub_language_adapters", "load_variant", "make_routing",
    "mask_tokens", "mlm_corpus", "mlm_loss", "mlm_texts", "mlm_training_loop", "new_mlm_head", "prepare_variant",
    "routed_embed_fn", "save_variant", "split_heldout", "train_language_adapter",
    "train_language_adapters", "train_mlm_head", "train_variant", "variant_languages",
    "variant_run_dirs", "variant_run_name", "variants_summary", "hidden_shift", "adapter_mlm_matrix",
    "without_invertible",
    "saved_routing", "trained_language_adapters", "untrained_routes", "variant_lr", "GRID_VARIANTS", "chosen_rates",
    "grid_run_dir", "lr_grid",
    "cross_language_mlm", "learned_adapters",
]
