"""TaskStats: one typed reading of a manifest's statistics."""

from __future__ import annotations

from babelsieve.pipeline.core.task_stats import TaskStats


def test_known_counts_are_typed_and_a_stage_keeps_its_own_keys():
    st = TaskStats.from_dict({"docs_in": 10, "docs_out": 7, "removed": {"gopher_rep:top_2_gram": 3},
                              "languages": {"rus_Cyrl": 7}, "words": {"rus_Cyrl": 900}, "clusters": 4})
    assert (st.docs_in, st.docs_out) == (10, 7)
    assert st.removed == {"gopher_rep:top_2_gram": 3} and st.languages == {"rus_Cyrl": 7}
    assert st.words == {"rus_Cyrl": 900} and st.extra == {"clusters": 4}
    assert st.skipped == {} and st.problem_counts == {}


def test_older_names_and_odd_values_are_read_not_guessed():
    st = TaskStats.from_dict({"documents": 5, "kept": 4, "removed": 1, "skipped": {"x": "many", "y": 2},
                              "words": None})
    assert (st.docs_in, st.docs_out) == (5, 4)
    assert st.removed == {"(total)": 1}  # a bare total
    assert st.skipped == {"y": 2}  # a non-number count is dropped, not crashed on
    assert st.words == {}
    assert TaskStats.from_dict(None) == TaskStats()
    assert TaskStats.from_dict({"docs_in": True}).docs_in is None  # a bool is not a count
