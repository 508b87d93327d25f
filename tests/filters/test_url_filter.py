"""The prebuilt URL block lists decide exactly as datatrove's URLFilter (decision and reason)."""

from __future__ import annotations

import gc
import pickle
import random
import time
from types import SimpleNamespace

import numpy as np
import pytest

from babelsieve.extraction.warc import iter_records
from babelsieve.filters import url_filter as uf
from babelsieve.filters.url_filter import PrebuiltStringSet, UrlBlocklist

from support.data import PAGES_WARC, SAMPLE_WARC

# tldextract deprecates registered_domain, which datatrove 0.10.1 reads on every URL
pytestmark = pytest.mark.filterwarnings("ignore:The 'registered_domain' property is deprecated:DeprecationWarning")


@pytest.fixture(scope="module")
def reference():
    """datatrove's URLFilter exactly as it loads itself (offline domain parser only)."""
    ref = UrlBlocklist(prebuilt=False)
    assert not ref.prebuilt
    gc.collect()
    gc.freeze()  # its 4.5 million strings: keep the collector from walking them during the tests
    yield ref
    gc.unfreeze()


@pytest.fixture(scope="module")
def sampled_domains(reference) -> list[str]:
    return random.Random(1234).sample(sorted(reference._filter.block_listed_domains), 20000)


@pytest.fixture(scope="module")
def prebuilt_cache(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("bs-cache"))


@pytest.fixture(scope="module")
def ours(prebuilt_cache) -> UrlBlocklist:
    b = UrlBlocklist(cache=prebuilt_cache)  # builds the cache in a fresh directory
    assert b.prebuilt
    return b


def _urls(ref: UrlBlocklist, domains: list[str]) -> list[str]:
    f = ref._filter
    rng = random.Random(1234)
    urls = []
    for d in domains:
        urls += [f"http://{d}/", f"https://www.{d}/page?q=1", f"https://a.b.{d}:8080/x", f"https://{d}.example.org/",
                 f"https://{d.upper()}/", f"https://x{d}/"]
        if "." in d:
            urls.append(f"https://{d.split('.', 1)[1]}/")  # parent of a block-listed (sub)domain
    for u in rng.sample(sorted(f.block_listed_url), 800):
        urls += [u, u + "x", u.rstrip("/"), u + "/", "https://" + u.split("://", 1)[-1]]
    banned, soft, sub = sorted(f.banned_words), sorted(f.soft_banned_words), sorted(f.banned_subwords)
    for w in banned:
        urls += [f"https://example.org/{w}/page", f"https://example.org/a-{w}-b", f"https://example.org/{w.upper()}",
                 f"https://example.org/x{w}y", f"https://{w}.example.org/"]
    for i, w in enumerate(soft):  # one soft word (below the threshold 2), two, three, and one repeated
        other, third = soft[(i + 7) % len(soft)], soft[(i + 13) % len(soft)]
        urls += [f"https://example.org/{w}", f"https://example.org/{w}/{other}", f"https://example.org/{w}-{other}-{third}",
                 f"https://example.org/{w}/{w}", f"https://example.org/{w}{other}"]
    for w in sub:
        urls += [f"https://example.org/abc{w}def", f"https://example.org/ABC{w.upper()}", f"https://ex-{w}.org/"]
    urls += [
        "https://example.com/", "http://1.2.3.4/a", "http://[::1]:8080/", "http://localhost/x", "https://user:pw@example.org/",
        "https://例子.测试/路径", "https://xn--fsqu00a.xn--0zwm56d/", "https://example.co.uk./", "https://EXAMPLE.COM/",
        "ftp://example.org/file", "example.org", "https://", "https://a/", "https://www.pornhub.com/view",
        "https://bbc.co.uk/news", "https://blogspot.com/", "https://foo.blogspot.com/", "https://s3.amazonaws.com/x",
    ]
    for warc in (SAMPLE_WARC, PAGES_WARC):  # real page URLs
        with open(warc, "rb") as fh:
            for rec in iter_records(fh, []):
                target = rec.headers.get("warc-target-uri", "").strip().strip("<>")
                if target:
                    urls.append(target)
    return urls


def test_same_decision_and_reason_as_datatrove(reference, ours, sampled_domains):
    urls = _urls(reference, sampled_domains[:1500])
    assert len(urls) > 10000
    reasons: dict[str | None, int] = {}
    for u in urls:
        expected = reference.reason(u)
        assert ours.reason(u) == expected, u
        reasons[expected] = reasons.get(expected, 0) + 1
    # every rule of URLFilter is exercised, and plenty of URLs pass
    for rule in (None, "domain", "subdomain", "url", "hard_blacklisted", "soft_blacklisted", "blacklisted_subword"):
        assert reasons.get(rule, 0) >= 20, (rule, reasons)


