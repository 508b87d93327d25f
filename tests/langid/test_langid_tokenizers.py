"""Word tokenizers: real segmentation for scriptio-continua languages, datatrove-identical tokens."""

import pytest

from babelsieve.langid.word_tokenizers import (
    load_word_tokenizer,
    tokenizer_name,
    tokenizer_spec,
    word_tokenize_batch,
)

from support.data import TEST_DATA

UDHR = {
    "cmn_Hani": "人人生而自由,在尊严和权利上一律平等。他们赋有理性和良心,并应以兄弟关系的精神相对待。",
    "jpn_Jpan": "すべての人間は、生まれながらにして自由であり、かつ、尊厳と権利とについて平等である。",
    "kor_Hang": "모든 인간은 태어날 때부터 자유로우며 그 존엄과 권리에 있어 동등하다.",
    "tha_Thai": "มนุษย์ทั้งหลายเกิดมามีอิสระและเสมอภาคกันในเกียรติศักดิ์และสิทธิ",
    "lao_Laoo": "ມະນຸດທັງຫລາຍເກີດມາມີອິດສະຫລະ ແລະ ສະເໝີໜ້າກັນໃນທາງກຽດຕິສັກ",
    "khm_Khmr": "មនុស្សទាំងអស់កើតមកមានសេរីភាព និងសមភាពក្នុងសេចក្ដីថ្លៃថ្នូរ",
    "mya_Mymr": "လူတိုင်းသည်တူညီလွတ်လပ်သောဂုဏ်သိက္ခာဖြင့်လည်းကောင်း",
    "bod_Tibt": "འགྲོ་བ་མིའི་རིགས་རྒྱུད་ཡོངས་ལ་སྐྱེས་ཙམ་ཉིད་ནས་ཆེ་མཐོངས་དང༌། ཐོབ་ཐངགི་རང་དབང་འདྲ་མཉམ་དུ་ཡོད་ལ།",
    "vie_Latn": "Tất cả mọi người sinh ra đều được tự do và bình đẳng về nhân phẩm và quyền.",
    "rus_Cyrl": "Все люди рождаются свободными и равными в своем достоинстве и правах.",
    "hin_Deva": "सभी मनुष्यों को गौरव और अधिकारों के मामले में जन्मजात स्वतन्त्रता प्राप्त है।",
    "kat_Geor": "ყველა ადამიანი იბადება თავისუფალი და თანასწორი თავისი ღირსებითა და უფლებებით.",
}
# where datatrove's tokenizer works offline, our tokens must be identical to its tokens
DATATROVE_OFFLINE = [k for k in UDHR if k != "bod_Tibt"]


@pytest.mark.parametrize("lang", list(UDHR))
def test_real_segmentation(lang):
    tokens = load_word_tokenizer(lang).word_tokenize(UDHR[lang])
    assert len(tokens) >= 5, tokens
    # no token spans the whole text: the scriptio-continua languages really are segmented
    assert max(len(t) for t in tokens) < len(UDHR[lang]) / 3
    assert all(t.strip() == t and t for t in tokens)


@pytest.mark.parametrize("lang", DATATROVE_OFFLINE)
def test_identical_to_datatrove(lang):
    from datatrove.utils.word_tokenizers import load_word_tokenizer as dt_load

    text = UDHR[lang] + "\n\n" + UDHR[lang][::-1] + " IS_ALPHA 12,5% (test)."
    assert load_word_tokenizer(lang).word_tokenize(text) == dt_load(lang).word_tokenize(text)


def test_tibetan_keeps_tsheg_and_config_stopwords():
    toks = load_word_tokenizer("bod_Tibt").word_tokenize("ཁོ་དང་ཁོ་མོ་ལ་ཀྱི་དེབ། ཡོད།")
    assert "དང་" in toks and "ལ་" in toks and "ཀྱི་" in toks and "།" in toks
    assert tokenizer_name("bod_Tibt") == "tibetan-tsheg-regex"


