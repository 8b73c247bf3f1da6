"""xlir_utils: the code behind the xlir notebooks (hybrid batch training, language adapters,
LAReQA zero-shot evaluation).

Modules, in data-flow order: ``config``, ``paths``, ``environment``, ``io_utils``, ``seeding``;
``data`` (registry, fetch, LAReQA parsing, pairs, leakage check, adapter text, mMARCO);
``encoders`` (offline e5-small, hub models, cached encoding); ``sampling``; ``training``;
``language_adapters`` (MLM head, language adapters, routing, variants); ``code_switching``
(lexicons, the code-switching transform, its dev study and runs); ``metrics`` (ranking,
per-query metrics, statistics); ``evaluation``; ``systems`` (a system as data, its labels,
discovery, the embedding store, evaluation); ``lir``, ``erasure``, ``post_hoc``; ``languages``, ``figures``,
``outputs`` and ``reporting`` (tables, comparisons, figures, README block).
"""
__version__ = "0.1.0"