def test_small_lists_and_threshold_are_datatrove_s(reference, ours):
    for name in uf._SMALL_LISTS:
        assert getattr(ours._filter, name) == getattr(reference._filter, name), name
    assert len(ours._filter.block_listed_domains) == len(reference._filter.block_listed_domains)
    assert ours._filter.soft_word_threshold == reference._filter.soft_word_threshold == 2


def test_every_sampled_domain_is_in_the_prebuilt_set(reference, ours, sampled_domains):
    domains = ours._filter.block_listed_domains
    sample = sampled_domains
    assert all(d in domains for d in sample)
    assert not any(d + "x" in domains and d + "x" not in reference._filter.block_listed_domains for d in sample)


def test_second_load_reuses_the_cache(prebuilt_cache, ours, monkeypatch):
    def no_build(*a, **k):
        raise AssertionError("rebuilt although the cache is complete")

    monkeypatch.setattr(uf, "_build_lists", no_build)
    c0 = time.process_time()
    again = UrlBlocklist(cache=prebuilt_cache)  # no_build above is what proves the cache was used
    assert again.prebuilt
    assert time.process_time() - c0 < 5  # CPU time (a rebuild takes ~20 s of it), not wall-clock time
    assert again.reason("https://www.pornhub.com/view") == "domain"


# -- the cache mechanics, with tiny lists instead of datatrove's -------------------------------

def _tiny_filter():
    return SimpleNamespace(block_listed_domains={"bad.com", "", "ünï.example"}, block_listed_url={"https://x.org/a"},
                           banned_words={"zzz"}, banned_subwords={"qqq"}, soft_banned_words={"aa", "bb"})


def test_build_is_atomic_and_replaces_leftovers(tmp_path, monkeypatch):
    monkeypatch.setattr(uf, "_datatrove_filter", _tiny_filter)
    monkeypatch.setattr(uf, "cache_key", lambda: "k1")
    root = tmp_path / "url_filter"
    (root / ".tmp-k1-leftover").mkdir(parents=True)  # a killed builder's temporary directory
    (root / "k1").mkdir()  # an incomplete directory (no meta.json)
    d = uf.prebuilt_dir(tmp_path)
    assert d == root / "k1" and (d / "meta.json").exists()
    assert sorted(p.name for p in root.iterdir()) == ["k1", "k1.lock"]
    s = PrebuiltStringSet(d)
    assert len(s) == 3 and "bad.com" in s and "" in s and "ünï.example" in s
    assert "www.bad.com" not in s and "bad.co" not in s and None not in s
    with open(d / "lists.pkl", "rb") as f:
        assert pickle.load(f)["soft_banned_words"] == {"aa", "bb"}
    b = UrlBlocklist(cache=tmp_path)
    assert b.reason("https://bad.com/x") == "domain"
    assert b.reason("https://www.bad.com/") == "domain"
    assert b.reason("https://x.org/a") == "url"
    assert b.reason("https://ok.org/zzz") == "hard_blacklisted"
    assert b.reason("https://ok.org/aa") is None
    assert b.reason("https://ok.org/aa/bb") == "soft_blacklisted"
    assert b.reason("https://ok.org/xqqqx") == "blacklisted_subword"
    assert b.reason("https://ok.org/") is None


def test_unwritable_cache_falls_back_to_datatrove_in_memory(tmp_path, monkeypatch):
    monkeypatch.setattr(uf, "_datatrove_filter", _tiny_filter)
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    b = UrlBlocklist(cache=blocker)
    assert not b.prebuilt and "bad.com" in b._filter.block_listed_domains


def test_hash_collisions_are_resolved_by_the_stored_string(tmp_path):
    # Two strings stored under the same hash (as a collision would): lookup compares the bytes.
    h = uf._hash64(b"x")
    np.save(tmp_path / "hashes.npy", np.array([h, h], dtype=np.uint64))
    np.save(tmp_path / "offsets.npy", np.array([0, 1, 2], dtype=np.uint64))
    (tmp_path / "strings.bin").write_bytes(b"yx")
    s = PrebuiltStringSet(tmp_path)
    assert "x" in s  # second entry of the run of equal hashes
    assert "z" not in s and "y" not in s  # "y" is stored under another string's hash: not found by its own


def test_empty_set(tmp_path):
    PrebuiltStringSet.write(set(), tmp_path)
    s = PrebuiltStringSet(tmp_path)
    assert len(s) == 0 and "" not in s and "a" not in s
