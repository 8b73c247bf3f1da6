"""xlir_utils: the code behind the xlir notebooks (hybrid batch training, language adapters,
LAReQA zero-shot evaluation). Modules, in data-flow order: config, paths, data, encoders,
sampling, training, language_adapters, metrics, evaluation, reporting."""
__version__ = "0.1.0"
