"""Code-switched training (Litschko, Artemova & Plank 2023) for the bi-encoder: bilingual
lexicons induced from parallel text that is never evaluated (notebook 01 §6) and a seeded
code-switching transform of the training pairs (notebook 02 §7).

* :mod:`.words` - words and their spans (jieba for Chinese, PyThaiNLP for Thai);
* :mod:`.alignment` - IBM Model 1 in both directions, symmetrised by intersection;
* :mod:`.lexicon` - the parallel text, the cached lexicons and their summary table;
* :mod:`.transform` - the code-switching transform of texts and pairs tables.
"""
from .lexicon import Lexicon, lexicon, lexicon_table, lexicons, parallel_text, training_lexicons
from .transform import MODES, SIDES, CodeSwitching, Translator, code_switch, code_switch_pairs

__all__ = ["MODES", "SIDES", "CodeSwitching", "Lexicon", "Translator", "code_switch", "code_switch_pairs", "lexicon",
           "lexicon_table", "lexicons", "parallel_text", "training_lexicons"]