def test_backend_choice_and_fallbacks():
    assert tokenizer_name("rus_Cyrl") == "spacy:ru"
    assert tokenizer_name("cmn_Hani") == "spacy:zh"
    assert tokenizer_name("kor_Hang") == "kiwipiepy:sbg"
    # stanza substitutes
    assert tokenizer_spec("kaz_Cyrl").source == "substitute"
    assert tokenizer_name("kaz_Cyrl") == "spacy:xx"
    assert tokenizer_name("lzh_Hani") == "spacy:zh"
    # unknown labels fall back by script
    assert tokenizer_spec("qqq_Thai").source == "script-fallback"
    assert tokenizer_name("qqq_Thai") == "pythainlp:newmm-safe"
    assert tokenizer_name("und_Zzzz") == "spacy:xx"
    assert tokenizer_name("abc_Deva") == "indicnlp:hi"
    with pytest.raises(ValueError):
        tokenizer_spec("Russian")
    with pytest.raises(ValueError):
        load_word_tokenizer("rus_cyrl")


def test_cached_and_batch():
    assert load_word_tokenizer("rus_Cyrl") is load_word_tokenizer("rus_Cyrl")
    texts = [UDHR["rus_Cyrl"], "", "Привет, мир!"]
    assert word_tokenize_batch(texts, "rus_Cyrl") == [load_word_tokenizer("rus_Cyrl").word_tokenize(t) for t in texts]
    assert word_tokenize_batch(["", "人人生而自由"], "cmn_Hani")[1] == ["人人", "生而自由"]


def test_sentences():
    sents = load_word_tokenizer("cmn_Hani").sent_tokenize(UDHR["cmn_Hani"])
    assert len(sents) == 2
    assert len(load_word_tokenizer("hin_Deva").sent_tokenize(UDHR["hin_Deva"] + " " + UDHR["hin_Deva"])) >= 1


FAST_PATH_EXTRA = [
    "Los EE. UU. y la U.E. firmaron; EE.UU. no. (EE. UU.)",  # es: special case spanning two runs
    "в т.ч. и в н.в. — вед. науч. сотр. института",  # ru: the same
    ": -) :-) (: don't  z. B. usw.\u00a0etc.\tend\n\n",
    "人人生而自由， 在尊严和权利上一律平等。\r\n他们 赋有 理性和良心 ABC 123 3.5% a_b",
    "",
    "   \n ",
    "Trend Micro の Virtual Private Network 製品。\u3000全角スペース　と\tタブ\r\n 改行  二重  スペース …… ‥ 「引用」",
    " 先頭と末尾の空白 ",
]


@pytest.mark.parametrize("lang", ["spa_Latn", "rus_Cyrl", "deu_Latn", "cmn_Hani", "jpn_Jpan", "hau_Latn"])
def test_fast_paths_identical_to_datatrove_on_fixture(lang):
    """Run cache (spaCy rule tokenizers), jieba-direct (zh) and Sudachi-direct (ja): datatrove's tokens on the
    shared pages."""
    import gzip
    import json

    from datatrove.utils.word_tokenizers import load_word_tokenizer as dt_load

    fixture = TEST_DATA / "filter_fixture.jsonl.gz"
    with gzip.open(fixture, "rt", encoding="utf-8") as f:
        texts = [d["text"] for d in map(json.loads, f) if d["lang_script"] == lang]
    texts += FAST_PATH_EXTRA
    tok = load_word_tokenizer(lang)
    dt = dt_load(lang)
    ref = [dt.word_tokenize(t) if t else [] for t in texts]
    assert tok.word_tokenize_batch(texts) == ref  # cold cache
    assert tok.word_tokenize_batch(texts[::-1]) == ref[::-1]  # warm cache
    assert [tok.word_tokenize(t) for t in texts[-len(FAST_PATH_EXTRA):]] == ref[-len(FAST_PATH_EXTRA):]
    if lang == "cmn_Hani":
        assert tok._jieba is not None
    elif lang == "jpn_Jpan":  # the direct path answers for most texts (not only the spaCy fallback)
        assert tok._sudachi is not None
        assert sum(tok._sudachi_words(t) is not None for t in texts if t) > 0.9 * sum(1 for t in texts if t)
    else:
        assert tok._chunks is not None  # the fast path is really used


