"""The data registry: every raw file the kit uses, with its canonical address and sha256.

Like d2l's ``DATA_HUB``: a file is named by its path in the offline layout (``XLIR_DATA_DIR``:
``lareqa/xquad-r/en.json``, ``ntrex128/...``, ``tatoeba-laser/...``, ``mkqa-mia-dev/...``), and
the registry gives where to download it and the checksum it must have.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..config import MLQA_R_LANGS, XQUAD_R_LANGS
from ..errors import SettingsError
from .tatoeba_files import TATOEBA_XQUAD_R, TATOEBA_XTREME_R

LAREQA_RAW = "https://raw.githubusercontent.com/google-research-datasets/lareqa"
XQUAD_R_COMMIT = "5405d2a77e83d5ccb47623a3f9e5604c3f103193"
MLQA_R_COMMIT = "354d67d1cd066854cdfbf5ad0e6105528976141d"  # removed from the default branch later
NTREX_RAW = "https://raw.githubusercontent.com/MicrosoftTranslator/NTREX/8561f6a622db9edad1217683e5c83daefd8bb2bf"
LASER_RAW = "https://raw.githubusercontent.com/facebookresearch/LASER/74bc6ae7ffb7cba670fe0f428d0ede9f666fb821"
# MKQA's development questions as re-split by the MIA 2022 shared task: one zip, a JSON Lines file per language
MKQA_ZIP = ("https://raw.githubusercontent.com/mia-workshop/MIA-Shared-Task-2022/"
            "ea2491a3e3a588e270b2dd30ce7e044584c3eeb5/data/eval/mkqa_dev.zip")
# ISO 639-1 (kit) -> MKQA's file code, for the 6 XQUAD-R languages MKQA has, with the files' sha256
MKQA_FILES = {
    "ar": ("ar", "7eaf61ad1888f4293b8a1754465be28f6b2eed9196e6218d9a0ddc9941d59e8a"),
    "en": ("en", "d8a77aa9c9af266635e7c726512d99ad7eccf585252da4089eb4d1d71531d80e"),
    "es": ("es", "9d75d627f1a70f8842ccd6cc09679c4c66ce410944d670ef74720504927502e1"),
    "ru": ("ru", "49f0bc5e10aa72bee6727871eac14a4c9ae55f0fd7d8f9b3c34e2168c6c1640e"),
    "tr": ("tr", "0f727027b653edf07b56a6afe7f9389e3d08df644796ff91f4db941e8d3c7f27"),
    "zh": ("zh_cn", "b5781cc1f17822d47ffc391a7ab7f7d7d7ea86831ce26155d10d797a86a5d914"),
}

# ISO 639-1 (kit) -> the three-letter codes of NTREX-128 and Tatoeba/LASER file names.
NTREX_CODES = {
    "ar": "arb", "de": "deu", "el": "ell", "en": "eng", "es": "spa", "hi": "hin",
    "ru": "rus", "th": "tha", "tr": "tur", "vi": "vie", "zh": "zho-CN",
}
TATOEBA_CODES = {lang: TATOEBA_XTREME_R[lang][0] for lang in TATOEBA_XQUAD_R}  # ar -> ara, zh -> cmn, ...

XQUAD_R_SHA256 = {
    "ar": "c52922d3b8ac1ae03ed5ac38647ad59870dca3dda2beefe18ecdc30729acb69d",
    "de": "16fb0f4bf4916154b585a20c24c66074591c9718a1affe764ff4697572328949",
    "el": "163fd43ee785a30eb534ae2061e9eaa766a7ee4e8ffce5e4b422480c150f64b6",
    "en": "7b0954f39297c27a31fef610f0883337dd2907fa8699151dc922afdd0fa12ffe",
    "es": "f8e836b2d91009c4363e04315f7ede363eedbbb49c67dda60de6c4aa782f58de",
    "hi": "ea45ba8ae4513d1533b222bebdc02a90bc319c055d3aeea68584a053d2e92872",
    "ru": "7f4dff853538b9a5fcc28c070b8bb983a5c5d190ac747b8e005a1ada9cab18f1",
    "th": "c3a041864c3a9fb0b4dd91cfdf99cf36b411b3e704c58a303c97bc6dc786cfe4",
    "tr": "f3e8c13002bbce154a4578f535f7533cb70f3da08840e6b62735935baec7bd94",
    "vi": "e35926bf5cc6fc6ecbdfca49467aabeb454f08d152d7818143a906bd31dde995",
    "zh": "80c2cde7b9c2fb134c303cbb52f2ba396ead9eb0014aec43993543d2ba9e93ed",
}
MLQA_R_SHA256 = {
    "ar": "2132fbc03208535c0fe01f2e2c5121d06f9c2aa799af93b0a719dbc105bdf137",
    "de": "ce9454dc5aa6f2d85c23cd6e49cb367fbb7c4c6e62d7f71e355c6b5dae4d0886",
    "en": "fedd9a5cc0848dda80caf84aa36f482adaae230526a3f6e9e86926a93ef3b1e4",
    "es": "70ecba276b8c96a692b120693a595d076ce94ad21d4b28311538a9fcbfe0f9d7",
    "hi": "4dd0fb3c06f737a5481d705bc1dcac7876712a5815c9265908fbb3a0696cb654",
    "vi": "9d3baff6ba03e6793b25594217265ea59a136b9733833dca8a9582a84a78ff85",
    "zh": "57f01d2fff50cf3392805635b01445339f225ad5bf28ba8443b12f8dbd1e69dc",
}
NTREX_SHA256 = {
    "DOCUMENT_IDS.tsv": "88a8b0ff1eae47e83f60dcde01075b8c87d75ced59ca09e0af1eb539958e05d5",
    "newstest2019-ref.arb.txt": "d271c8645933421f760eba8ed8cc1ceaaa052f917d9c2839b8abb27e0ded71e6",
    "newstest2019-ref.deu.txt": "259d7406a07b63e6b5b9c4a22fb76b85e2578a3fa0a4e541a50f4f7348e5c1b2",
    "newstest2019-ref.ell.txt": "cd9c8eda1b54f4b504b33769db7e56e26ba9ae768a64e13e0eef02a9ee9867fc",
    "newstest2019-ref.hin.txt": "10d612b3960dc1f90d297aff7e3c6d39e6eb7221b912cef0c053d9f510e41bbc",
    "newstest2019-ref.rus.txt": "a7e3601298b0368659a5c006c52809cf6792e02eb94bde9b9693333278d85732",
    "newstest2019-ref.spa.txt": "0ad8129e5ce0bea86ba7e0ea0db0504d6626b8a4d2a7cf4c44b7791c70e99b84",
    "newstest2019-ref.tha.txt": "45a57c4f9fdbae282eb2c94821535ae3c88b09186a23c5506eb0907ba429d6a5",
    "newstest2019-ref.tur.txt": "bd0c3978cb7d283ee5f8834d90a32fe2ffd0c71e4b133c677cff259d07a70ea9",
    "newstest2019-ref.vie.txt": "dd5d16cf246da57f5ccb7490ae13b8df428e7cb53e17fa04552406d657abfe3c",
    "newstest2019-ref.zho-CN.txt": "8bcd6f0868d33f26c8da12f55a82f66088a7b60a5f7b0b1a99dcec51daa8054a",
    "newstest2019-src.eng.txt": "389e8f5796c66db4f646dfad33e1ec622d74767af5ef112b42a1f2cd814df3cc",
}


@dataclass(frozen=True)
class RemoteFile:
    """One raw file: its path in the offline layout, its download address and checksum."""

    dataset: str
    path: str  # relative path in the offline layout (and under data/raw)
    url: str
    sha256: str
    licence: str
    member: str = ""  # the file's path inside the zip archive at ``url`` ("" when ``url`` is the file itself)


LICENCES = {
    "xquad-r": "CC BY-SA 4.0",
    "mlqa-r": "CC BY-NC 4.0",
    "ntrex128": "CC BY-SA 4.0",
    "tatoeba": "CC BY 2.0 FR (Tatoeba sentences)",
    "mkqa": "CC BY-SA 3.0",
}
LANGUAGES = {"xquad-r": XQUAD_R_LANGS, "mlqa-r": MLQA_R_LANGS}


def _lareqa_files() -> list[RemoteFile]:
    files = [
        RemoteFile("xquad-r", f"lareqa/xquad-r/{lang}.json",
                   f"{LAREQA_RAW}/{XQUAD_R_COMMIT}/xquad-r/{lang}.json", sha, LICENCES["xquad-r"])
        for lang, sha in XQUAD_R_SHA256.items()
    ]
    files += [
        RemoteFile("mlqa-r", f"lareqa/mlqa-r/{lang}.json",
                   f"{LAREQA_RAW}/{MLQA_R_COMMIT}/mlqa-r/{lang}.json", sha, LICENCES["mlqa-r"])
        for lang, sha in MLQA_R_SHA256.items()
    ]
    return files


def tatoeba_file(lang: str, side: str) -> str:
    """The LASER file name of one side (``lang`` or ``"en"``) of a Tatoeba language: ``tatoeba.deu-eng.deu``."""
    if lang not in TATOEBA_XTREME_R:
        raise SettingsError(f"Tatoeba has no XTREME-R language {lang!r}; it has {', '.join(sorted(TATOEBA_XTREME_R))}.")
    code = TATOEBA_XTREME_R[lang][0]
    return f"tatoeba.{code}-eng.{'eng' if side == 'en' else code}"


def _parallel_files() -> list[RemoteFile]:
    files = []
    for name, sha in NTREX_SHA256.items():
        upstream = name if name.endswith(".tsv") else f"NTREX-128/{name}"
        files.append(RemoteFile("ntrex128", f"ntrex128/{name}", f"{NTREX_RAW}/{upstream}", sha,
                                LICENCES["ntrex128"]))
    for lang, (code, sha_xx, sha_en, _) in TATOEBA_XTREME_R.items():
        for name, sha in ((tatoeba_file(lang, lang), sha_xx), (tatoeba_file(lang, "en"), sha_en)):
            files.append(RemoteFile("tatoeba", f"tatoeba-laser/{name}",
                                    f"{LASER_RAW}/data/tatoeba/v1/{name}", sha, LICENCES["tatoeba"]))
    return files


def _mkqa_files() -> list[RemoteFile]:
    return [RemoteFile("mkqa", f"mkqa-mia-dev/mkqa-{code}.jsonl", MKQA_ZIP, sha, LICENCES["mkqa"],
                       member=f"mkqa_dev/mkqa-{code}.jsonl") for code, sha in MKQA_FILES.values()]


REGISTRY: dict[str, RemoteFile] = {f.path: f for f in _lareqa_files() + _parallel_files() + _mkqa_files()}


def language_tuple(languages, what: str = "languages") -> tuple[str, ...]:
    """Language codes as a tuple: one code as a string is one language (``"de"``, not ``d``, ``e``);
    an empty selection raises a ValueError saying what to pass."""
    if isinstance(languages, str):
        languages = (languages,)
    out = tuple(languages)
    if not out:
        raise SettingsError(f"No {what} given: pass a list of ISO 639-1 codes such as ['en', 'de'].")
    bad = [x for x in out if not isinstance(x, str) or not x]
    if bad:
        raise SettingsError(f"{what} must be language codes (strings), got {bad!r}")
    return out


def check_languages(dataset: str, languages) -> tuple[str, ...]:
    """Validate language codes for a dataset; an unknown code raises a clear ValueError."""
    if dataset not in LANGUAGES:
        raise SettingsError(f"Unknown dataset {dataset!r}; choose one of {sorted(LANGUAGES)}.")
    known = LANGUAGES[dataset]
    if languages is None:
        return known
    languages = language_tuple(languages, f"{dataset} languages (None: all of {', '.join(known)})")
    bad = [lang for lang in languages if lang not in known]
    if bad:
        raise SettingsError(
            f"Unknown language code(s) {bad} for {dataset}; it has {', '.join(known)} "
            "(ISO 639-1 codes, e.g. 'zh' not 'zh-CN')."
        )
    return languages


def lareqa_file(dataset: str, lang: str) -> RemoteFile:
    """The registry entry of one LAReQA language file."""
    check_languages(dataset, [lang])
    return REGISTRY[f"lareqa/{dataset}/{lang}.json"]


def files_of(dataset: str) -> list[RemoteFile]:
    """Every registered file of a dataset (``xquad-r``, ``mlqa-r``, ``ntrex128``, ``tatoeba``, ``mkqa``)."""
    files = [f for f in REGISTRY.values() if f.dataset == dataset]
    if not files:
        raise SettingsError(f"Unknown dataset {dataset!r}; registered: {sorted({f.dataset for f in REGISTRY.values()})}.")
    return files