def test_run_cache_falls_back_on_cross_run_special_case():
    tok = load_word_tokenizer("spa_Latn")
    before = tok._chunks.fallback_docs
    words = tok.word_tokenize_batch(["Los EE. UU. ganan"])[0]
    from datatrove.utils.word_tokenizers import load_word_tokenizer as dt_load

    assert words == dt_load("spa_Latn").word_tokenize("Los EE. UU. ganan")
    assert tok._chunks.fallback_docs == before + 1


def _special_case_soup(rules, rng, n: int) -> list[str]:
    """Texts made of a language's spaCy tokenizer exceptions glued and split in every way: joined, separated by
    one or more spaces or newlines, cut in two, upper-cased, with the punctuation that spaCy splits off."""
    keys = sorted(rules)
    seps = [" ", "", "\n", "  ", " - ", ".", ",", "-", "(", ")", "'", " . ", "\u00a0", "\t", "/", ":"]
    words = ["anak", "Dr", "med", "EE", "UU", "z", "B", "usw", "the", "a", "in", "т", "ч", "12", "3.5"]
    out = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(3, 25)):
            r = rng.random()
            if r < 0.55:
                s = rng.choice(keys)
                s = s.upper() if rng.random() < 0.2 else s
                s = s.replace(" ", rng.choice(["", "  ", "\n", " "])) if rng.random() < 0.2 else s
                parts.append(s)
            elif r < 0.8:
                parts.append(rng.choice(words))
            else:
                s = rng.choice(keys)
                k = rng.randint(0, len(s))
                parts += [s[:k], rng.choice(seps), s[k:]]
            parts.append(rng.choice(seps))
        out.append("".join(parts))
    return out


@pytest.mark.parametrize("code", ["id", "nl", "en", "es", "ru", "de", "fr", "xx", "pt", "da", "gd"])
def test_lazy_special_cases_give_the_fully_loaded_tokens(code):
    """spaCy rule tokenizers start without their exceptions and add those a text can use (``_LazySpecials``); the
    run cache sends a text whole where an exception could match across whitespace. On texts that are nothing but
    exceptions glued and split in every way, the tokens must be those of datatrove's fully loaded tokenizer: in one
    warm batch, in reverse order, and from a fresh tokenizer per 40 texts (cold: cases added text by text)."""
    import random

    import spacy
    from datatrove.utils.word_tokenizers import SpaCyTokenizer

    from babelsieve.langid.word_tokenizers import TokenizerSpec, _SpacyTokenizer

    rules = spacy.util.get_lang_class(code).Defaults.tokenizer_exceptions
    texts = _special_case_soup(rules, random.Random(code), 160)
    dt = SpaCyTokenizer(code)
    ref = [dt.word_tokenize(t) for t in texts]
    spec = TokenizerSpec("SpaCyTokenizer", code, "datatrove")
    warm = _SpacyTokenizer(spec)
    assert warm._specials is not None and warm._chunks is not None  # the lazy path is the one tested
    assert warm.word_tokenize_batch(texts) == ref
    assert warm.word_tokenize_batch(texts[::-1]) == ref[::-1]
    assert len(warm._specials.added) < len(warm._specials.groups) or len(rules) < 300  # really lazy
    for i in range(0, len(texts), 40):
        cold = _SpacyTokenizer(spec)
        assert [cold.word_tokenize(t) for t in texts[i : i + 40]] == ref[i : i + 40]
